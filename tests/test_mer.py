"""The command line end to end on the small demo set: every stage chained, the run folder, resume, clear errors."""
import json
import os
import re
import signal
from pathlib import Path

import pytest
from toy_run import children

import config
import mer
from engine import cli, experiment
from util import files

FAST = ['--init', 'random', '--epochs', '1', '--batch-size', '16', '--size', '36', '--align-size', '64',
        '--workers', '1', '--jobs', '1', '-q']


@pytest.fixture
def cache(feature_cache):
    """The session's feature cache (conftest), shared with test_predict's model."""
    return feature_cache


def _args(demo_root, cache, *extra):
    return ['--data', str(demo_root / 'megc'), '--ckplus', str(demo_root / 'ck'), '--cache', str(cache), *FAST, *extra]


def test_one_command_runs_every_stage_and_writes_the_run_folder(demo_root, tmp_path, cache, capsys):
    out = tmp_path / 'run'
    assert mer.main(_args(demo_root, cache, '--out', str(out))) == 0
    printed = capsys.readouterr().out
    assert re.search(r'\| Part \+ Adversarial \+ EMR \| \d\.\d{4} \[\d\.\d{3}, \d\.\d{3}\] \|', printed)
    assert 'Protocol audit' in printed and 'Paired comparisons' not in printed
    m = json.loads((out / 'metrics.json').read_text())
    assert set(m) == {'honest', 'audit', 'calibration'} and m['audit']['megc']['uf1'] == m['honest']['all']['uf1']
    lo, hi = m['honest']['all']['uf1_ci']
    assert lo <= m['honest']['all']['uf1'] <= hi
    assert {k: v['n'] for k, v in m['honest'].items()} == {'all': 18, 'smic': 6, 'casme2': 6, 'samm': 6}
    cfg = json.loads((out / 'config.json').read_text())
    assert (cfg['parts'], cfg['adv'], cfg['emr'], cfg['init']) == (True, True, True, 'random')
    assert cfg['lr_backbone'] == 0 and 'code_version' in cfg
    assert len(list((out / 'folds').glob('*.csv'))) == 6                     # 2 subjects x 3 datasets
    log = (out / 'megc_log.txt').read_text().splitlines()
    assert sum(len(line.split()) == 2 for line in log) == 6                  # one 'dataset subject' header each
    assert (out / 'table.md').read_text().strip() in printed
    assert (out / 'confusion_all.png').is_file() and (out / 'curves.png').is_file()

    # Started again with the same flags: every fold is found, nothing retrains, the same table comes out.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / 'folds').glob('*.csv')}
    assert mer.main(_args(demo_root, cache, '--out', str(out))) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / 'folds').glob('*.csv')} == stamps
    assert capsys.readouterr().out.splitlines()[:-1] == printed.splitlines()[:-1]     # the last line is timing
    assert json.loads((out / 'metrics.json').read_text()) == m

    # The run's own log: both starts appended, each with its info lines (hidden by -q from the terminal only), its
    # warnings and what it printed; no progress bar.
    runlog = (out / 'run.log').read_text()
    assert len(re.findall(r'^--- \S+ \S+ \[\d+\] mer.py --data ', runlog, re.M)) == 2
    assert runlog.count("CPUs usable by this process") == 2 and runlog.count('LOSO: 6 folds (6 to train here)') == 1
    assert runlog.count('LOSO: 6 folds (0 to train here)') == 1 and runlog.count(printed.splitlines()[0]) == 2
    assert '\r' not in runlog and 'it/s' not in runlog and 'fold-step' not in runlog

    # The same folder with another setting is refused, naming what differs.
    with pytest.raises(SystemExit, match=r'config.json: this run folder was made with other settings \(adv, row\)'):
        mer.main(_args(demo_root, cache, '--out', str(out), '--no-adv'))


def test_table_runs_every_row_into_its_own_folder(demo_root, tmp_path, cache, capsys):
    # Two subjects of the demo through --index (2 folds a row, so five rows stay quick), with CK+.
    from data import releases
    micro = [s for s in releases.load_megc(demo_root / 'megc') if s.dataset == 'samm'][:6]
    index = tmp_path / 'list.csv'
    index.write_text('dataset,subject,clip,frames_dir,onset,apex,label\n' + ''.join(
        f'{s.dataset},{s.subject},{s.clip},{Path(s.frames[0]).parent},{releases.frame_number(s.frames[s.onset])},'
        f'{releases.frame_number(s.frames[s.apex])},{s.label}\n' for s in micro))
    out = tmp_path / 'table'
    args = [a if a != str(demo_root / 'megc') else str(index) for a in _args(demo_root, cache)]
    args[args.index('--data')] = '--index'
    assert mer.main(args + ['--out', str(out), '--table', '--batch-size', '32']) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[4].startswith('| LBP-TOP |')             # the baseline first, as in the paper
    for parts, adv, emr in config.ROWS:
        name = config.Config(parts=parts, adv=adv, emr=emr).row()
        assert f'| {name} |' in printed
        assert json.loads((out / experiment.slug(name) / 'config.json').read_text())['row'] == name
        assert len(list((out / experiment.slug(name) / 'folds').glob('*.csv'))) == 2
    assert len(list((out / 'lbp-top' / 'folds').glob('*.csv'))) == 2
    assert (out / 'table.md').is_file()
    # Each ablation against the full method, on the same resampled subjects, and every row's audit.
    paired = json.loads((out / 'paired.json').read_text())
    full = config.PAPER.row()
    assert sorted(paired) == sorted(f'{full} − {n}' for n in ['LBP-TOP'] + [
        config.Config(parts=p, adv=a, emr=e).row() for p, a, e in config.ROWS[1:]])
    assert 'Paired comparisons' in printed and f'| {full} − LBP-TOP | ' in printed
    audit = printed[printed.index('Protocol audit'):]
    assert f'| {full} | UF1 ' in audit and '| LBP-TOP | UF1 ' in audit


def test_the_lbptop_baseline_alone_writes_a_run_folder(demo_root, tmp_path, cache, capsys):
    out = tmp_path / 'lbp'
    assert mer.main(_args(demo_root, cache, '--method', 'lbptop', '--out', str(out))) == 0
    printed = capsys.readouterr().out
    assert '| LBP-TOP |' in printed and 'Part' not in printed
    m = json.loads((out / 'metrics.json').read_text())
    assert {k: v['n'] for k, v in m['honest'].items()} == {'all': 18, 'smic': 6, 'casme2': 6, 'samm': 6}
    assert len(list((out / 'folds').glob('*.csv'))) == 6
    for f in ('megc_log.txt', 'confusion_all.png', 'table.md'):
        assert (out / f).is_file(), f
    assert json.loads((out / 'config.json').read_text())['row'] == 'LBP-TOP'


def test_default_run_folder_is_per_row(demo_root, tmp_path, cache, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert mer.main(_args(demo_root, cache, '--no-parts', '--no-emr', '--folds', '1/6')) == 0
    out = tmp_path / 'runs' / 'megc' / 'global_adversarial'
    assert json.loads((out / 'config.json').read_text())['row'] == 'Global + Adversarial'
    assert len(list((out / 'folds').glob('*.csv'))) == 1 and 'shard 1/6 done' in capsys.readouterr().out


def test_bad_data_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        mer.main(['--data', str(tmp_path / 'nowhere'), '--init', 'random', '-q'])
    msg = str(e.value)
    assert msg.startswith('mer.py: error: ') and str(tmp_path / 'nowhere') in msg and '\n' not in msg


def test_missing_imagenet_weights_stop_unless_allowed(demo_root, tmp_path):
    with pytest.raises(SystemExit, match=r'nope\.pth.*--init random'):
        mer.main(['--data', str(demo_root / 'megc'), '--weights', str(tmp_path / 'nope.pth'), '-q',
                  '--cache', str(tmp_path / 'cache'), '--workers', '1', '--align-size', '96'])


def test_offline_imagenet_download_is_one_line_within_seconds(demo_root, tmp_path, monkeypatch):
    import time

    import torch
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))      # an empty torchvision cache
    t0 = time.time()
    with pytest.raises(SystemExit) as e:
        mer.main(['--data', str(demo_root / 'megc'), '-q', '--cache', str(tmp_path / 'cache'), '--workers', '1',
                  '--align-size', '96', '--size', '64', '--epochs', '1'])
    msg = str(e.value)
    assert time.time() - t0 < 60
    assert msg.startswith('mer.py: error: ResNet18 ImageNet weights are not in ') and '\n' not in msg
    assert '--weights PATH' in msg and '--init random' in msg


def test_numeric_flags_are_checked_before_any_work(tmp_path, capsys):
    for flag, value in (('--epochs', '0'), ('--epochs', '-1'), ('--batch-size', '0'), ('--size', '16'),
                        ('--jobs', '-2'), ('--jobs', '0'), ('--workers', '0'), ('--lr-heads', 'fast'),
                        ('--grad-clip', '0')):
        with pytest.raises(SystemExit):
            mer.main(['--data', str(tmp_path / 'nowhere'), flag, value])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith('usage:') is False and flag in err, err
    assert not any(tmp_path.iterdir())


def test_the_demo_preset_and_the_backbone_rate_follow_the_initialisation():
    _, cfg = cli.parse_args(['--demo'])
    assert cfg.init == 'random' and cfg.backbone_lr() == cfg.lr_heads and cfg.size == 64
    _, cfg = cli.parse_args(['--data', 'x'])
    assert cfg == cli.run_config(config.PAPER) and cfg.backbone_lr() == 1e-5
    assert config.result_settings(cfg) == config.result_settings(config.PAPER)
    _, cfg = cli.parse_args(['--data', 'x', '--init', 'random', '--lr-heads', '0.01'])
    assert cfg.backbone_lr() == 0.01
    _, cfg = cli.parse_args(['--data', 'x', '--init', 'random', '--lr-backbone', '1e-4', '--no-emr', '--no-parts'])
    assert (cfg.backbone_lr(), cfg.emr, cfg.parts, cfg.row()) == (1e-4, False, False, 'Global + Adversarial')


def test_the_hard_demo_has_its_own_folder_and_the_quick_one_stays_the_default(monkeypatch, tmp_path):
    a, _ = cli.parse_args(['--demo'])
    assert (a.demo, a.demo_root) == ('quick', 'demo_data')
    a, cfg = cli.parse_args(['--demo', 'hard'])
    assert (a.demo, a.demo_root, cfg.size) == ('hard', 'demo_hard', 64)
    a, _ = cli.parse_args(['--demo', 'hard', '--demo-root', str(tmp_path)])
    assert a.demo_root == str(tmp_path)
    built = []
    monkeypatch.setattr(experiment.synth, 'build', lambda root, seed, preset: built.append((root, preset)) or
                        pytest.fail('stop here'))
    with pytest.raises(pytest.fail.Exception):
        experiment.load_samples(a)
    assert built == [(str(tmp_path), 'hard')]


def test_table_shards_every_row(demo_root, tmp_path, monkeypatch, capsys):
    seen = []

    def shard_of_row(a, cfg, micro, macro, weights, out, feats):
        seen.append((cfg.row(), a.shard))
        return None                                  # this shard's folds are done, others are missing
    monkeypatch.setattr(experiment, 'run_row', shard_of_row)
    assert mer.main(['--data', str(demo_root / 'megc'), '--ckplus', str(demo_root / 'ck'), '--init', 'random', '-q',
                     '--table', '--folds', '2/3', '--out', str(tmp_path)]) == 0
    assert [r for r, _ in seen] == [config.Config(parts=p, adv=a, emr=e).row() for p, a, e in config.ROWS]
    assert {s for _, s in seen} == {(2, 3)} and 'shard 2/3 done' in capsys.readouterr().out


def test_a_folder_given_for_the_landmark_model_is_one_line_before_any_feature(demo_root, tmp_path):
    with pytest.raises(SystemExit) as e:
        mer.main(_args(demo_root, tmp_path / 'cache', '--out', str(tmp_path / 'run'), '--landmarks', str(tmp_path)))
    msg = str(e.value)
    assert msg.startswith(f'mer.py: error: {tmp_path}: a folder, not the dlib 68-point landmark model') and \
        '\n' not in msg
    assert not any((tmp_path / 'cache').iterdir())                      # no feature was computed


def test_an_unwritable_run_folder_stops_before_any_work(demo_root, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    with pytest.raises(SystemExit) as e:
        mer.main(_args(demo_root, tmp_path / 'cache', '--out', str(blocker / 'run')))
    msg = str(e.value)
    assert msg.startswith('mer.py: error: ') and str(blocker / 'run') in msg and '--out' in msg
    assert not (tmp_path / 'cache').exists()                             # no feature was computed


def test_figure_creates_its_folder(demo_root, tmp_path, cache):
    fig = tmp_path / 'new' / 'deeper' / 'fig.png'
    args = _args(demo_root, cache, '--out', str(tmp_path / 'run'), '--figure', str(fig), '--folds', '1/6')
    assert mer.main(args) == 0
    assert fig.is_file() and fig.stat().st_size > 1000


def _sigint(pid):
    """'caught' when a process has Python's SIGINT handler installed (it would raise KeyboardInterrupt), 'ignored'
    when it ignores SIGINT, else None (Linux /proc)."""
    try:
        status = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status') if ':' in line)
    except OSError:
        return None
    bit = 1 << (signal.SIGINT - 1)
    return 'caught' if int(status['SigCgt'], 16) & bit else 'ignored' if int(status['SigIgn'], 16) & bit else None


def test_ctrl_c_is_one_line(demo_root, tmp_path):
    import subprocess
    import sys
    import time
    cmd = [sys.executable, str(files.ROOT / 'mer.py'), *_args(demo_root, tmp_path / 'cache', '--epochs', '50',
                                                                   '--workers', '2', '--out', str(tmp_path / 'run'))]
    # Ctrl-C in a terminal signals every process of the foreground group: here, the moment the feature stage's
    # worker processes are starting (Python up, still importing), when each printed its own traceback.
    # Ctrl-C's default disposition, which a suite started in the background (nohup, `&`) would pass on as ignored
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # The Ctrl-C lands as soon as a worker is past Python's own start, which installs the handler that raises
        # KeyboardInterrupt, unless the worker was born ignoring SIGINT: still importing, before worker_setup.
        deadline, states = time.time() + 300, []
        while p.poll() is None and time.time() < deadline and not {'caught', 'ignored'} & set(states):
            states = [_sigint(c) for c in children(p.pid) if b'spawn_main' in _cmdline(c)]
            time.sleep(0.005)
        assert {'caught', 'ignored'} & set(states), 'the feature stage started no worker process'
        assert 'caught' not in states, 'a worker was born catching Ctrl-C: it would print a traceback of its own'
        # A Ctrl-C that lands within the milliseconds in which the parent starts processes can be taken by one
        # of its other threads and dropped (workers.starting); a user presses again, and so does this test.
        for _ in range(12):
            os.killpg(p.pid, signal.SIGINT)
            try:
                err = p.communicate(timeout=10)[1]
                break
            except subprocess.TimeoutExpired:
                continue
    finally:                            # a run that did not stop must not go on loading the rest of the suite
        p.kill()
    assert p.returncode == 1 and 'Traceback' not in err and 'KeyboardInterrupt' not in err, err
    assert err.strip().splitlines()[-1] == 'mer.py: interrupted; run the same command again to resume'


def _cmdline(pid):
    try:
        return open(f'/proc/{pid}/cmdline', 'rb').read()
    except OSError:
        return b''


def test_training_workers_die_with_a_killed_parent(demo_root, tmp_path, cache):
    import os
    import signal
    import subprocess
    import sys
    import time
    if not os.path.isdir('/proc'):
        pytest.skip('needs Linux /proc to find the worker processes')
    args = [a for a in _args(demo_root, cache, '--epochs', '50', '--jobs', '2', '--out', str(tmp_path / 'run'))
            if a != '-q']
    p = subprocess.Popen([sys.executable, str(files.ROOT / 'mer.py'), *args], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:              # the log's LOSO line comes after the feature stage, before training
        if ' engine.runfolder: LOSO: ' in line:
            break
    deadline = time.time() + 60
    workers = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [c for c in children(p.pid) if b'spawn_main' in open(f'/proc/{c}/cmdline', 'rb').read()]
    assert len(workers) == 2, 'the two training processes did not start'
    time.sleep(4)                      # training, not starting up
    p.send_signal(signal.SIGKILL)
    p.wait()

    def running(w):
        try:
            return open(f'/proc/{w}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
        except OSError:
            return False
    # A worker still starting up (on a loaded machine) sees its parent gone once its set-up runs: allow for that.
    deadline = time.time() + 30
    while time.time() < deadline and any(map(running, workers)):
        time.sleep(0.2)
    alive = [w for w in workers if running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, f'training processes {alive} outlived their killed parent'


def test_seeds_run_each_seed_in_its_own_folder_and_average(demo_root, tmp_path, cache, capsys):
    out = tmp_path / 'seeds'
    assert mer.main(_args(demo_root, cache, '--out', str(out), '--seeds', '0,3', '--folds', '1/1')) == 0
    printed = capsys.readouterr().out
    for seed in (0, 3):
        assert json.loads((out / f'seed{seed}' / 'config.json').read_text())['seed'] == seed
        assert len(list((out / f'seed{seed}' / 'folds').glob('*.csv'))) == 6
        assert f'| Part + Adversarial + EMR, seed {seed} | ' in printed
    one, two = (json.loads((out / f'seed{s}' / 'metrics.json').read_text())['honest']['all']['uf1'] for s in (0, 3))
    mean = re.search(r'\| Part \+ Adversarial \+ EMR, mean of 2 seeds \| (\d\.\d{4}) ± (\d\.\d{3}) \[', printed)
    assert mean and float(mean[1]) == pytest.approx((one + two) / 2, abs=1e-4)
    assert float(mean[2]) == pytest.approx(abs(one - two) / 2 ** 0.5, abs=1e-3)      # sd of two values
    assert (out / 'table.md').read_text().strip() in printed


def test_held_out_databases_train_on_the_others(demo_root, tmp_path, cache, capsys):
    out = tmp_path / 'hde'
    assert mer.main(_args(demo_root, cache, '--out', str(out), '--protocol', 'hde')) == 0
    printed = capsys.readouterr().out
    assert printed.startswith('Held-out databases') and '| Part + Adversarial + EMR | ' in printed
    assert sorted(p.name for p in (out / 'folds').glob('*.csv')) == [
        'heldout_casme2.csv', 'heldout_samm.csv', 'heldout_smic.csv']
    m = json.loads((out / 'metrics.json').read_text())
    assert {k: v['n'] for k, v in m['honest'].items()} == {'all': 18, 'smic': 6, 'casme2': 6, 'samm': 6}
    assert json.loads((out / 'config.json').read_text())['protocol'] == 'hde'
    with pytest.raises(SystemExit, match=r'other settings \(protocol\)'):          # not merged with a LOSO run
        mer.main(_args(demo_root, cache, '--out', str(out)))


def test_bad_statistics_flags_stop_at_parse_time(demo_root, tmp_path, capsys):
    for extra, words in ((['--seeds', '0,x'], '--seeds 0,x: expected distinct integers'),
                         (['--seeds', '1,1'], '--seeds 1,1: expected distinct integers'),
                         (['--seeds', '0,1', '--seed', '2'], '--seed and --seeds contradict'),
                         (['--protocol', 'kfold'], "--protocol: invalid choice: 'kfold'"),
                         (['--bootstrap', '50'], '--bootstrap: 50 is outside [100, inf]')):
        with pytest.raises(SystemExit):
            mer.main(['--data', str(tmp_path / 'nowhere'), *extra])
        assert words in capsys.readouterr().err.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir())
    # Held out databases need two: one line before anything is trained or written.
    from data import releases
    samm = [s for s in releases.load_megc(demo_root / 'megc') if s.dataset == 'samm'][:4]
    index = tmp_path / 'samm.csv'
    index.write_text('dataset,subject,clip,frames_dir,onset,apex,label\n' + ''.join(
        f'{s.dataset},{s.subject},{s.clip},{Path(s.frames[0]).parent},{releases.frame_number(s.frames[s.onset])},'
        f'{releases.frame_number(s.frames[s.apex])},{s.label}\n' for s in samm))
    with pytest.raises(SystemExit, match=r'--protocol hde .* come from 1 \(samm\); use --protocol loso'):
        mer.main(['--index', str(index), '--protocol', 'hde', '--out', str(tmp_path / 'never'), '-q',
                  '--init', 'random'])
    assert not (tmp_path / 'never').exists()


def test_worker_processes_are_born_ignoring_ctrl_c_and_sigusr1():
    # A child that could take a Ctrl-C before worker_setup ignores it prints its own traceback (seconds of imports
    # under spawn): every pool and training process is started inside workers.starting().
    import multiprocessing

    from util import workers
    before = signal.getsignal(signal.SIGINT)
    with workers.starting():
        pool = multiprocessing.get_context('spawn').Pool(1)
    with pool:
        assert pool.apply(signal.getsignal, (signal.SIGINT,)) == signal.SIG_IGN
        assert pool.apply(signal.getsignal, (signal.SIGUSR1,)) == signal.SIG_IGN    # SLURM's --signal, to all
    assert signal.getsignal(signal.SIGINT) is before                          # the parent's Ctrl-C is back


def test_a_stopped_final_model_resumes_from_its_checkpoint(demo_root, tmp_path, cache, monkeypatch):
    import torch

    import train
    from engine import checkpoint

    def model_state(path):
        return torch.load(path, weights_only=True)['state_dict']
    monkeypatch.setitem(checkpoint._stop, 'signal', None)      # restored to no signal after the test
    args = _args(demo_root, cache, '--final-only', '--save-model', '--epochs', '2')
    assert mer.main([*args, '--out', str(tmp_path / 'ref')]) == 0
    # A SIGTERM (as checkpoint's handler records it while training) after the third step of the final model.
    fold_step, steps = train.fold_step, []

    def stopping(*a, **kw):
        fold_step(*a, **kw)
        steps.append(1)
        if len(steps) == 3:
            checkpoint._on_signal(signal.SIGTERM, None)
    monkeypatch.setattr(train, 'fold_step', stopping)
    out = tmp_path / 'run'
    with pytest.raises(checkpoint.Stopped) as e:
        mer.main([*args, '--out', str(out)])
    msg = checkpoint.message(e.value)
    assert "kept the final model's checkpoint at step 3 of " in msg and str(out) in msg, msg
    assert (out / 'folds' / 'all.ckpt').is_file() and not (out / 'model.pt').exists()
    monkeypatch.setattr(train, 'fold_step', fold_step)
    monkeypatch.setitem(checkpoint._stop, 'signal', None)
    assert mer.main([*args, '--out', str(out)]) == 0
    assert not (out / 'folds' / 'all.ckpt').exists()            # removed once model.pt was written
    ref = model_state(tmp_path / 'ref' / 'model.pt')
    again = model_state(out / 'model.pt')
    assert ref.keys() == again.keys() and all(torch.equal(ref[k], again[k]) for k in ref)


def test_a_line_logged_while_a_progress_bar_runs_does_not_break_it():
    """mer.py's terminal handler writes through tqdm.write, which clears the bar, writes the line on a line of its
    own and draws the bar again below it."""
    import io
    import logging

    from tqdm import tqdm

    from engine import logs
    stream = io.StringIO()
    handler = logs.BarSafe(stream)
    handler.setFormatter(logging.Formatter('%(message)s'))
    logger = logging.getLogger('test.bar')
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with tqdm(total=10, file=stream, desc='features', mininterval=0) as bar:
            bar.update(3)
            logger.warning('a line while the bar runs')
            bar.update(2)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert re.search(r'features: +30%.*\r *\ra line while the bar runs\n\rfeatures: +30%', text), repr(text)


def test_a_subject_spelled_otherwise_gives_the_same_fold_files(demo_root, tmp_path, capsys):
    """The same data, its csv spelling subjects as the releases' folders do (SAMM 006), unpadded (CASME II sub1)
    or in capitals (SMIC S1, its clips s1_ne_01): one name per subject, the MEGC2019 list's, so the same folds,
    seeds, fold files and megc_log.txt."""
    import shutil
    root = tmp_path / 'demo'
    shutil.copytree(demo_root, root)
    csv = root / 'megc' / 'combined_3class_gt.csv'
    official = csv.read_bytes()
    respelled = re.sub(rb'casme2,sub0', b'casme2,sub', re.sub(rb'samm,(\d),', rb'samm,00\1,',
                       re.sub(rb'smic,s0(\d),s0', rb'smic,S\1,s', official)))
    assert respelled.count(b'sub0') == 0 and respelled.count(b'samm,00') == 6 and respelled.count(b',S1,s1_') == 3
    outs = []
    for name, text in (('official', official), ('respelled', respelled)):
        csv.write_bytes(text)
        outs.append(tmp_path / name)
        assert mer.main(['--data', str(root / 'megc'), '--ckplus', str(root / 'ck'), '--cache', str(tmp_path / 'c'),
                         *FAST, '--out', str(outs[-1])]) == 0
    files_of = [{p.name: p.read_bytes() for p in (o / 'folds').iterdir()} for o in outs]
    assert sorted(files_of[0]) == sorted(files_of[1]) and files_of[0] == files_of[1]
    assert {'casme2_sub01.csv', 'samm_6.csv', 'smic_s01.csv'} <= set(files_of[0])
    assert (outs[0] / 'megc_log.txt').read_bytes() == (outs[1] / 'megc_log.txt').read_bytes()
    assert 'casme2 subject sub1 is sub01 everywhere' in (outs[1] / 'run.log').read_text()


def test_the_plain_path_predicts_what_the_engine_writes(demo_root, tmp_path, cache, capsys):
    """mer.method's plain calls (pipeline.run, loso.plan_folds, train.new_fold, train.train, train.results) and the
    engine (feature cache, training loop of engine/graphs.py, run folder) give the same prediction to every clip of
    the small demo set (6 subjects, 2 epochs), and the same Table I row."""
    import csv

    from data import frames
    from results import report
    flags = _args(demo_root, cache, '--epochs', '2')
    out = tmp_path / 'run'
    assert mer.main(flags + ['--out', str(out)]) == 0
    engine = {}
    for p in sorted((out / 'folds').glob('*.csv')):
        with open(p, newline='') as fh:
            engine.update({(r['dataset'], r['subject'], r['clip']): (int(r['label']), int(r['pred']))
                           for r in csv.DictReader(fh)})
    capsys.readouterr()

    a, cfg = cli.parse_args(flags)
    micro, macro = experiment.load_samples(a)
    metrics, rows = mer.method(micro + macro, cfg, frames.read_frames)
    assert len(rows) == len(engine) == 18
    assert {(r['dataset'], r['subject'], r['clip']): (r['label'], r['pred']) for r in rows} == engine

    assert mer.main(flags + ['--plain']) == 0                 # the command line's plain path prints the same row
    row = report.table([(cfg.row(), metrics)]).splitlines()[-1]
    assert row in capsys.readouterr().out.splitlines()
    m = json.loads((out / 'metrics.json').read_text())['honest']
    assert {ds: (v['uf1'], v['uar']) for ds, v in m.items()} == {ds: (v['uf1'], v['uar']) for ds, v in metrics.items()}
