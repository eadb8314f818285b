"""The command line end to end on the small demo set: every stage chained, the run folder, resume, clear errors."""
import json

import pytest

import mer

FAST = ['--random-init', '--epochs', '1', '--batch-size', '8', '--size', '64', '--align-size', '96',
        '--workers', '2', '-q']


def _args(demo_root, tmp_path, *extra):
    return ['--data', str(demo_root / 'megc'), '--ckplus', str(demo_root / 'ck'), '--cache', str(tmp_path / 'cache'),
            *FAST, *extra]


def test_one_command_runs_every_stage_and_writes_the_run_folder(demo_root, tmp_path, capsys):
    out = tmp_path / 'run'
    assert mer.main(_args(demo_root, tmp_path, '--out', str(out), '--select-on-test')) == 0
    printed = capsys.readouterr().out
    assert '| Part + Adversarial + EMR |' in printed and '[best epoch chosen on test]' in printed
    m = json.loads((out / 'metrics.json').read_text())
    assert set(m) == {'honest', 'selected_on_test'}
    assert {k: v['n'] for k, v in m['honest'].items()} == {'all': 18, 'smic': 6, 'casme2': 6, 'samm': 6}
    cfg = json.loads((out / 'config.json').read_text())
    assert (cfg['parts'], cfg['adv'], cfg['emr'], cfg['weights']) == (True, True, True, 'random')
    assert len(list((out / 'folds').glob('*.csv'))) == 6                     # 2 subjects x 3 datasets
    log = (out / 'megc_log.txt').read_text().splitlines()
    assert sum(len(line.split()) == 2 for line in log) == 6                  # one 'dataset subject' header each
    assert (out / 'table.md').read_text().strip() in printed
    assert (out / 'confusion_all.png').is_file()

    # Started again with the same flags: every fold is found, nothing retrains, the same table comes out.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / 'folds').glob('*.csv')}
    assert mer.main(_args(demo_root, tmp_path, '--out', str(out), '--select-on-test')) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / 'folds').glob('*.csv')} == stamps
    assert capsys.readouterr().out.splitlines()[:-1] == printed.splitlines()[:-1]     # the last line is timing
    assert json.loads((out / 'metrics.json').read_text()) == m

    # The same folder with another setting is refused, naming what differs.
    with pytest.raises(SystemExit, match=r'config.json: this run folder was made with other settings \(adv, row\)'):
        mer.main(_args(demo_root, tmp_path, '--out', str(out), '--select-on-test', '--no-adv'))


def test_table_runs_every_row_into_its_own_folder(demo_root, tmp_path, capsys):
    out = tmp_path / 'table'
    assert mer.main(_args(demo_root, tmp_path, '--out', str(out), '--table')) == 0
    printed = capsys.readouterr().out
    for parts, adv, emr in mer.ROWS:
        name = mer.row_name(parts, adv, emr)
        assert f'| {name} |' in printed
        assert json.loads((out / mer.slug(name) / 'config.json').read_text())['row'] == name
    assert (out / 'table.md').is_file()


def test_default_run_folder_is_per_row(demo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mer.main(_args(demo_root, tmp_path, '--no-parts', '--no-emr', '--epochs', '1')) == 0
    assert (tmp_path / 'runs' / 'megc' / 'global_adversarial' / 'metrics.json').is_file()


def test_bad_data_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        mer.main(['--data', str(tmp_path / 'nowhere'), '--random-init', '-q'])
    msg = str(e.value)
    assert msg.startswith('mer.py: error: ') and str(tmp_path / 'nowhere') in msg and '\n' not in msg


def test_missing_imagenet_weights_stop_unless_allowed(demo_root, tmp_path):
    with pytest.raises(SystemExit, match=r'nope\.pth.*--random-init'):
        mer.main(['--data', str(demo_root / 'megc'), '--weights', str(tmp_path / 'nope.pth'), '-q',
                  '--cache', str(tmp_path / 'cache'), '--workers', '1', '--align-size', '96'])
