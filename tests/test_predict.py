"""model.pt and `mer.py predict`: a saved model round trip, clear one-line errors, and a real video end to end."""
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import config
import mer
import model
import pipeline
from data import synth
from engine import weights
from util import files

REAL = Path(__file__).resolve().parents[2] / 'shared' / 'realclips' / 'single_face.mp4'
FIELDS = {k for k in config.result_settings(config.PAPER)}


@pytest.fixture(scope='module')
def frames_dir(tmp_path_factory):
    """A folder of 4 numbered frames (img10..img13.png) of a real face photo."""
    d = tmp_path_factory.mktemp('frames')
    face = cv2.resize(synth.photos()[1], (256, 300))
    for i in range(4):
        cv2.imwrite(str(d / f'img{10 + i}.png'), np.roll(face, i, axis=1))
    return d


def one_line_error(argv):
    """The one-line message of a mer.py command that must fail."""
    with pytest.raises(SystemExit) as e:
        mer.main(argv)
    msg = str(e.value)
    assert msg.startswith('mer.py: error: ') and '\n' not in msg, msg
    return msg


def _fail(args):
    return one_line_error(['predict', *args, '-q'])


def test_model_file_round_trip_gives_the_same_predictions(tmp_path):
    torch.manual_seed(0)
    net = model.PartNet(hidden=16).eval()                           # every setting travels, the heads' width too
    path = tmp_path / 'model.pt'
    settings = config.result_settings(dataclasses.replace(config.DEMO, hidden=16))
    weights.save_model(path, net, settings, pipeline.constants(), config.CLASSES, 'v1', {'casme2': 3})
    loaded, d = weights.load_model(path, FIELDS, pipeline.constants(), config.CLASSES, 'v1')
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x)['joint'], loaded(x)['joint'])
    assert d['settings']['size'] == 64 and d['classes'] == list(config.CLASSES) and d['trained_on'] == {'casme2': 3}
    assert loaded.joint.in_features == 32 and d['settings']['hidden'] == 16
    assert not list(tmp_path.glob('.*tmp*'))                       # written through a temporary file, then renamed


def test_a_model_from_code_with_other_pipeline_constants_is_refused_naming_them(model_file, frames_dir, monkeypatch):
    import flow
    monkeypatch.setitem(flow.ENCODE, 'flow_scale', 3.0)
    msg = _fail([str(frames_dir), '--model', str(model_file)])
    assert str(model_file) in msg and '(encode)' in msg and 'train again' in msg


def test_other_setting_names_or_format_are_refused(model_file, tmp_path):
    d = torch.load(model_file, weights_only=True)
    for change, expect in ((dict(version=3), 'model file format 3'),
                           (dict(settings=dict(d['settings'], warp_speed=9)), '(warp_speed)')):
        bad = tmp_path / 'other.pt'
        torch.save(dict(d, **change), bad)
        with pytest.raises(weights.ModelFileError, match=expect):
            weights.load_model(bad, FIELDS, pipeline.constants(), config.CLASSES, files.code_version())


def test_a_model_says_what_it_was_trained_on_and_a_demo_model_warns(model_file, frames_dir, tmp_path, caplog, capsys):
    import logging
    d = torch.load(model_file, weights_only=True)
    p = d['provenance']
    # The fixture trained on the small demo set through --data and --ckplus (not --demo): still synthetic.
    assert p['synthetic'] is True and p['protocol'] == 'loso' and p['date'].endswith('Z')
    assert p['datasets']['casme2'] == {'samples': 6, 'subjects': 2} and p['datasets']['ck+']['subjects'] == 2
    with caplog.at_level(logging.INFO):
        assert mer.main(['predict', str(frames_dir), '--model', str(model_file), '--apex', '13']) == 0
    said = [r.getMessage() for r in caplog.records]
    assert any('trained on the synthetic demo set (casme2 6 samples of 2 subjects' in m for m in said), said
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and 'mean nothing on real faces' in
              r.getMessage()]
    assert len(warned) == 1
    # A model of real data does not warn; a format 1 file (before provenance) loads and says it has none.
    real = tmp_path / 'real.pt'
    torch.save(dict(d, provenance=dict(p, synthetic=False, source='/data/megc')), real)
    assert weights.describe(weights.load_model(real, FIELDS, pipeline.constants(), config.CLASSES, 'x')[1])[1] is False
    old = tmp_path / 'old.pt'
    torch.save({k: v for k, v in d.items() if k != 'provenance'} | dict(version=1), old)
    said, synthetic = weights.describe(weights.load_model(old, FIELDS, pipeline.constants(), config.CLASSES, 'x')[1])
    assert synthetic is None and 'no provenance' in said


def test_a_file_that_is_not_a_model_is_one_line(frames_dir, tmp_path):
    for name, data in (('notes.pt', b'hello'), ('dict.pt', None)):
        bad = tmp_path / name
        if data is None:
            torch.save({'weights': torch.zeros(2)}, bad)
        else:
            bad.write_bytes(data)
        msg = _fail([str(frames_dir), '--model', str(bad)])
        assert str(bad) in msg and 'not a model file written by mer.py --save-model' in msg
    assert 'no such model file' in _fail([str(frames_dir), '--model', str(tmp_path / 'none.pt')])


def test_a_folder_given_as_the_model_is_named_as_a_folder(model_file, frames_dir):
    msg = _fail([str(frames_dir), '--model', str(model_file.parent)])
    assert f'{model_file.parent}: a folder, not a model file' in msg and f'pass {model_file}' in msg


def test_bad_clips_are_one_line_naming_the_file_and_nothing_is_written(model_file, frames_dir, tmp_path):
    not_video = tmp_path / 'clip.mp4'
    not_video.write_text('not a video')
    empty = tmp_path / 'empty'
    empty.mkdir()
    single = tmp_path / 'single'
    single.mkdir()
    (single / 'img1.png').write_bytes((frames_dir / 'img10.png').read_bytes())
    fig = tmp_path / 'fig.png'
    cases = [([str(tmp_path / 'missing.mp4')], 'missing.mp4', 'no such file'),
             ([str(not_video)], str(not_video), 'OpenCV reads no frames'),
             ([str(empty)], str(empty), 'no numbered image frames'),
             ([str(single)], str(single), '1 frame; a clip needs at least 2'),
             ([str(frames_dir), '--onset', '12', '--apex', '11'], str(frames_dir), 'must come after the onset'),
             ([str(frames_dir), '--apex', '14'], str(frames_dir), '--apex 14 is beyond the clip\'s frames (10 to 13)'),
             ([str(frames_dir), '--onset', '13'], str(frames_dir), '1 frame from the onset (frame 13) to the clip'),
             ([str(frames_dir), '--max-frames', '1'], str(frames_dir), '1 frame from the onset (frame 10) to --max'),
             ([str(frames_dir), str(not_video)], str(not_video), 'OpenCV reads no frames')]
    for args, name, what in cases:
        msg = _fail([*args, '--model', str(model_file), '--figure', str(fig)])
        assert name in msg and what in msg, msg
    assert not fig.exists() and not list(tmp_path.glob('.*'))


def test_a_clip_without_a_face_at_its_onset_stops_or_starts_at_the_first_face(model_file, frames_dir, tmp_path,
                                                                             capsys):
    clip = tmp_path / 'clip'
    clip.mkdir()
    cv2.imwrite(str(clip / 'img1.png'), np.full((300, 256, 3), 128, np.uint8))
    for i in (2, 3, 4):
        (clip / f'img{i}.png').write_bytes((frames_dir / f'img1{i - 2}.png').read_bytes())
    msg = _fail([str(clip), '--model', str(model_file)])
    assert 'no face found' in msg and 'frame 1 (the onset)' in msg and '--no-face skip' in msg
    assert mer.main(['predict', str(clip), '--model', str(model_file), '--no-face', 'skip', '--json', '-q']) == 0
    r = json.loads(capsys.readouterr().out)
    assert r['onset'] == 2 and r['apex'] in (3, 4)


def test_predict_on_a_real_video(model_file, tmp_path, capsys):
    if not REAL.is_file():
        pytest.skip(f'{REAL} not found: the real clips beside the repository are absent on this machine')
    fig = tmp_path / 'fig.png'
    assert mer.main(['predict', str(REAL), '--model', str(model_file), '--json', '--figure', str(fig), '-q']) == 0
    r = json.loads(capsys.readouterr().out)
    # Whatever the toy model says: the face was found and aligned, the apex spotted (none was given) lies in the
    # smile (frames 20-71, neutral before), and one of the three classes is named with probabilities summing to 1.
    assert r['path'] == str(REAL) and r['onset'] == 0 and 20 <= r['apex'] <= 71, r
    probs = [r[f'p_{c}'] for c in config.CLASSES]
    assert r['label'] in config.CLASSES and r['label'] == config.CLASSES[int(np.argmax(probs))]
    assert abs(sum(probs) - 1) < 1e-5 and min(probs) > 0
    tiles = cv2.imread(str(fig))
    # the panels' titles, the clip's line, then onset | apex | magnified apex | flow, each 64 px enlarged 3x
    assert tiles.shape == (24 + 24 + 3 * 64, 4 * 3 * 64, 3)

    # The same clip as text, with its apex given: the line's format.
    assert mer.main(['predict', str(REAL), '--model', str(model_file), '--apex', '40', '-q']) == 0
    fields = capsys.readouterr().out.split()
    assert fields[0] == str(REAL) and fields[1] in config.CLASSES and fields[5:] == ['0', '40']
    assert abs(sum(map(float, fields[2:5])) - 1) < 1e-3
