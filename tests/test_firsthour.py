"""A new user's first hour (issue 37): errors in one line before any work, video files that end early or keep
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
from test_predict import one_line_error

import mer
from data import synth
from video import longvideo, outputs, predict

ROOT = Path(__file__).resolve().parents[1]


def write_video(path, frames, fps=30.0):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, frames[0].shape[1::-1])
    for f in frames:
        w.write(f)
    w.release()
    return path


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
    assert 'missing.pt: no such file' in one_line_error(['predict', str(video), '--model', str(tmp_path /
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
