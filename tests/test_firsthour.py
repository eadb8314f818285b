"""A new user's first hour: errors in one line before any work, video files that end early or keep
their own clock, a stopped spot run that keeps what it printed, the precision a run used on record, and the
package installed and used from outside the repository."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_outputs import write_video
from test_predict import one_line_error

import mer
from data import synth
from video import longvideo, outputs, predict

ROOT = Path(__file__).resolve().parents[1]


def face_frames(n, onset, apex, offset, seed=6):
    """n 320x240 frames of a real face photo with a lip-corner pull over onset..offset."""
    rng = np.random.default_rng(seed)
    face, lm = synth.identity(synth.photos()[1], rng)
    field = synth.deformation(lm, synth.POS, face.shape[:2], 6.0)
    return list(synth.render(face, field, synth.profile(n, onset, apex, offset), rng, noise=1.0))


def unwritable_folder(tmp_path):
    """A folder no file can be created in (a read-only one; /proc for root, whom permissions do not stop)."""
    d = tmp_path / 'readonly'
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / 'probe').write_text('')
    except OSError:
        return d
    (d / 'probe').unlink()
    return Path('/proc')


def no_model_load(monkeypatch):
    def load(*a, **k):
        raise AssertionError('the model was loaded before the inputs were checked')
    monkeypatch.setattr(predict, 'load', load)


# ----------------------------------------------------------------------------------------------- errors first
@pytest.mark.parametrize('argv, near', [(['--dmeo'], '--demo'), (['spot', 'v.mp4', '--tresh', '3'], '--threshold'),
                                        (['predict', 'v.mp4', '--model', 'm.pt', '--onest', '3'], '--onset')])
def test_a_mistyped_flag_is_two_lines_naming_the_flag_meant(argv, near, capsys):
    with pytest.raises(SystemExit) as e:
        mer.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) <= 2, err
    assert f'did you mean {near}?' in err and '--help' in err


def test_spot_demo_hard_says_the_long_video_demo_has_no_preset(capsys):
    with pytest.raises(SystemExit):
        mer.main(['spot', '--demo', 'hard'])
    err = capsys.readouterr().err
    assert 'no preset' in err and 'mer.py spot --demo' in err and len(err.splitlines()) <= 2, err


def test_predict_and_spot_check_their_inputs_before_loading_the_model(tmp_path, monkeypatch):
    no_model_load(monkeypatch)
    model = tmp_path / 'model.pt'
    model.write_bytes(b'x')
    assert 'nosuch.mp4: no such file' in one_line_error(['predict', str(tmp_path / 'nosuch.mp4'), '--model',
                                                         str(model), '-q'])
    assert 'nosuch.mp4: no such file' in one_line_error(['spot', str(tmp_path / 'nosuch.mp4'), '--model',
                                                         str(model), '-q'])
    video = write_video(tmp_path / 'v.avi', face_frames(10, 2, 4, 6))
    assert 'missing.pt: no such model file' in one_line_error(['predict', str(video), '--model', str(tmp_path /
                                                                                              'missing.pt'), '-q'])


def test_an_out_file_that_cannot_be_written_stops_before_any_spotting(tmp_path, monkeypatch):
    def spot_video(*a, **k):
        raise AssertionError('spotted before --out was checked')
    monkeypatch.setattr(longvideo, 'spot_video', spot_video)
    no_model_load(monkeypatch)
    video = write_video(tmp_path / 'v.avi', face_frames(10, 2, 4, 6))
    ro = unwritable_folder(tmp_path)
    msg = one_line_error(['spot', str(video), '--out', str(ro / 'spots.csv'), '-q'])
    assert '--out' in msg and 'cannot be written' in msg
    msg = one_line_error(['predict', str(video), '--model', str(video), '--out', str(ro / 'clips.csv'), '-q'])
    assert '--out' in msg and 'cannot be written' in msg
    msg = one_line_error(['spot', str(video), '--figure', str(ro / 'timeline.png'), '-q'])
    assert '--figure' in msg and 'cannot be written' in msg


def test_a_camera_that_is_not_there_is_one_line_without_opencv_s_warnings():
    r = subprocess.run([sys.executable, 'mer.py', 'spot', '--camera', '7', '-q'], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.splitlines() == [r.stderr.strip()], r.stderr
    assert 'camera 7: OpenCV finds no camera at that index' in r.stderr and 'WARN' not in r.stderr


# ----------------------------------------------------------------------------------------------- video inputs
def _ebml(id_, payload):
    """One Matroska element: its id, its size as an EBML variable-length integer, its payload."""
    if isinstance(payload, int):
        payload = payload.to_bytes(max(1, (payload.bit_length() + 7) // 8), 'big')
    elif isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    size = next(((1 << (7 * k)) | n).to_bytes(k, 'big') for k in range(1, 9) if n < (1 << (7 * k)) - 1)
    return id_ + size + payload


def write_mkv(path, frames, times_s):
    """A Matroska file of JPEG frames (V_MJPEG), each with its own timestamp: a variable frame rate, as a phone
    records it."""
    import struct
    h, w = frames[0].shape[:2]
    header = _ebml(b'\x1a\x45\xdf\xa3', _ebml(b'\x42\x86', 1) + _ebml(b'\x42\xf7', 1) + _ebml(b'\x42\xf2', 4) +
                   _ebml(b'\x42\xf3', 8) + _ebml(b'\x42\x82', 'matroska') + _ebml(b'\x42\x87', 4) +
                   _ebml(b'\x42\x85', 2))
    info = _ebml(b'\x15\x49\xa9\x66', _ebml(b'\x2a\xd7\xb1', 1000000) +          # timestamps in ms
                 _ebml(b'\x44\x89', struct.pack('>d', 1000 * times_s[-1] + 33)))
    track = _ebml(b'\xae', _ebml(b'\xd7', 1) + _ebml(b'\x73\xc5', 1) + _ebml(b'\x83', 1) + _ebml(b'\x86', 'V_MJPEG') +
                  _ebml(b'\xe0', _ebml(b'\xb0', w) + _ebml(b'\xba', h)))
    clusters = b''.join(_ebml(b'\x1f\x43\xb6\x75', _ebml(b'\xe7', int(round(1000 * t))) + _ebml(
        b'\xa3', b'\x81\x00\x00\x80' + cv2.imencode('.jpg', f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()))
        for f, t in zip(frames, times_s))
    Path(path).write_bytes(header + _ebml(b'\x18\x53\x80\x67', info + _ebml(b'\x16\x54\xae\x6b', track) + clusters))
    return path


def test_a_variable_frame_rate_video_gives_each_frame_s_own_time_and_says_so(tmp_path, capsys, caplog):
    # 5 s at 30 fps, then 10 s at 15 fps; a pull at frames 195-207, 8.0-8.8 s into the video (6.5 s at 30 fps)
    frames = face_frames(300, 195, 201, 207)
    times = [i / 30 for i in range(150)] + [5 + i / 15 for i in range(150)]
    path = write_mkv(tmp_path / 'phone.mkv', frames, times)
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) == 30      # the header's rate: the first frames'
    assert mer.main(['spot', str(path), '--json', '-q']) == 0
    import json
    (r,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert r['onset'] <= 201 <= r['offset']
    for k in ('onset', 'apex', 'offset'):
        assert r[f'{k}_s'] == pytest.approx(times[r[k]], abs=0.002), r
    assert 'variable frame rate' in caplog.text and '-fps_mode cfr' in caplog.text


def test_a_constant_rate_video_keeps_frame_over_rate_seconds(tmp_path, capsys, caplog):
    frames = face_frames(150, 60, 66, 72)
    path = write_mkv(tmp_path / 'steady.mkv', frames, [i / 30 for i in range(150)])
    assert mer.main(['spot', str(path), '--json', '-q']) == 0
    import json
    (r,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r[f'{k}_s'] for k in ('onset', 'apex', 'offset')] == [round(r[k] / 30, 3) for k in
                                                                   ('onset', 'apex', 'offset')]
    assert 'variable frame rate' not in caplog.text


@pytest.fixture(scope='module')
def long_video(tmp_path_factory):
    """A 20-s video at 30 fps: a pull at 3 s, another at 16 s."""
    frames = face_frames(600, 90, 96, 102)
    frames[470:490] = face_frames(600, 470 - 10, 476 - 10, 482 - 10)[:20]
    return write_video(tmp_path_factory.mktemp('long') / 'long.avi', frames)


def child_ctrl_c():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_spot_run_keeps_every_printed_interval_in_out_and_promises_no_resume(long_video, tmp_path, sig):
    import json
    out = tmp_path / 'spots.csv'
    p = subprocess.Popen([sys.executable, 'mer.py', 'spot', str(long_video), str(long_video), '--json', '--out',
                          str(out), '-q'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=child_ctrl_c)
    first = p.stdout.readline()                  # the pull at 3 s, given while the first video is spotted
    p.send_signal(sig)
    rest, err = p.communicate(timeout=120)
    printed = [json.loads(x) for x in [first, *rest.splitlines()]]
    assert p.returncode == (143 if sig == signal.SIGTERM else 1) and 'Traceback' not in err, err
    assert len(err.strip().splitlines()) == 1 and 'resume' not in err.replace('no resume', ''), err
    assert 'stopped by' in err and 'video 1 of 2' in err and str(out) in err
    info, rows = outputs.read(out)
    assert [(r['onset'], r['offset']) for r in rows] == [(r['onset'], r['offset']) for r in printed]
    assert printed[0]['onset'] <= 96 <= printed[0]['offset']
    assert info['stopped']['video'] == str(long_video) and info['stopped']['videos_done'] == 0


# ----------------------------------------------------------------------------------------------- numbers
def test_a_temperature_fitted_on_other_folds_is_reported_and_said_not_to_help_where_it_does_not():
    from results import calibration
    rng = np.random.default_rng(0)
    # two subjects' folds: one network overconfident on the first, underconfident on the second; one temperature
    # fitted on both looks fine in sample, but each fold's, fitted on the other, pushes it the wrong way
    z = rng.normal(0, 1.5, (2000, 3))
    labels = np.array([rng.choice(3, p=row) for row in calibration.softmax(z)])
    logits = np.concatenate([4.0 * z[:1000], 0.25 * z[1000:]])
    folds = ['a'] * 1000 + ['b'] * 1000
    cal = calibration.calibrate(logits, labels, folds)
    assert cal['ece_crossfit'] > cal['ece_before'] and cal['helps'] is False
    assert 'does not help' in calibration.verdict(cal)
    # the same network overconfident everywhere: the temperature of the other folds helps each fold
    folds = [i % 10 for i in range(2000)]
    cal = calibration.calibrate(4.0 * z, labels, folds)
    assert cal['ece_crossfit'] < cal['ece_before'] / 3 and cal['helps'] is True and 'it helps' in \
        calibration.verdict(cal)
    want = calibration.ece(calibration.cross_fitted(4.0 * z, labels, folds), labels)[0]
    assert cal['ece_crossfit'] == pytest.approx(want, abs=1e-6)


def test_a_run_records_the_precision_it_used_and_its_device(demo_root, feature_cache, tmp_path, capsys):
    import json

    import torch

    import config
    import train
    from engine import weights
    from test_mer import _args
    out = tmp_path / 'run'
    assert mer.main(_args(demo_root, feature_cache, '--out', str(out), '--save-model')) == 0
    used = 'bf16' if train.bf16(config.Config(precision='auto'), torch.device('cpu')) else 'fp32'
    printed = capsys.readouterr().out
    assert f'trained in {used} on cpu: ' in printed and '(--precision auto)' in printed, printed
    saved = json.loads((out / 'config.json').read_text())
    assert saved['precision'] == 'auto' and saved['machine']['precision'] == used
    assert saved['machine']['device'].startswith('cpu: ') and len(saved['machine']['device']) > 6
    d = torch.load(out / 'model.pt', weights_only=True)
    assert d['provenance']['precision'] == used and d['provenance']['device'] == saved['machine']['device']
    assert f'in {used} on cpu: ' in weights.describe(d)[0]
    cal = json.loads((out / 'metrics.json').read_text())['calibration']
    assert {'ece_crossfit', 'nll_crossfit', 'helps'} <= set(cal) and d['calibration']['helps'] == cal['helps']
    # a resume in another precision is warned of, not refused
    other = 'fp32' if used == 'bf16' else 'bf16'
    import logging
    from engine import runfolder
    logs = []
    handler = logging.Handler()
    handler.emit = lambda r: logs.append(r.getMessage())
    logging.getLogger('engine.runfolder').addHandler(handler)
    try:
        runfolder.check_config(out, {k: v for k, v in saved.items() if k not in ('machine', 'code_version')},
                               dict(precision=other, device='cpu: elsewhere'))
    finally:
        logging.getLogger('engine.runfolder').removeHandler(handler)
    assert any(f'trained in {used}' in x and f'--precision {used}' in x for x in logs), logs


# ----------------------------------------------------------------------------------------------- a package
@pytest.mark.parametrize('argv', [['--help'], ['spot', '--help'], ['predict', '--help'], ['--dmeo']])
def test_help_and_a_mistyped_flag_answer_before_torch_is_imported(argv):
    r = subprocess.run([sys.executable, '-X', 'importtime', 'mer.py', *argv], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    imported = {x.split('|')[-1].strip() for x in r.stderr.splitlines() if x.startswith('import time:')}
    assert imported and 'torch' not in imported and 'torchvision' not in imported, sorted(imported)[:5]
    assert r.returncode == (2 if argv == ['--dmeo'] else 0)


@pytest.mark.parametrize('plain', [False, True])
def test_a_cuda_device_that_is_not_there_is_said_before_any_feature_is_made(demo_root, tmp_path, monkeypatch, plain):
    import pipeline
    import torch
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is here: the check is for a machine without one')
    made = []
    monkeypatch.setattr(pipeline, 'run', lambda *args, **kw: made.append(args) or pytest.fail('a feature was made'))
    with pytest.raises(SystemExit, match=r'^mer.py: error: --device cuda: no CUDA device .*use --device cpu$'):
        mer.main(['--data', str(demo_root / 'megc'), '--ckplus', str(demo_root / 'ck'), '--device', 'cuda', '--init',
                  'random', '--workers', '1', '--cache', str(tmp_path / 'cache'), '--out', str(tmp_path / 'out'), '-q',
                  *['--plain'] * plain])
    assert made == []


def test_spotting_a_video_never_imports_torch():
    # mer.py spot reads no model unless --model is given: torch would cost it two seconds and a gigabyte.
    from test_spotting import REAL
    if not REAL.is_file():
        pytest.skip(f'{REAL} not found: the real face video beside the repository is absent on this machine')
    r = subprocess.run([sys.executable, '-X', 'importtime', 'mer.py', 'spot', str(REAL), '-q'], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    imported = {x.split('|')[-1].strip() for x in r.stderr.splitlines() if x.startswith('import time:')}
    assert r.returncode == 0 and 'macro' in r.stdout, r.stderr[-2000:]
    assert 'video.intervals' in imported and 'torch' not in imported and 'torchvision' not in imported


def test_a_script_read_from_standard_input_runs_its_workers_in_its_own_process():
    # A spawned worker runs the main script again from its path, which `python - < script.py` has none of: each
    # would die as it starts and the pool start them again forever.
    script = ('from util import workers\n'
              'print(workers.processes(0), workers.imap(abs, [-1, -2, -3], workers=2, quiet=True))\n')
    r = subprocess.run([sys.executable, '-'], input=script, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ['1', '[1,', '2,', '3]'], r.stderr[-2000:]
    r = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split()[1:] == ['[1,', '2,', '3]'], r.stderr[-2000:]


@pytest.mark.parametrize('tool', ['bench', 'fidelity', 'compare'])
def test_a_tool_run_as_a_file_says_to_run_it_as_a_module(tool):
    r = subprocess.run([sys.executable, f'tools/{tool}.py', '--help'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and 'Traceback' not in r.stderr and f'-m tools.{tool}' in r.stderr, r.stderr
    r = subprocess.run([sys.executable, '-m', f'tools.{tool}', '--help'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.startswith(f'usage: python -m tools.{tool} '), r.stdout[:200]
    if tool == 'bench':
        assert 'timed calls per figure' in r.stdout                # --repeats says what it repeats


def test_the_package_installs_and_the_notebook_example_runs_outside_the_repository(model_file, tmp_path):
    import re
    import shutil
    import tomllib
    listed = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools']['py-modules']
    assert sorted(listed) == sorted(p.stem for p in ROOT.glob('*.py'))       # every file of the method, no other
    src, target, outside = tmp_path / 'src', tmp_path / 'site', tmp_path / 'elsewhere'
    src.mkdir()
    outside.mkdir()
    for f in [*ROOT.glob('*.py'), *(ROOT / n for n in ('pyproject.toml', 'requirements.txt', 'README.md', 'LICENSE'))]:
        shutil.copy(f, src)
    for d in ('data', 'engine', 'results', 'tools', 'util', 'video'):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns('__pycache__'))
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--no-index',
                        '-q', '--target', str(target), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (target / 'bin' / 'mer').is_file() and (target / 'video' / 'api.py').is_file()
    assert (target / 'video' / 'emotion_fer2013.npz').is_file()              # the spotter's classifier's weights
    code = re.search(r'```python\n(.*?)```', (ROOT / 'docs' / 'notebook.md').read_text(), re.S).group(1)
    (outside / 'example.py').write_text(code.replace('runs/demo/part_adversarial_emr/model.pt', str(model_file)) +
                                        '\nimport video\nprint(video.__file__)\n')
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, 'example.py'], cwd=outside, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[-1].startswith(str(target)), lines      # the installed copy, not the checkout
    assert lines[1].split()[3] == 'micro'                                     # the pull found by api.spot
    # the `mer` command of the installed package
    r = subprocess.run([sys.executable, str(target / 'bin' / 'mer'), 'spot', '--dmeo'], cwd=outside, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'did you mean --demo?' in r.stderr, r.stderr


# ----------------------------------------------------------------------------------------------- figures
def test_predict_s_figure_titles_its_panels_and_names_each_clip(tmp_path):
    tiles = np.hstack([np.full((64, 64, 3), v, np.uint8) for v in (40, 80, 120, 160)])
    results = [dict(path=f'/x/clip{i}.mp4', label='positive', p_negative=0.1, p_positive=0.8, p_surprise=0.1, onset=0,
                    apex=7, tiles=tiles) for i in range(2)]
    path = tmp_path / 'fig.png'
    predict.save_figure(path, results)
    img = cv2.imread(str(path))
    side = img.shape[1] // 4
    assert side >= 160 and img.shape[0] == 24 + 2 * (24 + side)
    for c in range(4):                               # a title over every panel: black text on a white band
        band = img[:24, c * side:(c + 1) * side]
        assert (band == 255).mean() > 0.7 and (band < 100).any(), c
    for i in range(2):                               # a line naming each clip above its panels
        line = img[24 + i * (24 + side):48 + i * (24 + side)]
        assert (line == 255).mean() > 0.7 and (line < 100).any()


def test_the_timeline_says_1_interval_keeps_its_legend_beside_the_plot_and_close_labels_apart(tmp_path,
                                                                                              monkeypatch):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figs = []
    monkeypatch.setattr(plt, 'close', figs.append)
    n = 300
    curve = dict(pos=np.arange(n), seg=np.zeros(n), frames=n)
    shown = dict(v=np.abs(np.sin(np.arange(n) / 9.0)), threshold=0.8, untrusted=np.zeros(n, bool))
    video = dict(path='a.avi', fps=30.0, truths=[])
    one = [dict(start=100, end=120, apex=110, kind='micro', score=1.0)]
    two = [dict(start=100, end=140, apex=118, kind='macro', score=1.0),
           dict(start=130, end=170, apex=126, kind='macro', score=1.0)]
    longvideo.save_figure(tmp_path / 't.png', [(video, one, shown, curve), (dict(video, path='b.avi'), two, shown,
                                                                          curve)])
    (fig,) = figs
    first, second = fig.axes
    assert first.get_title() == 'a.avi: 1 interval' and second.get_title() == 'b.avi: 2 intervals'
    fig.canvas.draw()
    for ax in fig.axes:                              # the legend beside the axes, never over a curve or a thumbnail
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    labels = [t for t in second.texts if t.get_text() == 'macro']
    assert len(labels) == 2 and labels[0].get_position()[1] != labels[1].get_position()[1]
    a, b = (t.get_window_extent() for t in labels)
    assert not a.overlaps(b)
    plt.close(fig)


def test_a_video_shorter_than_the_window_has_its_expression_spotted(tmp_path, capsys):
    import json
    path = write_video(tmp_path / 'short.avi', face_frames(59, 10, 16, 22))        # 2 s at 30 fps: K is 2 s
    out = tmp_path / 'short.csv'
    assert mer.main(['spot', str(path), '--json', '-q', '--out', str(out)]) == 0
    found = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(found) == 1 and 10 <= found[0]['apex'] <= 22, found          # within the pull (10-22)
    assert [r['onset'] for r in outputs.read(out)[1]] == [found[0]['onset']]


@pytest.mark.parametrize('keep', [0.5, 40 / 240])
def test_a_recording_cut_short_is_spotted_as_far_as_it_decodes(tmp_path, keep, capsys, caplog):
    import json
    whole = write_video(tmp_path / 'whole.avi', face_frames(240, 60, 66, 72))
    cut = tmp_path / 'cut.avi'
    data = whole.read_bytes()
    cut.write_bytes(data[:int(len(data) * keep)])                 # the recorder stopped: no index, half a frame
    assert mer.main(['spot', str(cut), '--json', '-q']) == 0
    found = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert 'the stream ended after' in caplog.text
    if keep == 0.5:                                               # the pull at 2-2.4 s is in the part that decodes
        assert len(found) == 1 and found[0]['onset'] <= 66 <= found[0]['offset'], found
    else:
        assert found == []


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_predict_run_keeps_its_printed_clips_and_promises_no_resume(model_file, tmp_path, sig):
    video = write_video(tmp_path / 'clip.avi', face_frames(24, 0, 8, 16))
    out = tmp_path / 'clips.csv'
    p = subprocess.Popen([sys.executable, 'mer.py', 'predict', *[str(video)] * 40, '--model', str(model_file),
                          '--apex', '8', '--out', str(out), '-q'], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=child_ctrl_c)
    first = p.stdout.readline()
    p.send_signal(sig)
    rest, err = p.communicate(timeout=120)
    printed = [first, *rest.splitlines()]
    assert p.returncode == (143 if sig == signal.SIGTERM else 1) and 'Traceback' not in err, err
    assert 'predict has no resume' in err and 'run the same command again' not in err, err
    assert len(printed) <= len(outputs.read(out)[1]) <= len(printed) + 1 < 41    # every printed clip, one more at most
