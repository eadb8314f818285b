import csv

import cv2
import numpy as np
import openpyxl
import pytest

from data import synth


@pytest.fixture(scope='module')
def face():
    return synth.identity(synth.photos()[1], np.random.default_rng(3))


# Landmark groups of the regions each class may move, and of the regions it must leave alone.
BROWS, MOUTH, JAW, CHIN, NOSE = range(17, 27), (48, 54), (7, 8, 9, 56, 57, 58), (7, 8, 9), (31, 32, 33, 34, 35)


def _moved(face, lm, label):
    img, _ = face
    field = synth.deformation(lm, label, img.shape[:2], 2.0)
    clip = synth.render(img, field, [0.0, 1.0], np.random.default_rng(0), noise=0)
    return np.abs(clip[1].astype(np.int16) - clip[0].astype(np.int16)).max(2), field


def _near(lm, idx, diff, radius):
    pts = np.asarray([lm[i] for i in idx])
    h, w = diff.shape
    yy, xx = np.mgrid[:h, :w]
    d = np.min([np.hypot(xx - x, yy - y) for x, y in pts], axis=0)
    return d < radius


@pytest.mark.parametrize('label,moves,still', [(synth.POS, [MOUTH], [BROWS, NOSE]),
                                               (synth.NEG, [BROWS, MOUTH], [CHIN, NOSE]),
                                               (synth.SUR, [BROWS, JAW], [NOSE])])
def test_apex_differs_from_onset_where_the_class_says_and_nowhere_else(face, label, moves, still):
    img, lm = face
    diff, field = _moved(face, lm, label)
    eye = np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))
    for group in moves:
        assert diff[_near(lm, group, diff, 0.3 * eye)].max() > 20
    moving = [i for group, _ in synth.ACTION_UNITS[label] for i in group]
    outside = ~_near(lm, moving, diff, synth.SUPPORT * eye + 3)
    for group in still:
        assert diff[_near(lm, group, diff, 0.1 * eye) & outside].size > 0
    # Nowhere else: outside the class's windows (plus the 2-pixel reach of cubic interpolation) nothing changes.
    assert diff[outside].max() == 0
    assert np.hypot(field[..., 0], field[..., 1])[outside].max() == 0


def test_micro_apex_amplitude_and_profile(face):
    img, lm = face
    rng = np.random.default_rng(1)
    clip, onset, apex, offset, _ = synth.micro_clip(img, lm, synth.NEG, rng)
    assert 24 <= len(clip) <= 36 and onset < apex < offset
    p = synth.profile(len(clip), onset, apex, offset)
    assert p[onset] == 0 and p[apex] == 1 and p[offset] == 0 and np.all(np.diff(p[onset:apex + 1]) >= 0)


def test_demo_files_open_with_the_real_readers_and_real_column_names(demo_root, shared_megc):
    megc = demo_root / 'megc'
    raw = (megc / 'combined_3class_gt.csv').read_bytes()
    assert raw.endswith(b'\r\n') and b'\r\n' in raw[:40]
    rows = list(csv.reader(open(megc / 'combined_3class_gt.csv', newline='')))
    assert {r[0] for r in rows} == {'casme2', 'samm', 'smic'} and all(len(r) == 4 for r in rows)
    real = list(csv.reader(open(shared_megc / 'combined_3class_gt.csv', newline='')))
    assert len(real[0]) == len(rows[0]) and not rows[0][0].startswith('dataset')
    for ours, theirs, sheet, header_row in [
            (megc / 'CASME2' / 'CASME2-coding-20140508.xlsx', 'CASME2-coding-20140508.xlsx', 'Sheet1', 1),
            (megc / 'SAMM' / 'SAMM_Micro_FACS_Codes_v2.xlsx', 'SAMM_Micro_FACS_Codes_v2.xlsx', 'MICRO_ONLY', 14)]:
        a = openpyxl.load_workbook(ours)[sheet]
        b = openpyxl.load_workbook(shared_megc / theirs)[sheet]
        assert [c.value for c in a[header_row]] == [c.value for c in b[header_row]]
    smic = sorted((megc / 'SMIC' / 'SMIC_all_raw' / 'HS').glob('s*/micro/*/*'))
    assert smic and all(p.parent.name in ('negative', 'positive', 'surprise') for p in smic)
    frame = next(smic[0].glob('image*.bmp'))
    assert cv2.imread(str(frame)) is not None
    ck = demo_root / 'ck'
    emotions = sorted((ck / 'Emotion').rglob('*_emotion.txt'))
    seqs = sorted((ck / 'cohn-kanade-images').glob('S*/*'))
    assert 0 < len(emotions) < len(seqs)    # some sequences carry no emotion label, as in CK+
    assert 1 <= float(emotions[0].read_text()) <= 7


@pytest.mark.slow
def test_build_is_deterministic_and_cached(tmp_path, demo_root):
    stamp = demo_root / 'demo.json'
    before = stamp.stat().st_mtime_ns
    synth.build(demo_root, subjects=2, clips=3, ck_subjects=2, ck_clips=3)
    assert stamp.stat().st_mtime_ns == before
    # Built again in one process (the fixture used one per core): the same files, byte for byte.
    again = synth.build(tmp_path / 'again', subjects=2, clips=3, ck_subjects=2, ck_clips=3, workers=1)
    files = [p for p in demo_root.rglob('*') if p.suffix in ('.jpg', '.bmp', '.png', '.txt', '.csv')]
    assert sorted(p.relative_to(again) for p in again.rglob('*') if p.suffix in ('.jpg', '.bmp', '.png', '.txt',
                  '.csv')) == sorted(p.relative_to(demo_root) for p in files)
    assert all((demo_root / p.relative_to(demo_root)).read_bytes() == (again / p.relative_to(demo_root)).read_bytes()
               for p in files)


def test_the_hard_preset_moves_a_third_as_much_under_more_noise_shake_and_jpeg(face):
    img, lm = face
    quick = synth.micro_clip(img, lm, synth.POS, np.random.default_rng(4))
    hard = synth.micro_clip(img, lm, synth.POS, np.random.default_rng(4), preset='hard')
    assert hard[1:4] == quick[1:4]                                   # the same onset, apex, offset
    assert hard[4]['amp'] == pytest.approx(quick[4]['amp'] / 3)
    drift = [np.linalg.norm(c[4]['drift']) for c in (quick, hard)]
    assert drift[1] == pytest.approx(drift[0] * synth.PRESETS['hard']['head'] / synth.PRESETS['quick']['head'])
    # Two frames before the onset differ by noise alone in the quick clip; in the hard one by more noise, the
    # shake and the codec's blocks.
    still = [np.abs(c[0][1].astype(float) - c[0][0]).mean() for c in (quick, hard)]
    assert still[1] > 1.5 * still[0], still
    # Each frame goes through the codec: the same render without it, then encoded and decoded.
    field = synth.deformation(lm, synth.POS, img.shape[:2], 2.0)
    raw, coded = (synth.render(img, field, [0.0, 1.0], np.random.default_rng(5), jitter=0.3, quality=q)
                  for q in (0, 75))
    for a, b in zip(raw, coded):
        np.testing.assert_array_equal(b, cv2.imdecode(cv2.imencode('.jpg', a, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], 1))
    assert not np.array_equal(raw[0], coded[0])
