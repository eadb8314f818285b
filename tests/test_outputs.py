"""Video in, results out (video/outputs.py, video/longvideo.py): --out files of predict and spot (what they hold,
many videos in one, a video without a face, stops that leave no half-written file), one decoding pass per video,
and a live source (a file read at its own frame rate) that gives the file mode's intervals as they settle."""
import json
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
from video import intervals, outputs

ROOT = Path(__file__).resolve().parents[1]


def write_video(path, frames, fps=30.0):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, frames[0].shape[1::-1])
    for f in frames:
        w.write(f)
    w.release()
    return path


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """Two 12-s 320x240 videos at 30 fps of a real face photo: a lip-corner pull (0.4 s) at 3 s and a broad one held
    1.5 s at 8 s; the second video the same face mirrored. And a video without a face."""
    d = tmp_path_factory.mktemp('videos')
    rng = np.random.default_rng(5)
    face, lm = synth.identity(synth.photos()[1], rng)
    field = synth.deformation(lm, synth.POS, face.shape[:2], 6.0)
    prof = synth.profile(360, 90, 96, 102) + synth.profile(360, 240, 252, 297)
    frames = synth.render(face, field, prof, rng, noise=1.0)
    noise = [np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8) for i in range(40)]
    return dict(one=write_video(d / 'one.avi', frames), two=write_video(d / 'two.avi', frames[:, :, ::-1].copy()),
                noface=write_video(d / 'noface.avi', noise))


def ctrl_c_as_a_terminal_gives_it():
    """For a child process: Ctrl-C's default disposition, which a suite started in the background (nohup, `&`)
    would otherwise pass on as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spot(args, capsys):
    assert mer.main(['spot', *args, '--json', '-q']) == 0
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope='module')
def spotted(videos, tmp_path_factory):
    """The file mode's JSON records and its --out file (CSV) for both videos."""
    import io
    from contextlib import redirect_stdout
    out = tmp_path_factory.mktemp('out') / 'spots.csv'
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert mer.main(['spot', str(videos['one']), str(videos['two']), '--json', '-q', '--out', str(out)]) == 0
    return [json.loads(x) for x in buf.getvalue().splitlines()], out


def test_spot_writes_every_video_s_intervals_in_megc_s_columns_with_what_made_them(spotted):
    records, out = spotted
    info, rows = outputs.read(out)
    assert info['command'].startswith('mer.py spot') and info['code_version']
    assert info['settings']['k'] == intervals.SPOTTING['k']
    header = out.read_text().splitlines()[len(info)]
    assert header.startswith('video,onset,offset,kind,apex')
    assert [(r['video'], r['onset'], r['offset'], r['kind']) for r in rows] == \
        [(Path(r['path']).name, r['onset'], r['offset'], r['kind']) for r in records]
    for name in ('one.avi', 'two.avi'):          # each video: the pull and the held smile, mirrored or not
        mine = [r for r in rows if r['video'] == name]
        assert [r['kind'] for r in mine] == ['micro', 'macro'], mine
        assert mine[0]['onset'] <= 96 <= mine[0]['offset'] and mine[1]['onset'] <= 260 <= mine[1]['offset']


def test_the_spot_file_can_be_json_lines_and_carries_the_model_s_provenance(videos, model_file, tmp_path, capsys):
    out = tmp_path / 'spots.jsonl'
    records = spot([str(videos['one']), '--model', str(model_file), '--out', str(out), '--threshold', '6'], capsys)
    lines = out.read_text().splitlines()
    info = json.loads(lines[0])['meta']
    assert info['model'] == str(model_file) and info['model_provenance']['synthetic'] is True
    assert info['settings']['k'] == 6.0                   # the threshold given as a flag
    rows = [json.loads(x) for x in lines[1:]]
    assert rows and all('label' in r and 'p_positive' in r for r in rows)
    assert [r['onset'] for r in rows] == [r['onset'] for r in records]


def test_predict_writes_csv_with_its_provenance(videos, model_file, tmp_path, capsys):
    out = tmp_path / 'clips.csv'
    assert mer.main(['predict', str(videos['one']), str(videos['two']), '--model', str(model_file), '--onset', '88',
                     '--max-frames', '20', '--out', str(out), '-q']) == 0
    info, rows = outputs.read(out)
    assert [Path(r['path']).name for r in rows] == ['one.avi', 'two.avi']
    assert all(r['onset'] == 88 and 90 <= r['apex'] <= 102 for r in rows), rows
    assert all(abs(r['p_negative'] + r['p_positive'] + r['p_surprise'] - 1) < 1e-4 for r in rows)
    assert info['model_provenance']['synthetic'] is True


def test_a_video_without_a_face_is_one_line_and_the_file_keeps_the_videos_before_it(videos, tmp_path):
    out = tmp_path / 'spots.csv'
    msg = one_line_error(['spot', str(videos['one']), str(videos['noface']), '--out', str(out), '-q'])
    assert 'noface.avi' in msg and 'no face found' in msg
    _, rows = outputs.read(out)
    assert {r['video'] for r in rows} == {'one.avi'} and len(rows) == 2
    assert 'give a .csv or .jsonl' in one_line_error(['spot', str(videos['one']), '--out', str(tmp_path / 'x.txt')])


def test_a_face_that_leaves_ends_its_segment_and_the_rest_is_written(tmp_path, capsys):
    rng = np.random.default_rng(6)
    face, lm = synth.identity(synth.photos()[1], rng)
    frames = synth.render(face, synth.deformation(lm, synth.POS, face.shape[:2], 6.0),
                          synth.profile(240, 60, 66, 72), rng, noise=1.0)
    frames[150:] = 90                                               # the face leaves at 5 s: a grey wall
    path = write_video(tmp_path / 'leaves.avi', list(frames))
    out = tmp_path / 'leaves.csv'
    records = spot([str(path), '--out', str(out)], capsys)
    _, rows = outputs.read(out)
    assert len(rows) == len(records) == 1 and rows[0]['onset'] <= 66 <= rows[0]['offset']


def test_a_still_image_or_a_video_shorter_than_an_interval_says_it_can_give_none(videos, tmp_path, capsys, caplog):
    # A photo or a single frame passes every check (a readable file, a face) and would otherwise end in silence.
    frame = cv2.VideoCapture(str(videos['one'])).read()[1]
    still = tmp_path / 'still.png'
    cv2.imwrite(str(still), frame)
    for path in (still, write_video(tmp_path / 'blink.avi', [frame] * 3, fps=30.0)):
        caplog.clear()
        assert spot([str(path)], capsys) == []
        said = [r.getMessage() for r in caplog.records if path.name in r.getMessage() and '--min-s' in r.getMessage()]
        assert len(said) == 1 and 'can report none' in said[0], [r.getMessage() for r in caplog.records]
    caplog.clear()
    spot([str(write_video(tmp_path / 'long.avi', [frame] * 4, fps=30.0))], capsys)     # 0.133 s: long enough
    assert not any('--min-s' in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_stop_leaves_the_previous_file_or_the_new_one_never_half(videos, tmp_path, sig):
    out = tmp_path / 'spots.csv'
    paths = [str(videos['one'])] * 2 + [str(videos['two'])] * 2
    # written whole before: a stop must leave it or a newer whole file
    assert mer.main(['spot', str(videos['two']), '--out', str(out), '-q']) == 0
    before = out.read_text()
    p = subprocess.Popen([sys.executable, 'mer.py', 'spot', *paths, '--out', str(out), '-q'], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=ctrl_c_as_a_terminal_gives_it)
    deadline = time.time() + 120
    while out.read_text() == before and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)                            # the first video's rows written: stop it in the second
    time.sleep(0.5)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and 'Traceback' not in err, err
    info, rows = outputs.read(out)                   # a whole file: its meta, its header, whole rows
    assert info['command'].endswith('-q') and rows       # (with the intervals of the video it was stopped in)
    assert not list(tmp_path.glob('.spots.csv.tmp*'))


def test_each_video_is_decoded_once(videos, model_file, monkeypatch, capsys):
    counts = {'read': 0, 'grab': 0, 'opened': 0}
    real = cv2.VideoCapture

    class Counting:
        def __init__(self, *a):
            self.cap = real(*a)

        def read(self):
            counts['read'] += 1
            return self.cap.read()

        def grab(self):
            counts['grab'] += 1
            return self.cap.grab()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, 'VideoCapture', Counting)
    spot([str(videos['one']), '--model', str(model_file)], capsys)
    assert counts['read'] + counts['grab'] == 360 + 1       # each frame once, and the read that finds the end
    counts.update(read=0, grab=0)
    assert mer.main(['predict', str(videos['one']), '--model', str(model_file), '--onset', '88', '--max-frames',
                     '20', '-q']) == 0
    assert counts['grab'] == 88 and counts['read'] == 20 + 1    # before the onset grabbed, then what the apex needs


def test_a_live_file_gives_the_file_mode_s_intervals_as_they_settle(videos, spotted, capsys):
    records, _ = spotted
    t0 = time.time()
    live = spot([str(videos['one']), '--live'], capsys)
    took = time.time() - t0
    want = [r for r in records if r['path'] == str(videos['one'])]
    assert [(r['onset'], r['apex'], r['offset'], r['kind']) for r in live] == \
        [(r['onset'], r['apex'], r['offset'], r['kind']) for r in want]
    assert took >= 11.5                                            # read at its own rate: 12 s
    # the pull (3-3.4 s) settles while the video still plays: once the 6-s warm-up is over, K + 0.5 s after it ends
    # (about 2.6 s after its last frame on an idle machine; the bound leaves room for a loaded one)
    assert live[0]['delay_s'] < 6.0, live


def test_a_camera_that_is_not_there_is_one_line():
    assert 'no camera' in one_line_error(['spot', '--camera', '7', '-q'])


def test_ctrl_c_ends_a_live_run_keeping_what_was_found(videos, tmp_path):
    out = tmp_path / 'live.csv'
    p = subprocess.Popen([sys.executable, 'mer.py', 'spot', str(videos['one']), '--live', '--json', '--out', str(out),
                          '-q'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=ctrl_c_as_a_terminal_gives_it)
    # Ctrl-C once the pull at 3-3.4 s has been given (about 6 s into the 12-s video, however long the start took)
    first = p.stdout.readline()
    p.send_signal(signal.SIGINT)
    rest, err = p.communicate(timeout=60)
    assert p.returncode == 0 and 'stopping (Ctrl-C)' in err and 'Traceback' not in err, err
    printed = [json.loads(x) for x in [first, *rest.splitlines()]]
    assert printed[0]['onset'] <= 96 <= printed[0]['offset'] and printed[0]['kind'] == 'micro'
    assert printed[0]['delay_s'] < 6.0          # given while the video played: Ctrl-C came before its end
    rows = outputs.read(out)[1]
    assert [r['onset'] for r in rows] == [r['onset'] for r in printed]


def test_merge_joins_files_and_refuses_a_video_twice_or_other_settings(spotted, tmp_path):
    _, out = spotted
    info, rows = outputs.read(out)
    one = [r for r in rows if r['video'] == 'one.avi']
    a, b = tmp_path / 'a.csv', tmp_path / 'b.jsonl'
    outputs.write(a, one, list(rows[0]), info)
    outputs.write(b, [r for r in rows if r['video'] == 'two.avi'], list(rows[0]), info)
    assert mer.main(['spot', '--merge', str(a), str(b), '--out', str(tmp_path / 'all.csv'), '-q']) == 0
    assert outputs.read(tmp_path / 'all.csv')[1] == rows
    assert 'was spotted in' in one_line_error(['spot', '--merge', str(a), str(a), '-q'])
    other = tmp_path / 'other.csv'
    outputs.write(other, one, list(rows[0]), dict(info, settings=dict(info['settings'], k=6.0)))
    assert 'other spotter settings' in one_line_error(['spot', '--merge', str(b), str(other), '-q'])
    (tmp_path / 'junk.csv').write_text('# not: json at all\nx\n')
    assert 'not a results file' in one_line_error(['spot', '--merge', str(tmp_path / 'junk.csv'), '-q'])


def test_a_part_or_a_shard_that_is_not_i_of_n_is_refused_by_the_parser(capsys):
    for argv, flag in ((['--demo', '--folds', '3/2'], '--folds 3/2'),
                       (['spot', '--demo', '--part', '0/4'], '--part 0/4'), (['spot', '--demo', '--part', 'x'], '--part x')):
        with pytest.raises(SystemExit) as e:
            mer.main(argv)
        assert e.value.code == 2 and f'{flag}: expected i/n with 1 <= i <= n' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mer.main(['spot', 'video.mp4', '--part', '1/2'])
    assert '--part splits the videos of --data or --demo' in capsys.readouterr().err
