"""Embedded demo set: synthetic micro- and macro-expressions on real face photos, in the real release layouts.

Two real photos ship with installed packages (scikit-image's astronaut, matplotlib's Grace Hopper). Each becomes
many pseudo-subjects through identity changes (pose, scale, tone, mirror, a smooth shape warp). A clip is that
face deformed by a class-specific, landmark-placed displacement field (FACS-like action units) that follows an
onset -> apex -> offset profile, plus slight rigid head motion and sensor noise. Micro clips move ~0.5-2 px
(measured on the 224 px aligned face); CK+-like macro clips 5-10x more, neutral to peak.

Each clip's true motion (landmarks, action-unit amplitude, intensity profile, head drift) goes to truth.json
beside the releases; `displacement` turns it into the flow the clip should have between two frames.

Everything is written exactly as the licensed releases lay it out, with annotation files in the real formats,
so the demo goes through the same readers as real data:
    megc/combined_3class_gt.csv                                    (no header, CRLF: dataset,subject,filename,label)
    megc/CASME2/CASME2-coding-20140508.xlsx + CASME2_RAW_selected/sub01/EP01_01/img46.jpg
    megc/SAMM/SAMM_Micro_FACS_Codes_v2.xlsx (MICRO_ONLY, header row 14) + 006/006_1_1/006_05562.jpg
    megc/SMIC/SMIC_all_raw/HS/s1/micro/negative/s1_ne_01/image000123.bmp   (labels by folder, no apex)
    ck/cohn-kanade-images/S005/001/S005_001_00000001.png + ck/Emotion/S005/001/S005_001_00000012_emotion.txt
"""
import json
import logging
import shutil
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import openpyxl

import align
from util.workers import processes

log = logging.getLogger(__name__)

NEG, POS, SUR = 0, 1, 2
FRAME_H, FRAME_W = 240, 320
# Template eye distance on a 224 px aligned face: the demo's displacements are given in those pixels.
EYE_DIST_224 = float(np.linalg.norm(align.TEMPLATE[1] - align.TEMPLATE[0])) * 224

# Where each class moves the face: (landmark indices, displacement direction (dx, dy)) per action unit.
# Image x grows to the subject's left; points 17-21 / 48 are on the image's left side.
ACTION_UNITS = {
    POS: [((48,), (-0.7, -0.7)), ((54,), (0.7, -0.7))],                         # AU12 lip-corner puller
    NEG: [((17, 18, 19, 20, 21), (0.5, 0.85)), ((22, 23, 24, 25, 26), (-0.5, 0.85)),  # AU4 brow lowerer
          ((48,), (0.0, 1.0)), ((54,), (0.0, 1.0))],                             # AU15 lip-corner depressor
    SUR: [((17, 18, 19, 20, 21, 22, 23, 24, 25, 26), (0.0, -1.0)),               # AU1+2 brow raiser
          ((56, 57, 58, 7, 8, 9), (0.0, 1.0))],                                  # AU26 jaw drop
}
SUPPORT = 0.45    # radius of an action unit's window, in eye distances
CASME_EMOTION = {NEG: ('disgust', 'repression'), POS: ('happiness',), SUR: ('surprise',)}
CASME_AUS = {NEG: '4+15', POS: '12', SUR: '1+2+26'}
SAMM_EMOTION = {NEG: ('Anger', 'Contempt', 'Disgust'), POS: ('Happiness',), SUR: ('Surprise',)}
SMIC_FOLDER = {NEG: ('negative', 'ne'), POS: ('positive', 'po'), SUR: ('surprise', 'sur')}
CK_CODES = {NEG: (1, 2, 3, 4, 6), POS: (5,), SUR: (7,)}

# How each demo preset makes its micro clips (amp, jitter and head in pixels of a 224-px aligned face, noise in grey
# levels of the frame). quick: faces of 36-48 px between the eyes, which alignment at 128 px shrinks, motions well
# above the flow's noise floor: a check that every stage runs and learns. hard: smaller faces (24-32 px between the
# eyes, as a wide shot or a low-resolution camera gives, enlarged 1.1-1.5x by alignment at 128 px, so that their
# finest Laplacian band holds interpolated noise), a third of the motion (0.17-0.67 px, near TV-L1's floor), twice
# the sensor noise, JPEG at quality 75 as recorders store video, each frame shaken by 0.2 px and the head drifting
# 1 px over a clip: hard enough for Table I's rows to differ (docs/emr.md). CK+ stays the same macro source.
PRESETS = {'quick': dict(eyes_px=(36, 48), amp=1.0, noise=1.5, jitter=0.0, quality=0, head=0.3),
           'hard': dict(eyes_px=(24, 32), amp=1 / 3, noise=3.0, jitter=0.2, quality=75, head=1.0)}


def photos():
    """The real face photos that installed packages ship, as BGR uint8 images."""
    import matplotlib.cbook
    from skimage import data
    grace = cv2.imread(str(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)))
    return [cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), grace]


def identity(photo, rng, eyes_px=(36, 48)):
    """(face image (FRAME_H, FRAME_W, 3) uint8, its 68 landmarks): one pseudo-subject drawn from a photo, its eye
    distance drawn from eyes_px pixels."""
    # The astronaut photo also holds a mission patch that dlib with upsampling may call a face: take the
    # best-scored box, which is the real face in both photos.
    lm = align.detect_landmarks(photo, upsample=0, name='demo photo')
    eyes = align.anchor_points(lm)[:2]
    centre = eyes.mean(0) + [0, 0.45 * np.linalg.norm(eyes[1] - eyes[0])]
    scale = rng.uniform(*eyes_px) / np.linalg.norm(eyes[1] - eyes[0])
    m = cv2.getRotationMatrix2D(tuple(centre), rng.uniform(-6, 6), scale)
    m[:, 2] += np.array([FRAME_W / 2, FRAME_H / 2]) + rng.uniform(-12, 12, 2) - centre
    face = cv2.warpAffine(photo, m, (FRAME_W, FRAME_H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    # Smooth shape change: a random displacement on a coarse grid, upsampled, ~2 px at most.
    coarse = rng.normal(0, 1.0, (4, 5, 2)).astype(np.float32)
    field = cv2.resize(coarse, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(FRAME_W, dtype=np.float32), np.arange(FRAME_H, dtype=np.float32))
    face = cv2.remap(face, gx + field[..., 0], gy + field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # Tone: gamma, per-channel gain, offset.
    f = (face.astype(np.float32) / 255) ** rng.uniform(0.8, 1.25) * rng.uniform(0.85, 1.15, 3)
    face = np.clip(f * 255 + rng.uniform(-15, 15), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        face = face[:, ::-1].copy()
    return face, align.detect_landmarks(face, upsample=1, name='demo identity')


def deformation(landmarks, label, shape, amp):
    """(H, W, 2) float32 apex displacement field in pixels, largest vector `amp`: the class's action units."""
    eye = np.linalg.norm(align.anchor_points(landmarks)[1] - align.anchor_points(landmarks)[0])
    h, w = shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    field = np.zeros((h, w, 2), np.float32)
    radius = SUPPORT * eye
    for idx, (dx, dy) in ACTION_UNITS[label]:
        weight = np.zeros((h, w), np.float32)
        for i in idx:
            x, y = landmarks[i]
            # Smooth biweight window of finite support: outside it the face does not move at all.
            r2 = np.minimum(((gx - x) ** 2 + (gy - y) ** 2) / radius ** 2, 1.0)
            weight = np.maximum(weight, (1 - r2) ** 2)
        field[..., 0] += weight * dx
        field[..., 1] += weight * dy
    return field * (amp / np.abs(field).max())


def profile(n, onset, apex, offset):
    """(n,) motion intensity in [0, 1]: 0 before onset, smooth rise to 1 at apex, fall to 0 at offset."""
    t = np.arange(n, dtype=np.float64)
    rise = np.clip((t - onset) / max(apex - onset, 1), 0, 1)
    fall = np.clip((offset - t) / max(offset - apex, 1), 0, 1)
    return np.where(t <= apex, 0.5 - 0.5 * np.cos(np.pi * rise), 0.5 - 0.5 * np.cos(np.pi * fall))


def head_drift(rng, head_motion):
    """(2,) float: the rigid drift, in pixels, that a clip's head makes from its first frame to its last."""
    drift = rng.normal(0, 1, 2)
    return drift * (head_motion / max(np.linalg.norm(drift), 1e-9))


def render(face, field, prof, rng, noise=1.5, drift=(0.0, 0.0), jitter=0.0, quality=0):
    """(T, H, W, 3) uint8 clip: the face warped by prof[t] * field, a slow rigid drift, Gaussian sensor noise;
    `jitter` (pixels, standard deviation) shakes each frame by a random sub-pixel shift, and `quality` (1-100, 0:
    none) passes each frame through a JPEG codec, as a camera's recorder does."""
    h, w = face.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    drift = np.asarray(drift, np.float64)
    shake = rng.normal(0, jitter, (len(prof), 2)) if jitter else np.zeros((len(prof), 2))
    clip = np.empty((len(prof), h, w, 3), np.uint8)
    fx, fy = (np.ascontiguousarray(field[..., i], np.float32) for i in (0, 1))
    cv2.setRNGSeed(int(rng.integers(2 ** 31)))
    buf = np.empty((h, w, 3), np.float32)
    for t, p in enumerate(prof):
        shift = drift * t / max(len(prof) - 1, 1) + shake[t]
        # Backward warp by -d approximates the forward displacement d, exact to first order for small d.
        mx = gx - np.float32(p) * fx - np.float32(shift[0])
        my = gy - np.float32(p) * fy - np.float32(shift[1])
        f = cv2.remap(face, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        # OpenCV's generator (seeded from rng above) is 3x faster than numpy's normals, most of the build time.
        clip[t] = cv2.add(f, cv2.randn(buf, 0.0, noise), dtype=cv2.CV_8U)     # rounds and saturates
        if quality:
            clip[t] = cv2.imdecode(cv2.imencode('.jpg', clip[t], [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)
    return clip


def displacement(truth, shape, start, end):
    """(H, W, 2) float32 true motion, in frame pixels, of a demo clip from frame index `start` to `end`: what its
    flow should be (the record `truth` is what build() writes to truth.json for every clip)."""
    prof = np.asarray(truth['profile'])
    d = np.zeros(tuple(shape) + (2,), np.float32)
    if prof[end] != prof[start]:
        d += deformation(np.asarray(truth['landmarks']), truth['label'], shape, truth['amp']) * np.float32(
            prof[end] - prof[start])
    d += np.asarray(truth['drift'], np.float32) * np.float32((end - start) / max(len(prof) - 1, 1))
    return d


def micro_clip(face, lm, label, rng, apex_in_middle=False, preset='quick'):
    """(clip, onset, apex, offset, truth): a micro-expression of tens of frames, apex amplitude 0.5-2 px at 224 px
    times the preset's `amp`; truth is the record `displacement` reads."""
    look = PRESETS[preset]
    to_src = np.linalg.norm(align.anchor_points(lm)[1] - align.anchor_points(lm)[0]) / EYE_DIST_224
    n = int(rng.integers(24, 37))
    if apex_in_middle:    # SMIC-HS clips run onset..offset, and readers take the middle frame as apex
        onset, offset = 0, n - 1
        apex = n // 2 + int(rng.integers(-2, 3))
    else:
        onset = int(rng.integers(2, 6))
        apex = onset + int(rng.integers(8, 15))
        offset = min(apex + int(rng.integers(8, 15)), n - 1)
    amp = rng.uniform(0.5, 2.0) * to_src * look['amp']
    prof = profile(n, onset, apex, offset)
    drift = head_drift(rng, look['head'] * to_src)
    truth = _truth(lm, label, amp, prof, drift)
    clip = render(face, deformation(lm, label, face.shape[:2], amp), prof, rng, noise=look['noise'], drift=drift,
                  jitter=look['jitter'] * to_src, quality=look['quality'])
    return clip, onset, apex, offset, truth


def macro_clip(face, lm, label, rng):
    """(clip, apex, truth): a CK+-like posed expression, neutral (first frame) to peak (last frame), 5-10x micro."""
    to_src = np.linalg.norm(align.anchor_points(lm)[1] - align.anchor_points(lm)[0]) / EYE_DIST_224
    n = int(rng.integers(10, 19))
    amp = rng.uniform(0.5, 2.0) * rng.uniform(5, 10) * to_src
    prof = profile(n, 0, n - 1, n - 1)
    drift = head_drift(rng, 0.5 * to_src)
    truth = _truth(lm, label, amp, prof, drift)
    return render(face, deformation(lm, label, face.shape[:2], amp), prof, rng, drift=drift), n - 1, truth


def _truth(lm, label, amp, prof, drift):
    return dict(landmarks=np.round(lm, 4).tolist(), label=int(label), amp=float(amp),
                profile=[float(p) for p in prof], drift=[float(x) for x in drift])


def _labels(rng, per_subject):
    # Imbalanced like the real composite (negative is the largest class), shuffled per subject.
    base = [NEG, POS, SUR] * (per_subject // 3) + [NEG, NEG, POS][: per_subject % 3]
    return [int(x) for x in rng.permutation(base)]


def _write_frames(folder, clip, names):
    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(clip, names):
        if name.endswith('.png') and np.all(img[..., 0] == img[..., 1]):
            img = img[..., 0]
        cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith('.jpg') else [])


def _casme(root, faces, rng, per_subject, preset='quick'):
    rows = []
    sheet = [['Subject', 'Filename', None, 'OnsetFrame', 'ApexFrame', 'OffsetFrame', None, 'Action Units',
              'Estimated Emotion']]
    for s, (face, lm) in enumerate(faces, 1):
        for k, label in enumerate(_labels(rng, per_subject), 1):
            clip, onset, apex, offset, truth = micro_clip(face, lm, label, rng, preset=preset)
            name, first = f'EP{k:02d}_{int(rng.integers(1, 20)):02d}', int(rng.integers(1, 300))
            _write_frames(root / 'CASME2' / 'CASME2_RAW_selected' / f'sub{s:02d}' / name, clip,
                          [f'img{first + i}.jpg' for i in range(len(clip))])
            emotion = CASME_EMOTION[label][int(rng.integers(len(CASME_EMOTION[label])))]
            sheet.append([f'{s:02d}', name, None, first + onset, first + apex, first + offset, None,
                          CASME_AUS[label], emotion])
            rows.append(('casme2', f'sub{s:02d}', name, label, truth))
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = 'Sheet1'
    for r in sheet:
        ws.append(r)
    wb.create_sheet('Sheet2'), wb.create_sheet('Sheet3')
    wb.save(root / 'CASME2' / 'CASME2-coding-20140508.xlsx')
    return rows


def _samm(root, faces, rng, per_subject, preset='quick'):
    rows = []
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = 'MICRO_ONLY'
    ws['A1'] = 'SAMM Dataset - Master FACS Codes'
    ws['A6'] = 'Symbol Key:'
    header = ['Subject', 'Filename', 'Inducement Code', 'Onset Frame', 'Apex Frame', 'Offset Frame', 'Duration',
              'Micro', 'Action Units', 'Estimated Emotion', 'Objective Classes', 'Notes']
    for c, v in enumerate(header, 1):
        ws.cell(14, c, v)   # the header row of the release, under its notes
    row = 15
    for s, (face, lm) in enumerate(faces):
        subject = 6 + s
        for k, label in enumerate(_labels(rng, per_subject), 1):
            clip, onset, apex, offset, truth = micro_clip(face, lm, label, rng, preset=preset)
            name, first = f'{subject:03d}_{k}_{int(rng.integers(1, 6))}', int(rng.integers(1000, 6000))
            _write_frames(root / 'SAMM' / f'{subject:03d}' / name, clip,
                          [f'{subject:03d}_{first + i:05d}.jpg' for i in range(len(clip))])
            emotion = SAMM_EMOTION[label][int(rng.integers(len(SAMM_EMOTION[label])))]
            values = [f'{subject:03d}', name, k, first + onset, first + apex, first + offset,
                      f'=SUM(F{row}-D{row})+1', 'Micro - 1/2', CASME_AUS[label], emotion, 1, None]
            for c, v in enumerate(values, 1):
                ws.cell(row, c, v)
            rows.append(('samm', str(subject), name, label, truth))
            row += 1
    wb.save(root / 'SAMM' / 'SAMM_Micro_FACS_Codes_v2.xlsx')
    return rows


def _smic(root, faces, rng, per_subject, preset='quick'):
    rows = []
    for s, (face, lm) in enumerate(faces, 1):
        counts = {NEG: 0, POS: 0, SUR: 0}
        for label in _labels(rng, per_subject):
            clip, _, _, _, truth = micro_clip(face, lm, label, rng, apex_in_middle=True, preset=preset)
            counts[label] += 1
            folder, short = SMIC_FOLDER[label]
            name, first = f's{s}_{short}_{counts[label]:02d}', int(rng.integers(1000, 90000))
            _write_frames(root / 'SMIC' / 'SMIC_all_raw' / 'HS' / f's{s}' / 'micro' / folder / name, clip,
                          [f'image{first + i:06d}.bmp' for i in range(len(clip))])
            rows.append(('smic', f's{s:02d}', f's{s:02d}_{short}_{counts[label]:02d}', label, truth))
    return rows


def _ckplus(root, faces, rng, per_subject, preset='quick'):
    """CK+ in its release layout; its rows (with label None) only carry the truth: CK+ is not in the MEGC2019 list."""
    rows = []
    for s, (face, lm) in enumerate(faces):
        subject = f'S{5 + 5 * s:03d}'
        gray = cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)  # CK+ is mostly grey
        for k, label in enumerate(_labels(rng, per_subject) + [None], 1):
            seq = f'{k:03d}'
            clip, apex, truth = macro_clip(gray, lm, NEG if label is None else label, rng)
            _write_frames(root / 'cohn-kanade-images' / subject / seq, clip,
                          [f'{subject}_{seq}_{i + 1:08d}.png' for i in range(len(clip))])
            rows.append(('ck+', subject, f'{subject}_{seq}', None, truth))
            if label is None:   # as in CK+, not every sequence has an emotion label: readers must skip it
                continue
            code = CK_CODES[label][int(rng.integers(len(CK_CODES[label])))]
            emo = root / 'Emotion' / subject / seq / f'{subject}_{seq}_{apex + 1:08d}_emotion.txt'
            emo.parent.mkdir(parents=True, exist_ok=True)
            emo.write_text(f'   {code:.7e}\n')
    return rows


def _part(job):
    write, root, faces, seed, per_subject, preset = job
    return write(root, faces, np.random.default_rng(seed), per_subject, preset)


def _built(stamp, params, force):
    """True when the folder of `stamp` already holds the set these params make; else it is emptied, to be built."""
    if not force and stamp.is_file() and json.loads(stamp.read_text()) == params:
        return True
    if stamp.parent.exists():
        shutil.rmtree(stamp.parent)
    return False


def build(root='demo_data', seed=0, subjects=6, clips=7, ck_subjects=8, ck_clips=5, force=False,
          workers=0, preset='quick'):
    """Path of the demo root (megc/ and ck/ inside), generated deterministically from `seed` with the micro clips of
    `preset` (PRESETS), reused if present; `workers` processes write it (0: one per usable CPU)."""
    workers = processes(workers)
    root = Path(root)
    params = dict(seed=seed, subjects=subjects, clips=clips, ck_subjects=ck_subjects, ck_clips=ck_clips, version=5)
    if preset != 'quick':
        params['preset'] = preset
    if _built(root / 'demo.json', params, force):
        return root
    log.info('building the %s demo set in %s (seed %d)', preset, root, seed)
    # One seed per part, so the four parts are written in parallel and the result does not depend on `workers`.
    seeds = np.random.SeedSequence(seed).spawn(5)
    rng = np.random.default_rng(seeds[0])
    pics = photos()
    eyes = [PRESETS[preset]['eyes_px']] * (3 * subjects) + [PRESETS['quick']['eyes_px']] * ck_subjects
    faces = [identity(pics[i % len(pics)], rng, eyes[i]) for i in range(3 * subjects + ck_subjects)]
    megc = root / 'megc'
    jobs = [(_casme, megc, faces[:subjects], seeds[1], clips, preset),
            (_samm, megc, faces[subjects:2 * subjects], seeds[2], clips, preset),
            (_smic, megc, faces[2 * subjects:3 * subjects], seeds[3], clips, preset),
            (_ckplus, root / 'ck', faces[3 * subjects:], seeds[4], ck_clips, preset)]
    if workers > 1:
        with get_context('spawn').Pool(min(workers, len(jobs))) as pool:
            parts = pool.map(_part, jobs, chunksize=1)
    else:
        parts = [_part(j) for j in jobs]
    rows = sum(parts, [])
    with open(megc / 'combined_3class_gt.csv', 'w', newline='') as f:
        f.write(''.join(f'{d},{s},{c},{y}\r\n' for d, s, c, y, _ in rows if d != 'ck+'))
    # Each clip's true motion (synth.displacement reads it), beside the releases: what EMR and flow are checked on.
    (root / 'truth.json').write_text(json.dumps({f'{d}/{s}/{c}': t for d, s, c, _, t in rows}))
    (root / 'demo.json').write_text(json.dumps(params))
    return root


def is_demo(path):
    """True when `path` (a --data, --ckplus or --index path) lies inside a demo set that `build` wrote: its labels
    are synthetic."""
    p = Path(path).resolve()
    return any((q / 'demo.json').is_file() for q in (p, *p.parents[:3]))


# ----------------------------------------------------------------------------------------------- long videos
# The demo's long videos (MEGC's spotting task): minutes of a face in which a few micro- and macro-expressions
# happen among blinks, a head turn, a stretch where the face is gone (an upside-down face, which moves but is no
# face) and a cut to another person. Durations in seconds, amplitudes in pixels of a 224-px aligned face; the
# datasets call an expression micro when it lasts at most 0.5 s. Events are 2-3 s apart: in CAS(ME)^2 they are
# sparser still (a few a minute), and closer ones would share the spotter's window (video/intervals.py).
LONG = dict(micro_s=(0.25, 0.45), macro_s=(1.2, 2.5), blink_s=(0.15, 0.25), turn_s=(0.8, 1.2), gap_s=(2.0, 3.0),
            micro_amp=(2.5, 3.5), macro_amp=(8.0, 12.0), blink_amp=6.0, turn_deg=6.0, turn_px=10.0, noface_s=2.0)
# Upper and lower eyelid landmarks: a blink closes each eye by pulling the upper lid down onto the lower.
EYELIDS = {(37, 38, 43, 44): (0.0, 1.0), (40, 41, 46, 47): (0.0, -0.3)}
CASME_SQ_EMOTION = {NEG: 'negative', POS: 'positive', SUR: 'surprise'}


def hold_profile(n, onset, apex, hold_end, offset):
    """(n,) intensity: 0 before onset, smooth rise to 1 at apex, held to hold_end, smooth fall to 0 at offset."""
    t = np.arange(n, dtype=np.float64)
    rise = np.clip((t - onset) / max(apex - onset, 1), 0, 1)
    fall = np.clip((offset - t) / max(offset - hold_end, 1), 0, 1)
    up = 0.5 - 0.5 * np.cos(np.pi * rise)
    return np.where(t <= hold_end, up, 0.5 - 0.5 * np.cos(np.pi * fall))


def blink_field(landmarks, shape, amp):
    """(H, W, 2) float32 displacement of a closed eye, largest vector `amp` pixels: upper lids down, lower up."""
    eye = np.linalg.norm(align.anchor_points(landmarks)[1] - align.anchor_points(landmarks)[0])
    h, w = shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    field = np.zeros((h, w, 2), np.float32)
    for idx, (dx, dy) in EYELIDS.items():
        weight = np.zeros((h, w), np.float32)
        for i in idx:
            x, y = landmarks[i]
            weight = np.maximum(weight, (1 - np.minimum(((gx - x) ** 2 + (gy - y) ** 2) / (0.15 * eye) ** 2, 1)) ** 2)
        field[..., 0] += weight * dx
        field[..., 1] += weight * dy
    return field * np.float32(amp / np.abs(field).max())


def long_script(rng, seconds, fps, n_faces=2, settings=LONG):
    """(frames, events) of one long video: events is a list of dicts with 'kind' (micro | macro | blink | turn | noface | cut),
    'onset', 'apex', 'hold_end', 'offset' frame indices (0-based, inclusive), 'face' (which identity), and for
    expressions 'label' and 'amp' (pixels at 224 px). Face 0 until a third of the way in; then the face is gone
    (noface) for settings['noface_s'], and a cut brings face 1 (another person) to the end."""
    s, n = settings, int(round(seconds * fps))
    f = lambda sec: int(round(sec * fps))     # noqa: E731  (seconds -> frames)
    gone = f(seconds / 3)
    back = gone + f(s['noface_s'])
    events = [dict(kind='noface', onset=gone, apex=gone, hold_end=back - 1, offset=back - 1, face=None),
              dict(kind='cut', onset=back, apex=back, hold_end=back, offset=back, face=1 % n_faces)]
    # Each part of the video with a face gets, in random order, micro and macro expressions of random classes,
    # blinks and (in the first) a head turn, separated by quiet gaps.
    for (a, b), face in (((0, gone), 0), ((back, n), 1 % n_faces)):
        t = a + f(rng.uniform(*s['gap_s']))
        kinds = list(rng.permutation(['micro', 'macro', 'blink', 'micro', 'macro', 'micro']))
        if face == 0:       # every video has a head turn and a blink, early, whatever its length
            kinds = ['turn', 'blink'] + kinds
        for kind in kinds:
            length = f(rng.uniform(*s[f'{kind}_s']))
            if t + length + f(0.5) > b:
                continue
            if kind == 'macro':       # rise, hold, fall
                rise, fall = f(rng.uniform(0.25, 0.4)), f(rng.uniform(0.25, 0.4))
                ev = dict(onset=t, apex=t + rise, hold_end=t + length - 1 - fall, offset=t + length - 1)
            else:
                apex = t + int(round((length - 1) * rng.uniform(0.4, 0.6)))
                ev = dict(onset=t, apex=apex, hold_end=apex, offset=t + length - 1)
            ev.update(kind=str(kind), face=face)
            if kind in ('micro', 'macro'):
                ev.update(label=int(rng.integers(3)), amp=float(rng.uniform(*s[f'{kind}_amp'])))
            elif kind == 'turn':
                ev.update(angle=float(rng.choice([-1, 1]) * s['turn_deg']),
                          shift=(rng.normal(0, 1, 2) * s['turn_px'] / np.sqrt(2)).tolist())
            events.append(ev)
            t += length + f(rng.uniform(*s['gap_s']))
    return n, sorted(events, key=lambda e: e['onset'])


def long_frames(faces, n, events, rng, noise=1.5, settings=LONG):
    """Yields the n BGR frames of a long video scripted by long_script, one at a time (nothing is held but the
    faces' fields): the face of the moment warped by its active expressions and blinks, moved by a head turn,
    with sensor noise; upside down (no face for a detector, but moving) while the script says the face is gone."""
    h, w = faces[0][0].shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    to_src = [np.linalg.norm(align.anchor_points(lm)[1] - align.anchor_points(lm)[0]) / EYE_DIST_224
              for _, lm in faces]
    fields = []
    for e in events:
        if e['kind'] in ('micro', 'macro'):
            img, lm = faces[e['face']]
            fields.append(deformation(lm, e['label'], (h, w), float(e['amp'] * to_src[e['face']])))
        elif e['kind'] == 'blink':
            fields.append(blink_field(faces[e['face']][1], (h, w), float(settings['blink_amp'] * to_src[e['face']])))
        else:
            fields.append(None)
    profs = [hold_profile(e['offset'] - e['onset'] + 1, 0, e['apex'] - e['onset'], e['hold_end'] - e['onset'],
                          e['offset'] - e['onset']) for e in events]
    cv2.setRNGSeed(int(rng.integers(2 ** 31)))
    buf = np.empty((h, w, 3), np.float32)
    face = 0
    for t in range(n):
        dx, dy, gone, angle, shift = 0, 0, False, 0.0, np.zeros(2)
        for e, field, prof in zip(events, fields, profs):
            if e['kind'] == 'cut' and t >= e['onset']:
                face = e['face']
            if not e['onset'] <= t <= e['offset']:
                continue
            p = np.float32(prof[t - e['onset']])
            if e['kind'] == 'noface':
                gone = True
            elif e['kind'] == 'turn':
                angle, shift = e['angle'] * p, np.asarray(e['shift']) * p
            elif field is not None:
                dx, dy = dx + p * field[..., 0], dy + p * field[..., 1]
        img = faces[face][0]
        f = cv2.remap(img, gx - dx, gy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) \
            if np.ndim(dx) else img
        if angle or shift.any():
            m = cv2.getRotationMatrix2D(tuple(align.anchor_points(faces[face][1])[2]), angle, 1.0)
            m[:, 2] += shift
            f = cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if gone:      # the camera sees something else that moves: the face upside down, drifting
            f = np.roll(f[::-1, ::-1], int(3 * np.sin(t / 7)), axis=1)
        yield cv2.add(f, cv2.randn(buf, 0.0, noise), dtype=cv2.CV_8U)


def long_truth(events, fps):
    """The true intervals of a script: micro and macro expressions as spotscore reads them (frame indices)."""
    return [dict(start=e['onset'], apex=e['apex'], end=e['offset'], label=e['label'],
                 kind='micro' if (e['offset'] - e['onset'] + 1) / fps <= 0.5 else 'macro')
            for e in events if e['kind'] in ('micro', 'macro')]


def _casme_sq(root, faces, rng, videos, seconds, scripts):
    """CAS(ME)^2's layout: rawpic/s15/15_0101disgustingteeth/img1.jpg and its three-sheet coding workbook."""
    fps, base = 30.0, root / 'CAS(ME)^2'
    coding, rule1, rule2 = [], [], []
    stimuli = ['disgustingteeth', 'anger1', 'happy1', 'surprise2', 'funnyerrors', 'smellingtrash'][:videos]
    for v, stim in enumerate(stimuli):
        participant, number, code = v + 1, 15 + v, f'{v + 1:02d}{v + 1:02d}'
        rule1.append([number, f's{number}', participant])
        rule2.append([code, stim])
        n, events = long_script(rng, seconds, fps)
        folder = base / 'rawpic' / f's{number}' / f'{number}_{code}{stim}'
        scripts[f'casme_sq/{folder.name}'] = events
        folder.mkdir(parents=True, exist_ok=True)
        pair = [faces[(2 * v) % len(faces)], faces[(2 * v + 1) % len(faces)]]
        for i, img in enumerate(long_frames(pair, n, events, rng), 1):
            cv2.imwrite(str(folder / f'img{i}.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for k, t in enumerate(long_truth(events, fps), 1):
            coding.append([participant, f'{stim}_{k}', t['start'] + 1, t['apex'] + 1, t['end'] + 1,
                           CASME_AUS[t['label']], CASME_SQ_EMOTION[t['label']], f'{t["kind"]}-expression',
                           CASME_SQ_EMOTION[t['label']]])
    wb = openpyxl.Workbook()
    for title, rows in (('CASMEcode_final', coding), ('naming rule1', rule1), ('naming rule2', rule2)):
        ws = wb.active if title == 'CASMEcode_final' else wb.create_sheet(title)
        ws.title = title
        for r in rows:
            ws.append(r)
    wb.save(base / 'CAS(ME)^2code_final.xlsx')


def _samm_lv(root, faces, rng, videos, seconds, scripts):
    """SAMM Long Videos' layout: SAMM_longvideos/006_1/006_1_0001.jpg and the release's sheet, notes first."""
    fps, base = 200.0, root / 'SAMM_LV'
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = 'FACS_Movement_Only'
    ws['A1'] = 'SAMM Long Videos - FACS codes'
    ws['A3'] = 'Frames counted from 1 at 200 fps'
    header = ['Subject', 'Filename', 'Inducement Code', 'Onset', 'Apex', 'Offset', 'Duration', 'Type',
              'Action Units', 'Notes']
    for c, h in enumerate(header, 1):
        ws.cell(10, c, h)
    row = 11
    for v in range(videos):
        subject, name = f'{6 + v:03d}', f'{6 + v:03d}_{v + 1}'
        n, events = long_script(rng, seconds, fps)
        folder = base / 'SAMM_longvideos' / name
        scripts[f'samm_lv/{name}'] = events
        folder.mkdir(parents=True, exist_ok=True)
        pair = [faces[(2 * v + 1) % len(faces)], faces[(2 * v) % len(faces)]]
        for i, img in enumerate(long_frames(pair, n, events, rng), 1):
            cv2.imwrite(str(folder / f'{name}_{i:04d}.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for k, t in enumerate(long_truth(events, fps), 1):
            values = [subject, f'{name}_{k}', v + 1, t['start'] + 1, t['apex'] + 1, t['end'] + 1,
                      t['end'] - t['start'] + 1, 'Micro - 1/2' if t['kind'] == 'micro' else 'Macro',
                      CASME_AUS[t['label']], None]
            for c, x in enumerate(values, 1):
                ws.cell(row, c, x)
            row += 1
    wb.save(base / 'SAMM_LongVideos_V3_Release.xlsx')


def build_long(root='demo_long', seed=0, casme_videos=2, casme_s=60.0, samm_videos=2, samm_s=20.0, force=False):
    """Path of the long-video demo (CAS(ME)^2 and SAMM Long Videos layouts), made from `seed`, reused if present."""
    root = Path(root)
    params = dict(seed=seed, casme_videos=casme_videos, casme_s=casme_s, samm_videos=samm_videos, samm_s=samm_s,
                  version=2)
    if _built(root / 'demo_long.json', params, force):
        return root
    log.info('building the long-video demo in %s (seed %d)', root, seed)
    rng = np.random.default_rng(seed)
    pics = photos()
    faces = [identity(pics[i % len(pics)], rng) for i in range(4)]
    scripts = {}
    if casme_videos:
        _casme_sq(root, faces, rng, casme_videos, casme_s, scripts)
    if samm_videos:
        _samm_lv(root, faces, rng, samm_videos, samm_s, scripts)
    # Every event of every video (blinks, the head turn, the stretch without a face, the cut; frame indices from
    # 0), beside the releases: what the spotter must not report is checked on it.
    (root / 'events.json').write_text(json.dumps(scripts))
    (root / 'demo_long.json').write_text(json.dumps(params))
    return root
