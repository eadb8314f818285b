"""Spotting expression intervals in a long video (MEGC 2020-2022's task), read once, as a stream, in constant memory.

Beyond the paper, beside it: the method recognises a clip that starts at its onset; a recording is minutes long,
and this finds the clips in it. `track` follows the face and measures its motion frame by frame (a few numbers a
frame); `spot` reads intervals off those curves: micro- and macro-expressions, and speech as its own kind; `online`
gives each interval of a stream once it can no longer change. docs/spotting.md says how, rule by rule, and
docs/devclips.md how well, on real recordings it was not developed on.
"""
import collections
import functools
import logging

import cv2
import numpy as np

import align
import stabilise

log = logging.getLogger(__name__)

SPOTTING = dict(method='mdmd2', size=64, rate=50.0, detect_s=0.5, cut=20.0, window_s=2.0, rois=8, k=16.0, floor=0.2,
                extend=0.2, min_s=0.12, micro_s=0.5, blink_ratio=1.25, baseline_s=(0.2, 0.6), baseline_p=0.3,
                warmup_s=6.0, rigid_px=0.8, held_px=0.5, held_s=1.0, valley=0.3, merge_s=0.0, ref_s=30.0,
                ref_every_s=0.5, ref_gate_px=1.0, ref_stale_s=8.0, speech_px=0.15, speech_s=1.0, speech_held=8.0,
                speech_q=25.0, speech_cap_px=1.5, speech_smooth_s=0.7, smile_lift=1.0, smile_rise=0.15,
                open_rise=0.2, brow_rise=0.07, press_rise=0.05, size_jump=0.15, face_valley=0.5, face_smooth_s=0.5,
                face_min_s=0.3, head_still=0.15, turn_still=0.3, smile_seen=0.5, murmur=0.5,
                settle_s=600.0)
# What each setting means, as `mer.py spot`'s flags (px: pixels of the 64-px aligned face). The others: size (the
# aligned face's side), rate (analysed frames a second at most: a 200-fps video is read at every 4th frame), rois
# (the face is cut into rois x rois regions), cut (the mean change of a 32x24 thumbnail, in grey levels, that is a
# cut), method and baseline_s (the MEGC baseline's K for micro and macro). How the values were chosen:
# docs/devclips.md (leave-one-source-out on real recordings) and docs/spotting.md.
FLAGS = [
    ('k', '--threshold', 'the threshold: this many robust spreads (1.4826 x MAD) above the median of the lowest '
     'quarter of the motion curve'),
    ('floor', '--floor', 'the threshold is at least this many px'),
    ('extend', '--extend', 'an interval is widened to where the curve falls back to this fraction of its height'),
    ('min_s', '--min-s', 'shorter intervals (seconds) are noise'),
    ('micro_s', '--micro-s', 'the longest micro-expression in seconds (longer: macro)'),
    ('window_s', '--window-s', 'K: the seconds between the frames compared'),
    ('blink_ratio', '--blink-ratio', 'an interval whose eyes moved this many times more than the rest of the face is '
     'a blink'),
    ('warmup_s', '--warmup-s', 'seconds of a stream before its first interval is given'),
    ('detect_s', '--detect-s', 'seconds between checks that the face is still there'),
    ('settle_s', '--settle-s', 'each check of a stream spots its last this many seconds (their threshold, the '
     'face\'s usual), so that a check costs the same an hour in as a minute in; inf: the whole stream so far'),
    ('baseline_p', '--baseline-p', '--method baseline: the relative threshold mean + p x (max - mean)'),
    ('rigid_px', '--rigid-px', 'where the skull\'s part of the face departs this far (px) from one rigid head\'s '
     'motion, the curve is marked untrusted (a hand over the face, a head turned too far)'),
    ('held_px', '--held-px', 'a face this far (px) from its rest holds an expression'),
    ('held_s', '--held-s', 'an expression read from the departure from rest lasts longer than this (seconds; shorter '
     'ones are read from the two-sided curve)'),
    ('valley', '--valley', 'two expressions in a row: the departure falls back below this fraction of the lower '
     'peak between them'),
    ('merge_s', '--merge-s', 'a dip below the threshold shorter than this (seconds) does not end an expression'),
    ('ref_s', '--ref-s', 'the faces at rest of the last this many seconds are the reference'),
    ('ref_every_s', '--ref-every-s', 'every this many seconds the face nearest its rest may join the reference'),
    ('ref_gate_px', '--ref-gate-px', 'a face joins the reference only within this many px of it'),
    ('ref_stale_s', '--ref-stale-s', 'a face farther away joins when none has for this many seconds'),
    ('speech_px', '--speech-px', 'talking: the mouth\'s opening moves by more than this RMS (px) at 2-7 Hz'),
    ('speech_s', '--speech-s', 'talking lasts at least this many seconds'),
    ('speech_held', '--speech-held', 'while the face talks, an expression departs this many times farther than '
     'the threshold or the talking\'s own departure'),
    ('speech_q', '--speech-q', 'the talking\'s own departure: this percentile of it'),
    ('speech_cap_px', '--speech-cap-px', 'words alone move the face at most this far (px): beyond it, the face '
     'is expressive while its mouth keeps time (sobbing, laughing)'),
    ('speech_smooth_s', '--speech-smooth-s', 'while the face talks, its departure is the running median over '
     'this many seconds'),
    ('smile_lift', '--smile-lift', 'the smile measure: the mouth\'s width less this many times its corners\' '
     'distance below the inner lips\' middle (both in eye distances)'),
    ('smile_rise', '--smile-rise', 'a smile: the smile measure rises this far (eye distances) above the face\'s '
     'usual (its lowest fifth)'),
    ('open_rise', '--open-rise', 'a mouth held open (a jaw drop, bared teeth): the lips\' opening rises this far '
     '(eye distances) above the face\'s usual, read only where the face does not talk; inf: not read'),
    ('brow_rise', '--brow-rise', 'brows raised: their height above the eyes\' corners rises this far (eye '
     'distances) above the face\'s usual, read only where the face does not talk; inf: not read'),
    ('press_rise', '--press-rise', 'lips pressed: the lips\' own height (the outer lips\' less the inner lips\', eye '
     'distances) falls this far below the face\'s usual, read only where the face does not talk; inf: not read'),
    ('size_jump', '--size-jump', 'the face\'s usual is read afresh where its size jumps (a jump cut to a closer or '
     'farther shot, a lean toward the camera): its eye distance over the half second after differs from the half '
     'second before by more than this (the log of their medians\' ratio); inf: once over the whole face segment'),
    ('face_valley', '--face-valley', 'two expressions read from the landmarks in a row: their measure falls back '
     'below this fraction of the lower one\'s rise between them'),
    ('face_smooth_s', '--face-smooth-s', 'the landmarks\' measures are averaged over this many seconds'),
    ('face_min_s', '--face-min-s', 'a shorter expression read from the landmarks (seconds) is not reported'),
    ('head_still', '--head-still', 'the motion\'s intervals are reported only where the head\'s pose, read from the '
     'landmarks, changes by less than this (eye distances) over them; 0: never (the landmarks\' alone)'),
    ('turn_still', '--turn-still', 'an expression read from the landmarks over frames the curve cannot trust (most '
     'of them) is reported only where the head\'s pose changes by less than this (eye distances) over it: a turning '
     'face\'s measures change with its angle; 0: never; inf: always'),
    ('smile_seen', '--smile-seen', 'a smile read from the landmarks counts only where the expression classifier '
     '(video/emotion.py) sees the face happy, this probable, over it at least once: the mouth also widens with '
     'words and with a tense face; 0: always'),
    ('murmur', '--murmur', 'the motion\'s intervals are reported only where the mouth does not keep a syllable\'s '
     'rhythm at this fraction of --speech-px either (talking too quiet to be reported as speech); 1: only where '
     'speech is reported'),
]
# The settings `track` reads; the others are `spot`'s, so that a curve tracked once can be spotted under any of them.
TRACKED = ('method', 'size', 'rate', 'detect_s', 'cut', 'window_s', 'rois', 'baseline_s', 'ref_s', 'ref_every_s',
           'ref_gate_px', 'ref_stale_s')
# The settings where 0 means "none" (no merging, the mouth's width alone as the smile measure, no motion's
# interval, no landmarks' expression over untrusted frames): `mer.py spot` accepts 0 for these, and only a positive
# value for the others.
NONE_AT_ZERO = ('merge_s', 'smile_lift', 'head_still', 'turn_still', 'smile_seen')
# Farneback's settings for the small face: a smaller window than flow.py's (made for 224 px), so that the eyes'
# motion stays in the eyes' regions.
FLOW = dict(winsize=9)
# The eyes' boxes in the unit square of the aligned face, around align.TEMPLATE's eye centres: regions that touch
# them are not read (blinks).
EYE_BOX = (0.09, 0.07)


# ----------------------------------------------------------------------------------------------- the face
def cells(size, rois):
    """(boxes [(y0, y1, x0, x1)], eyes (n,) bool, row (n,) int): the face's grid of regions without a one-region
    border; `eyes` marks the regions that touch the eyes' boxes (a blink moves them), `row` is each region's row
    (0 at the top of the inner grid)."""
    edges = np.linspace(0, size, rois + 1).round().astype(int)
    boxes, eyes, row = [], [], []
    for i in range(1, rois - 1):
        for j in range(1, rois - 1):
            y0, y1, x0, x1 = edges[i], edges[i + 1], edges[j], edges[j + 1]
            boxes.append((y0, y1, x0, x1))
            eyes.append(any(abs((x0 + x1) / 2 / size - ex) < EYE_BOX[0] + 0.5 / rois and
                            abs((y0 + y1) / 2 / size - ey) < EYE_BOX[1] + 0.5 / rois for ex, ey in align.TEMPLATE[:2]))
            row.append(i - 1)
    return boxes, np.array(eyes), np.array(row)


@functools.lru_cache(maxsize=4)
def _grid(h, w):
    return np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))


def depth(size):
    """(size, size) a generic face's depth towards the camera, in pixels of the aligned face: an ellipsoid over
    the face's oval with the nose standing out of it. Under a small turn of the head (yaw, pitch) a point moves in
    the image in proportion to its depth: what lets one rigid 3-D head explain the flow of a turning face."""
    gx, gy = (g / size for g in _grid(size, size))
    oval = np.sqrt(np.clip(1 - ((gx - 0.5) / 0.45) ** 2 - ((gy - 0.58) / 0.6) ** 2, 0, None))
    (lx, ly), (rx, ry), (nx, ny) = align.TEMPLATE[:3]
    ridge = np.clip((gy - (ly + ry) / 2 + 0.04) / (ny - (ly + ry) / 2 + 0.04), 0, 1) * (gy < ny + 0.05)
    nose = 0.12 * ridge * np.exp(-((gx - nx) / 0.06) ** 2)
    return (0.3 * oval + nose) * size


@functools.lru_cache(maxsize=8)
def _head_basis(size, turn=True):
    """(basis (size * size * 2, 6), its least-squares inverse over the skull's pixels (6, 2m), their indices): one
    rigid head under weak perspective, u = tx + a x - b y + c z, v = ty + b x + a y + d z (x, y from the face's
    centre, z its depth): a similarity (tx, ty, a, b) and a small turn about the vertical (c) and horizontal (d)
    axes."""
    gx, gy = _grid(size, size)
    x, y, z = (gx - size / 2).ravel(), (gy - size / 2).ravel(), depth(size).ravel()
    one, zero = np.ones_like(x), np.zeros_like(x)
    bu = np.stack([one, zero, x, -y, z, zero], 1)[:, :6 if turn else 4]
    bv = np.stack([zero, one, y, x, zero, z], 1)[:, :6 if turn else 4]
    idx = np.flatnonzero(skull_mask(size).ravel())
    inverse = np.linalg.pinv(np.vstack([bu[idx], bv[idx]]))
    return np.stack([bu, bv], 1).reshape(-1, bu.shape[1]), inverse, idx


def rigid_fit(flow, turn=True):
    """(H, W, 2) the motion of one rigid head that best explains the flow over the skull's part of the face: what
    stabilisation left of the head's own motion between the two frames, a turn out of the image's plane included
    (turn=False: a similarity alone)."""
    size = flow.shape[0]
    basis, inverse, idx = _head_basis(size, turn)
    f = flow.reshape(-1, 2)
    return (basis @ (inverse @ np.r_[f[idx, 0], f[idx, 1]])).reshape(size, size, 2)


def pixels(boxes, size):
    """(regions, pixels per region) flat indices of each region's pixels in a size x size image (regions of one
    size)."""
    out = [(np.arange(y0, y1)[:, None] * size + np.arange(x0, x1)[None]).ravel() for y0, y1, x0, x1 in boxes]
    if len({len(x) for x in out}) != 1:
        raise ValueError(f'regions of unequal size: the face\'s side ({size}) must be a multiple of SPOTTING["rois"]')
    return np.stack(out)


def skull_mask(size):
    """stabilise.stable_mask without the eyes' boxes: the part of the face that follows the skull even while it
    blinks."""
    mask = stabilise.stable_mask(size)
    for ex, ey in align.TEMPLATE[:2]:
        mask[int((ey - EYE_BOX[1]) * size):int(np.ceil((ey + EYE_BOX[1]) * size)),
             int((ex - EYE_BOX[0]) * size):int(np.ceil((ex + EYE_BOX[0]) * size))] = 0
    return mask


def region_mdmd(f, idx):
    """(regions,) the main directional maximal difference of a flow field (its head's motion already removed) in
    each region (pixels' index arrays): the mean of the largest third of the magnitudes in the quadrant most of
    its vectors point into."""
    mag = np.hypot(f[..., 0], f[..., 1]).ravel()
    quad = (((np.arctan2(f[..., 1], f[..., 0]) + np.pi) // (np.pi / 2)).astype(int) % 4).ravel()
    m, q = mag[idx], quad[idx]                                        # (regions, pixels)
    counts = (q[..., None] == np.arange(4)).sum(1)
    main = counts.argmax(1)
    top = np.maximum(1, counts[np.arange(len(idx)), main] // 3)
    ordered = -np.sort(-np.where(q == main[:, None], m, -np.inf), 1)
    return np.cumsum(np.where(np.isfinite(ordered), ordered, 0), 1)[np.arange(len(idx)), top - 1] / top


def top_third(values, axis=-1):
    """The mean of the largest third of the regions' values (MDMD's last step), along `axis`."""
    v = -np.sort(-np.asarray(values, np.float64), axis)
    n = max(1, v.shape[axis] // 3)
    return np.take(v, np.arange(n), axis).mean(axis)


def largest(faces):
    """The largest (left, top, right, bottom) box of align.detect_faces's list."""
    return max((b for b, _ in faces), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def face_transform(gray, box, size):
    """2x3 similarity taking the face in `box` onto align.TEMPLATE at `size` pixels (dlib's 68 landmarks)."""
    import dlib

    # align.detect_landmarks takes the best-scored face; here the largest one is followed, so its box is given.
    shape = align._predictor(None)(gray, dlib.rectangle(*(int(v) for v in box)))
    lm = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    return align.similarity(align.anchor_points(lm), align.TEMPLATE * size)


def small_face(gray, m, size):
    """The aligned face at `size` pixels: warped at twice the size, area-averaged down and lightly blurred, so that
    a large face does not alias."""
    big = cv2.warpAffine(gray, np.vstack([m[0] * 2, m[1] * 2]), (2 * size, 2 * size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32), (0, 0), 0.7)


def face_centre(m, size):
    """The frame position of the aligned face's centre under the 2x3 similarity m."""
    inv = cv2.invertAffineTransform(m)
    return inv[:, :2] @ np.array([size / 2, size * 0.55]) + inv[:, 2]


# ----------------------------------------------------------------------------------------------- the stream
def step(fps, settings=None):
    """Every how many frames one is analysed: at most SPOTTING['rate'] a second."""
    return max(1, int(fps // dict(SPOTTING, **(settings or {}))['rate']))


def motion(frames, fps, name='video', settings=None, windows=None, progress=None):
    """The motion curves of a stream of BGR frames (those that are not analysed may be None): a dict of numpy
    arrays over the analysed frames (track's, stacked: `arrays`). Memory: the last 2 max(K) + 1 small faces, the
    neutral reference's bank, and a few numbers a frame per region."""
    for state in track(frames, fps, name, settings, windows, progress):
        pass
    return arrays(state)


PER_FRAME = ('q', 'eyes', 'lids', 'rigid', 'held', 'mouth', 'shape', 'emotion', 'rp', 'rq', 'rh')
NO_EMOTION = (np.nan,) * 7                     # video/emotion.py's seven classes, where they were not read


def arrays(state, before=None, width=None):
    """motion's dict of numpy arrays, of the curves track has computed so far: of its last `width` entries where
    given ('start': the first one's index in the stream), of all of them otherwise. Given `before`, this result for
    the same stream at an earlier frame, only the entries track could still change then (from its 'final' on) are
    read again: a long stream's settling reads its curve every half second."""
    n = len(state['pos'])
    first = 0 if width is None else max(0, n - width)
    start = 0 if before is None else before.get('start', 0)
    keep = first if before is None else max(first, min(before.get('final', 0), start + len(before['pos']) - 1))
    out = dict(state, start=first, lost=list(state.get('lost', ())), pos=np.array(state['pos'][keep:], int),
               seg=np.array(state['seg'][keep:], int),
               p=np.array([x[keep:] for x in state['p']], np.float64).reshape(len(state['windows']), -1))
    for key in PER_FRAME:
        if key in state:
            x = np.array(state[key][keep:], np.float64)
            out[key] = x.reshape(n - keep, -1) if key in ('rp', 'rq', 'rh', 'shape', 'emotion') else x
    if keep > first:
        for key in ('pos', 'seg', *PER_FRAME):
            if key in state:
                out[key] = np.concatenate([before[key][first - start:keep - start], out[key]])
        out['p'] = np.concatenate([before['p'][:, first - start:keep - start], out['p']], 1)
    return out


def box_pixels(size, x0, x1, y0, y1):
    """Flat pixel indices of a box given in the aligned face's unit square."""
    ys, xs = np.arange(int(y0 * size), int(np.ceil(y1 * size))), np.arange(int(x0 * size), int(np.ceil(x1 * size)))
    return (ys[:, None] * size + xs[None]).ravel()


def mouth_boxes(size):
    """(upper lip, below the lower lip) pixel indices: the jaw opens the mouth by moving what lies below the lips
    down, the upper lip barely."""
    (lx, ly), (rx, ry) = align.TEMPLATE[3], align.TEMPLATE[4]
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    return (box_pixels(size, cx - 0.08, cx + 0.08, cy - 0.1, cy - 0.04),
            box_pixels(size, cx - 0.08, cx + 0.08, cy + 0.06, cy + 0.15))


def mouth_motion(f, boxes):
    """How far the mouth has opened (pixels) in a flow field whose head motion is removed."""
    v = f[..., 1].ravel()
    upper, lower = boxes
    return float(v[lower].mean() - v[upper].mean())


SHAPE = ('width', 'corners', 'opening', 'brows', 'across', 'down', 'eyes', 'lips')
POSE = ('across', 'down', 'eyes')
# The landmarks' measures (`measures`) and the setting that is each one's rise (`expressions`); those that talking
# moves as far as an expression does, read only where the face does not talk (QUIET).
RISE = dict(smile='smile_rise', opening='open_rise', brows='brow_rise', press='press_rise')
QUIET = ('brows', 'opening', 'press')


def face_shape(landmarks):
    """What `spot` reads of a face's 68 landmarks (SHAPE): the mouth's width, how far its corners lie below the
    inner lips' middle, how far its lips stand apart (inner lips) and how high the brows stand above the eyes'
    corners, in eye distances (the eyes' centres' distance, so that the face's size, its roll and a turn about the
    vertical axis cancel); and the head's pose: the nose tip across from the eyes' centre and the nose's base below
    it, in eye distances (they change as the head turns and nods), and the eye distance in pixels (as it comes
    nearer). A smile (AU12) draws the corners out and up; a jaw drop, bared teeth or a word hold the lips apart, the
    corners coming down half way with the lower lip (so the corners' height is taken from the inner lips' middle,
    which comes down with them, not from the nose, which does not and which a nod moves); surprise and emphasis
    raise the brows (AU1+2; measured from the eyes' corners, which a blink or a squint does not move); words open
    and round the mouth within a syllable, which `spot` smooths away. Last, the lips' own height (the outer lips'
    opening less the inner lips'): pressed together (AU24) or rolled in, the lips thin."""
    lm = np.asarray(landmarks, np.float64)
    left, right = lm[36:42].mean(0), lm[42:48].mean(0)
    across = right - left
    eyes = float(np.hypot(*across))
    if eyes < 1e-6:
        return (0.0,) * len(SHAPE)
    ux = across / eyes
    down = np.array([-ux[1], ux[0]])                    # image y grows downwards
    x, y = (lm - (left + right) / 2) @ ux / eyes, (lm - (left + right) / 2) @ down / eyes
    return (float(np.hypot(x[54] - x[48], y[54] - y[48])), float((y[48] + y[54] - y[62] - y[66]) / 2),
            float(y[66] - y[62]), float(y[[36, 39, 42, 45]].mean() - y[17:27].mean()), float(x[30]), float(y[33]),
            eyes, float(y[57] - y[51] - (y[66] - y[62])))


def face_box(now, detected):
    """(left, top, right, bottom) in this frame: the detector's box of the segment's first frame (`detected`: its
    centre and half side in the aligned face) carried to where the face is now (`now`: frame to aligned face)."""
    inv = cv2.invertAffineTransform(now)
    (cx, cy), half = inv[:, :2] @ detected[0] + inv[:, 2], detected[1] * float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))
    return tuple(int(round(x)) for x in (cx - half, cy - half, cx + half, cy + half))


def landmarks_at(gray, box):
    """The face's 68 landmarks in this frame: dlib's predictor in the face's box (face_box)."""
    import dlib
    shape = align._predictor(None)(gray, dlib.rectangle(*box))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def emotion_at(gray, box):
    """The seven expressions' probabilities (video/emotion.py's classifier) of the face in its box (face_box); NaN
    where the face's crop leaves the frame."""
    from video import emotion
    face = emotion.crop(gray, box)
    return emotion.probabilities(face[None])[0] if face is not None else np.full(len(emotion.LABELS), np.nan)


def at_rest(face):
    """A face's entry in the bank of faces at rest: (face, its 16x16 thumbnail, which `nearest` compares)."""
    return face, cv2.resize(face, (16, 16), interpolation=cv2.INTER_AREA)


def nearest(bank, face):
    """The face at rest in the bank [at_rest(face)] that looks most like `face` (least mean absolute difference of
    the thumbnails): the same head pose and light, so that the flow between them is the expression."""
    if len(bank) == 1:
        return bank[0][0]
    small = at_rest(face)[1]
    return bank[int(np.argmin([np.abs(b - small).mean() for _, b in bank]))][0]


def track(frames, fps, name='video', settings=None, windows=None, progress=None):
    """motion's curves as they grow: yields, after each analysed frame, the same dict with lists in place of
    arrays (one object, updated in place; read it before the next frame). A frame given as None at a position that
    would be analysed (a live source dropped it) is skipped. Entries up to SPOTTING['detect_s'] seconds back may
    still change: frames whose face a later check finds gone are set to segment -1 ('lost' says when: (the frame
    that found it gone, the first frame set back, the segment they were in)); 'final' counts those, from the
    first, that no later frame changes.

    Per analysed frame: 'pos' (its position in the video), 'seg' (its face segment, -1 without a face), 'p' (one
    curve per window K in 'windows': MDMD from the face K frames before), 'q' (from 2K before, stored at the frame
    between), 'held' (from the neutral reference), 'eyes' and 'lids' (the eyes' regions of p's flow and the rest of
    the face, less a similarity alone: the blink's test), 'rigid' (how far p's flow over the skull departs from one
    rigid head), 'mouth' (mouth_motion from the segment's first face), 'shape' (face_shape of the frame's 68
    landmarks: the mouth's shape and the head's pose; read about 15 times a second, NaN between), 'emotion' (the
    expression classifier's seven probabilities in the same frames, emotion_at's; NaN between), and per region of
    the grid 'rp', 'rq', 'rh'
    (p's, q's and held's values); 'eye_regions' and 'row' describe the regions; 'step', 'fps' (analysed frames a
    second), 'frames' (read), 'segments', 'several' (frames with more than one face)."""
    import flow
    s = dict(SPOTTING, **(settings or {}))
    every = step(fps, s)
    afps = fps / every
    if windows is None:
        windows = [max(1, int(round(w * afps))) for w in
                   (s['baseline_s'] if s['method'] == 'baseline' else (s['window_s'],))]
    size, mask = s['size'], skull_mask(s['size'])
    boxes, eye_regions, row = cells(size, s['rois'])
    idx, mboxes = pixels(boxes, size), mouth_boxes(size)
    detect_every = max(1, int(round(s['detect_s'] * afps)))
    bank_every, stale = max(1, int(round(s['ref_every_s'] * afps))), int(round(s['ref_stale_s'] * afps))
    # The landmarks are read about 15 times a second (NaN between: their median over half a second is what
    # counts, measures): they cost as much as a Farneback flow.
    shape_every = max(1, int(round(afps / 15)))
    across = s['method'] != 'baseline'
    # (analysed index, face) of the current segment: 2K + 1 of them for the across term
    ring = collections.deque(maxlen=(2 if across else 1) * max(windows) + 1)
    bank = collections.deque(maxlen=max(2, int(round(s['ref_s'] / s['ref_every_s']))))
    rest = collections.deque(maxlen=bank.maxlen)      # how far each face in the bank was from its reference
    c = dict(pos=[], seg=[], p=[[] for _ in windows], windows=list(windows), eye_regions=eye_regions, row=row,
             step=every, fps=afps, frames=0, segments=0, several=0, ended=False, final=0, lost=[],
             **{k: [] for k in PER_FRAME})
    pos, seg, curves = c['pos'], c['seg'], c['p']
    none = np.full(len(boxes), np.nan, np.float32)
    m = w = first = prev_thumb = None
    segment, last_check, confirmed, admitted, warned_several = -1, -detect_every, -1, 0, False
    for i, frame in enumerate(frames):
        c['frames'] = i + 1
        if progress is not None:
            progress(1)
        if i % every or frame is None:
            continue
        t = len(pos)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        thumb = cv2.resize(gray, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
        cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > s['cut']
        prev_thumb = thumb
        if cut or t - last_check >= detect_every:
            last_check = t
            faces = align.detect_faces(gray, 1 if min(gray.shape) < 400 else 0)
            if len(faces) > 1:
                c['several'] += 1
                if not warned_several:
                    log.info('%s: %d faces at frame %d; following the largest', name, len(faces), i)
                    warned_several = True
            box = largest(faces) if faces else None
            if box is not None and m is not None and not cut:
                # Still the same face where it was? Otherwise (it moved away, or another face came) start again.
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                ex, ey = face_centre(stabilise.compose(cv2.invertAffineTransform(w), m), size)
                if np.hypot(cx - ex, cy - ey) > 0.3 * (box[2] - box[0]):
                    m = None
            if box is None and m is not None:
                # The face has gone since the last check: what the frames since show is not its expression.
                for j in range(confirmed + 1, t):
                    seg[j] = -1
                c['lost'].append((t, confirmed + 1, segment))
                log.info('%s: the face is lost by frame %d', name, i)
            if box is None or cut:
                m = None
            if box is not None and m is None:
                m, w, first = face_transform(gray, box, size), np.eye(2, 3), None
                centre = m[:, :2] @ np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]) + m[:, 2]
                detected = (centre, (box[2] - box[0]) / 2 * float(np.sqrt(abs(np.linalg.det(m[:, :2])))))
                segment += 1
                c['segments'] = segment + 1
                ring.clear()
                bank.clear()
                rest.clear()
                log.info('%s: face found at frame %d (%s)', name, i, 'after a cut' if cut else
                         'segment %d' % segment)
            if box is not None:
                confirmed = t
        pos.append(i)
        # What a later frame may still change: the segment of the frames since the last check that found the face
        # (it may find it gone), q K frames back.
        c['final'] = max(0, min(confirmed + 1 if m is not None else t + 1, t + 1 - (windows[0] if across else 0)))
        c['q'].append(np.nan)
        c['rq'].append(none)
        if m is None:
            seg.append(-1)
            for x in curves + [c['eyes'], c['lids'], c['rigid'], c['held'], c['mouth']]:
                x.append(0.0)
            c['shape'].append((0.0,) * len(SHAPE))
            c['emotion'].append(NO_EMOTION)
            for key, n in (('rp', len(boxes)), ('rh', len(boxes))):
                c[key].append(np.zeros(n, np.float32))
            yield c
            continue
        now = m                                         # the frame to the aligned face, head motion removed
        face = small_face(gray, now, size)
        if first is None:
            first = face
            bank.append(at_rest(face))
            admitted = t
        else:
            # Warm-started from the last frame's head motion, one refinement a frame follows the head.
            w = stabilise.head_motion(first, face, mask, w, iterations=1)
            now = stabilise.compose(cv2.invertAffineTransform(w), m)
            face = small_face(gray, now, size)
        if first is face or t % shape_every == 0:
            box = face_box(now, detected)
            c['shape'].append(face_shape(landmarks_at(gray, box)))
            c['emotion'].append(emotion_at(gray, box))
        else:
            c['shape'].append((np.nan,) * len(SHAPE))
            c['emotion'].append(NO_EMOTION)
        ring.append((t, face))
        seg.append(segment)
        for n, (k, x) in enumerate(zip(windows, curves)):
            f = flow.optical_flow(ring[max(0, len(ring) - 1 - k)][1], face, method='farneback', **FLOW)
            rig = rigid_fit(f)
            values = region_mdmd(f - rig, idx) if len(ring) > 1 else np.zeros(len(boxes))
            x.append(float(top_third(values[~eye_regions])))
            if n == 0:
                c['rp'].append(values.astype(np.float32))
                # A blink against the rest of the face, both from the flow less a similarity alone: a turn fitted
                # to the skull's part of the face takes up some of a blink's spread beyond the eyes' boxes and
                # carries it over the whole face.
                lids = region_mdmd(f - rigid_fit(f, turn=False), idx) if len(ring) > 1 else np.zeros(len(boxes))
                c['eyes'].append(float(top_third(lids[eye_regions])))
                c['lids'].append(float(top_third(lids[~eye_regions])))
                c['rigid'].append(float(np.hypot(*(f - rig)[mask > 0].T).mean()) if len(ring) > 1 else 0.0)
        # The face against its neutral reference: of the faces seen at rest over the last ref_s seconds, the one
        # that looks most like it (the head may have turned, the light changed since the segment began).
        f = flow.optical_flow(nearest(bank, face), face, method='farneback', **FLOW)
        values = region_mdmd(f - rigid_fit(f), idx)
        c['rh'].append(values.astype(np.float32))
        # How far the mouth has opened since the segment's first face (one reference throughout, so that the
        # words' rhythm is all its changes hold).
        f = flow.optical_flow(first, face, method='farneback', **FLOW)
        c['mouth'].append(mouth_motion(f - rigid_fit(f), mboxes))
        c['held'].append(float(top_third(values[~eye_regions])) if across else 0.0)
        if t % bank_every == 0:
            # Every ref_every_s the face nearest its rest over that time (a micro-expression's neutral frames, not
            # its apex; a closed mouth between words) joins the bank when it is as near the reference as the faces
            # that joined it (twice their median departure, with 0.05 px for a still synthetic face, at most
            # ref_gate_px); a face farther away only when none has joined for ref_stale_s, so that an expression
            # does not become the reference while one that was not at rest (a first face smiling) gives way.
            recent = [(c['held'][j], f) for j, f in list(ring)[-bank_every:]]
            value, calm = min(recent, key=lambda x: x[0])
            gate = s['ref_gate_px'] if len(rest) < 3 else min(s['ref_gate_px'], 2 * float(np.median(rest)) + 0.05)
            if value <= gate or t - admitted >= stale:
                bank.append(at_rest(calm))
                rest.append(value)
                admitted = t
        if across:
            # The head frame 2K back against this one, stored at the frame between them.
            k = windows[0]
            if len(ring) > k + 1:
                j = len(ring) - 1 - 2 * k
                f = flow.optical_flow(ring[max(0, j)][1], face, method='farneback', **FLOW)
                values = region_mdmd(f - rigid_fit(f), idx)
                c['rq'][t - k] = values.astype(np.float32)
                c['q'][t - k] = float(top_third(values[~eye_regions]))
        yield c
    if segment < 0 and pos:
        raise align.FaceNotFound(f'{name}: no face found by the dlib detector in any of its {len(pos) * every} '
                                 'frames; check that the video shows a frontal face')
    c['ended'], c['final'] = True, len(pos)
    yield c


def face_span(frames, fps, settings=None):
    """How many frames, from the first, show the face the first one shows: counted up to the last check (every
    SPOTTING['detect_s'] seconds, and at every cut) that still found it where it was. What a clip shows after its
    face has left (another scene, a cartoon) is not that face's expression."""
    s = dict(SPOTTING, **(settings or {}))
    every = max(1, int(round(s['detect_s'] * fps)))
    prev_thumb = centre = None
    confirmed, i = 0, -1
    for i, frame in enumerate(frames):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        thumb = cv2.resize(gray, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
        cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > s['cut']
        prev_thumb = thumb
        if not (i == 0 or cut or i % every == 0):
            continue
        faces = align.detect_faces(gray, 1 if min(gray.shape) < 400 else 0)
        box = largest(faces) if faces else None
        here = None if box is None else np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        if i and (box is None or np.hypot(*(here - centre)) > 0.3 * (box[2] - box[0])):
            return i if cut else confirmed + 1
        if box is not None:
            centre, confirmed = here, i
    return i + 1


# ----------------------------------------------------------------------------------------------- intervals
def two_sided(p, q, seg, k, h=None):
    """v(t) = min(p(t), p(t + k)) - q(t) where t + k is in t's segment, else p(t); given the face's departure from
    its neutral reference h, at most h(t): an expression departs from the face at rest, and the echo of one that
    has ended (the face at rest again, differing from K before, or from K before and K after when two
    expressions lie 2K apart) does not; 0 where there is no face."""
    v = p.copy()
    later = np.r_[p[k:], np.zeros(min(k, len(p)))]
    same = np.r_[seg[k:] == seg[:-k] if k < len(seg) else np.zeros(0, bool), np.zeros(min(k, len(seg)), bool)]
    v[same] = np.maximum(np.minimum(p[same], later[same]) - np.nan_to_num(q[same]), 0.0)
    if h is not None:
        v = np.minimum(v, h)
    v[seg < 0] = 0.0
    return v


def threshold(v, seg, s):
    """(threshold, base) of a curve over its frames with a face: the median of its lowest quarter (the base) + k x
    1.4826 x their median absolute deviation, at least floor. Only the lowest quarter is taken for the noise, so
    that a clip which is mostly expression (a smile held to the end) still has a neutral reference."""
    x = v[seg >= 0]
    if not len(x):
        return np.inf, 0.0
    x = x[x <= np.percentile(x, 25)]
    med = float(np.median(x))
    spread = 1.4826 * float(np.median(np.abs(x - med)))
    return max(med + s['k'] * spread, s['floor']), med


def runs(mask):
    """[(first, last)] of the runs of True in a boolean array."""
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def untrusted(curve, s):
    """(n,) bool: the analysed frames with a face where the curve cannot be trusted (SPOTTING['rigid_px'])."""
    rigid = curve.get('rigid')
    if rigid is None or not len(rigid):
        return np.zeros(len(curve['seg']), bool)
    return (rigid > s['rigid_px']) & (curve['seg'] >= 0)


def interval(curve, a, b, apex, fps, s, score):
    """The interval dict of analysed frames a..b (their video positions), with its apex and kind, and whether the
    curve can be trusted over most of it."""
    pos, every = curve['pos'], curve['step']
    start, end = int(pos[a]), min(int(pos[b]) + every - 1, curve['frames'] - 1)
    kind = 'micro' if (end - start + 1) / (fps * every) <= s['micro_s'] + 1e-9 else 'macro'
    return dict(start=start, apex=int(pos[apex]), end=end, kind=kind, score=float(score),
                trusted=bool(untrusted(curve, s)[a:b + 1].mean() < 0.5))


def smooth(x, n):
    """x averaged over a centred window of n samples (fewer at the ends)."""
    n = max(1, min(int(round(n)), len(x)))
    if n == 1:
        return np.asarray(x, np.float64)
    kernel = np.ones(n)
    return np.convolve(x, kernel, 'same') / np.convolve(np.ones(len(x)), kernel, 'same')


def speech(curve, s):
    """(n,) bool: the analysed frames where the face is talking: the mouth's opening (track's 'mouth') moves at
    syllable rate, its band of about 2-7 Hz (the opening less its 0.4-s average, smoothed over 0.1 s) holding an RMS
    of more than SPOTTING['speech_px'] over a second, with at least 3 reversals a second, for at least
    SPOTTING['speech_s'] seconds (pauses under 0.5 s bridged). A mouth that opens once (a smile showing its teeth,
    a yawn) has one or two reversals, not a rhythm."""
    seg, fps = curve['seg'], curve['fps']
    out = np.zeros(len(seg), bool)
    if 'mouth' not in curve or fps < 10:           # under 10 analysed frames a second, syllables alias
        return out
    for a, b in segments(seg):
        y = curve['mouth'][a:b + 1]
        band = smooth(y - smooth(y, 0.4 * fps), 0.1 * fps)
        loud = np.sqrt(smooth(band ** 2, fps)) > s['speech_px']
        for x, z in runs(~loud):
            if z - x + 1 < 0.5 * fps and x > 0 and z < len(loud) - 1:
                loud[x:z + 1] = True
        dead = 0.5 * s['speech_px']
        sign = np.where(band > dead, 1, np.where(band < -dead, -1, 0))
        for x, z in runs(loud):
            signs = sign[x:z + 1][sign[x:z + 1] != 0]
            reversals = int((np.diff(signs) != 0).sum())
            length = (z - x + 1) / fps
            if length >= s['speech_s'] and reversals >= 3 * length:
                out[a + x:a + z + 1] = True
    return out


def segments(seg):
    """[(first, last)] of each face segment's runs of analysed frames."""
    edges = np.flatnonzero(np.diff(seg)) + 1
    return [(a, b - 1) for a, b in zip(np.r_[0, edges], np.r_[edges, len(seg)]) if seg[a] >= 0]


def stretches(curve, s):
    """[(first, last)] of analysed frames over which the face's usual is read (expressions): each face segment, cut
    where the face's size jumps, its eye distance (face_shape's, joined by straight lines between the frames read)
    having a median over the half second after a frame that differs from the one over the half second before by
    more than SPOTTING['size_jump'] (their logs), at the middle of the frames where it differs most (within a
    tenth of the most) over the next half second, cuts at least half a second apart. A jump cut to a closer or
    farther shot, or a lean toward the camera, changes the measures in eye distances of a face that has not changed
    (the landmarks read a face of another size, turned another way), as a cut the tracker does not see; a face that
    comes nearer over seconds changes its size by a little each half second."""
    out, thr = [], s['size_jump']
    eyes = shape_columns(curve)['eyes'] if np.isfinite(thr) and 'shape' in curve else None
    w = max(2, int(round(0.5 * curve['fps'])))
    for a, b in segments(curve['seg']):
        n = b - a + 1
        read = np.flatnonzero(eyes[a:b + 1] > 0) if eyes is not None else []
        if len(read) < 4 or n < 2 * w + 1:
            out.append((a, b))
            continue
        size = np.interp(np.arange(n), read, np.log(eyes[a:b + 1][read]))
        median = np.median(np.lib.stride_tricks.sliding_window_view(size, w), axis=1)   # over size[i:i + w]
        jump = np.zeros(n)
        jump[w:n - w + 1] = np.abs(median[w:] - median[:-w])        # the half second after i against the one before
        cuts, start = [], w
        for i in np.flatnonzero(jump > thr):
            if i < start:
                continue
            # The medians differ most over half a second around the jump: it lies in the middle of those frames.
            near = jump[i:min(i + w, n - w + 1)]
            top = np.flatnonzero(near >= 0.9 * near.max())
            cuts.append(i + (top[0] + top[-1]) // 2)
            start = cuts[-1] + w
        edges = [0] + cuts + [n]
        out += [(int(a + x), int(a + y - 1)) for x, y in zip(edges, edges[1:])]
    return out


def talking_held(curve, speaking, s):
    """(the departure from the face at rest per analysed frame, how far the face's talking departs from it: the
    SPOTTING['speech_q'] percentile of the departure where it talks). Where
    the face talks, the words move it too: there the departure is its running median over
    SPOTTING['speech_smooth_s'] (the words come and go several times within it, an expression stays)."""
    h = np.array(curve['held'], np.float64)
    if not speaking.any():
        return h, 0.0
    from scipy.ndimage import median_filter
    width = max(1, int(round(s['speech_smooth_s'] * curve['fps'])))
    for a, b in runs(speaking):
        h[a:b + 1] = median_filter(h[a:b + 1], width, mode='nearest')
    return h, float(np.percentile(h[speaking], s['speech_q']))


def spot(curve, settings=None):
    """The spotted intervals of a motion curve (motion's result), in video frame positions: dicts with 'start',
    'apex', 'end' (inclusive), 'kind' (micro | macro | speech) and 'score' (the curve at the apex); and the curves
    the thresholds were applied to, for the figure."""
    s = dict(SPOTTING, **(settings or {}))
    if s['method'] == 'baseline':
        return spot_baseline(curve, s)
    seg, fps = curve['seg'], curve['fps']
    k = curve['windows'][0]
    speaking = speech(curve, s)
    p, q = curve['p'][0], curve['q']
    h, talk = talking_held(curve, speaking, s) if 'held' in curve else (None, 0.0)
    v = two_sided(p, q, seg, k, h)
    # Where the future is unknown (a segment's last K frames) only the past is compared: given the face's
    # departure from its neutral reference h, v there is min(p, h), thresholded against that curve's own noise over
    # the segment; without h, a run there whose head frames fall inside an interval already found is the echo of
    # that interval.
    one_sided = np.ones(len(v), bool)
    one_sided[:max(0, len(v) - k)] = seg[k:] != seg[:len(v) - k] if len(v) > k else one_sided[:0]
    thr, med = threshold(v, np.where(one_sided, -1, seg) if h is not None else seg, s)
    tail = (thr, med) if h is None else threshold(np.minimum(p, h), seg, s)
    if not np.isfinite(thr):
        thr, med = tail
    # Where the face talks, a run of v counts only where the face departs from its rest beyond h's threshold there:
    # speech_held times the larger of the usual one and how far this face's words move it (talking_held), which
    # words alone do not move it farther than speech_cap_px (a face that moves more while its mouth keeps time,
    # sobbing or laughing, is expressive). Elsewhere v is at most h already.
    base = max(thr, s['held_px'])
    hthr = np.where(speaking, s['speech_held'] * max(min(talk, s['speech_cap_px']), base), base)
    found = []
    for a, b in runs(np.where(one_sided, v > tail[0], v > thr)):
        if seg[a] < 0:
            continue
        away = h is not None and (h[a:b + 1] > hthr[a:b + 1]).any()
        if h is not None and not away and speaking[a:b + 1].mean() > 0.5 or \
                h is None and one_sided[a:b + 1].all() and any(fa <= b - k and a - k <= fb for fa, fb, _ in found):
            continue
        base = tail[1] if one_sided[a] else med
        peak = a + int(np.argmax(v[a:b + 1]))
        low = base + s['extend'] * (v[peak] - base)
        while a > 0 and seg[a - 1] == seg[peak] and v[a - 1] > low:
            a -= 1
        while b + 1 < len(v) and seg[b + 1] == seg[peak] and v[b + 1] > low:
            b += 1
        if not one_sided[a] and one_sided[b] and not away:
            # Running on into the segment's last K frames, where only the past is compared: from K frames after
            # its start on, the past it is compared with is itself, and the rest is its echo.
            c = a + int(np.argmax(one_sided[a:b + 1]))
            b = min(b, max(c, a + k) - 1)
            peak = min(peak, b)
        if found and a <= found[-1][1] and seg[found[-1][0]] == seg[a]:   # widened into the last one: merged
            pa, pb, pp = found.pop()
            a, b, peak = pa, max(b, pb), pp if v[pp] >= v[peak] else peak
        found.append((a, b, peak))
    # A blink moves the eyes far more than the rest of the face, which the regions above leave out but the flow's
    # window spreads a little beyond them; an interval whose eyes moved blink_ratio times more is a blink.
    eyes, rest = curve['eyes'], curve.get('lids', p)
    blinks = [x for x in found if eyes[x[0]:x[1] + 1].max() > s['blink_ratio'] * rest[x[0]:x[1] + 1].max()]
    if blinks:
        log.info('%d blink%s not counted as expressions', len(blinks), 's' * (len(blinks) > 1))
    scored = [(a, b, peak, v[peak]) for a, b, peak in found
              if (b - a + 1) / fps >= s['min_s'] and (a, b, peak) not in blinks]
    shown = dict(v=v, threshold=thr, untrusted=untrusted(curve, s), one_sided=one_sided, speech=speaking)
    if h is not None:
        scored = held(curve, h, scored, hthr, s, one_sided)
        shown.update(held=np.where(seg >= 0, h, 0.0), held_threshold=hthr)
    if 'shape' in curve:
        # The landmarks read a smile and, where the face does not talk, a mouth held open and raised brows, whose
        # shape they hold where the motion sees only its coming and going: their expressions replace the motion's
        # intervals that they overlap. The motion's others count only where the head held still: a turn, a nod, a
        # lean move the face's pixels more than an expression does (on real recordings most of the motion's
        # intervals were that); not where the mouth keeps a syllable's rhythm too quietly to be reported as speech
        # (a quiet talker's words move the face as far as an expression does; the rule for the face talking
        # aloud is the one above); and not where they begin as the face stops talking (within half a second of
        # it, the pause that speech bridges): the lips close and settle after the last word.
        found, d = expressions(curve, s, speaking)
        # The landmarks' own expressions over frames the curve cannot trust count only where the head's pose
        # changes by less than turn_still: the measures, in eye distances, of a face seen from another angle change
        # with the angle, and where the flow fits no rigid head the head moved too far or too fast to follow.
        bad = shown['untrusted']
        found = [x for x in found if bad[x[0]:x[1] + 1].mean() < 0.5 or
                 still(curve, x[0], x[1], dict(s, head_still=s['turn_still']))]
        stops = [b for a, b in runs(speaking) if b + 1 < len(seg) and seg[b + 1] == seg[b]]
        kept = [x for x in scored if not any(x[0] <= b and a <= x[1] for a, b, _, _ in found)
                and still(curve, x[0], x[1], s) and not any(abs(x[0] - b) <= 0.5 * fps for b in stops)]
        if kept:                            # (read only where there is something to test: spot runs every check)
            quiet = speech(curve, dict(s, speech_px=s['murmur'] * s['speech_px'])) & ~speaking
            kept = [x for x in kept if quiet[x[0]:x[1] + 1].mean() <= 0.5]
        scored = sorted(kept + found)
        shown.update(face=np.where(seg >= 0, d, np.nan))
    out = [interval(curve, a, b, peak, fps, s, score) for a, b, peak, score in scored]
    out += [dict(interval(curve, a, b, a, fps, s, 0.0), kind='speech') for a, b in runs(speaking)]
    return sorted(out, key=lambda r: (r['start'], r['kind'] == 'speech')), shown


def shape_columns(curve):
    """{name in SHAPE: (n,) float64}: track's 'shape' per analysed frame, one column per number face_shape gives
    (NaN where the landmarks were not read)."""
    shape = np.asarray(curve['shape'], np.float64).reshape(len(curve['seg']), len(SHAPE))
    return {name: shape[:, i] for i, name in enumerate(SHAPE)}


def measures(curve, s):
    """The landmarks' measures per analysed frame, from track's 'shape' (face_shape): 'smile' (the mouth's width
    less SPOTTING['smile_lift'] times its corners' depth below the inner lips' middle), 'opening' (the lips'),
    'brows' (their height above the eyes' corners) and 'press' (the lips' own height, negated: it rises as they
    thin), and where track classified the face, 'happy' (the classifier's probability of a happy face), each joined
    by straight lines between the frames read, its running median over half a second in each face segment (a
    syllable's change goes, a smile stays), averaged over SPOTTING['face_smooth_s']; 0 where there is no face."""
    from scipy.ndimage import median_filter
    seg, fps = curve['seg'], curve['fps']
    column = shape_columns(curve)
    out = dict(smile=column['width'] - s['smile_lift'] * column['corners'], opening=column['opening'],
               brows=column['brows'], press=-column['lips'])
    if len(curve.get('emotion', ())):
        from video import emotion
        probability = np.asarray(curve['emotion'], np.float64).reshape(len(seg), -1)
        out['happy'] = probability[:, emotion.LABELS.index('happy')]
    for name, measure in out.items():
        z = np.zeros(len(seg))
        for a, b in segments(seg):
            x = measure[a:b + 1]
            read = np.flatnonzero(~np.isnan(x))         # the frames whose landmarks were read; between them, a line
            if not len(read):
                continue
            x = np.interp(np.arange(len(x)), read, x[read])
            x = median_filter(x, max(1, int(round(0.5 * fps))) | 1, mode='nearest')
            z[a:b + 1] = smooth(x, s['face_smooth_s'] * fps)
        out[name] = z
    return out


def expressions(curve, s, speaking=None):
    """([(a, b, apex, score)], d): the expressions read from the landmarks, and per analysed frame the face's
    departure from its usual d, in units of each measure's rise: the largest over the measures (RISE: smile and
    SPOTTING['smile_rise'], opening and SPOTTING['open_rise'], brows and SPOTTING['brow_rise'], press and
    SPOTTING['press_rise']) of how far it lies above the face's usual (its lowest fifth over its stretch: the face
    segment, cut where the face's size jumps (stretches); the measures' scale differs between faces, and with the
    face's size and turn), divided by that rise, 0 at most below it. The brows, the opening and the
    press (QUIET) count only where the face does not talk (`speaking`, speech's): talking raises the brows for
    emphasis as far as surprise does, its words hold the lips apart as a jaw drop does, and close and stretch them
    as a press does (nor is the press read within half a second of talking, where the lips close and settle). The
    smile counts, where track classified the face, only over a rise (past half the smile's) where the classifier's
    'happy' (measures') passes SPOTTING['smile_seen'] at least once. An expression is a run where d passes 1, from
    where it passes 1/2 to where it falls back below, cut between two expressions where it falls back below
    SPOTTING['face_valley'] of the lower one or where another measure takes over from one that has fallen back so
    far (handovers), those shorter than SPOTTING['face_min_s'] left out."""
    from scipy.ndimage import binary_dilation
    seg, fps = curve['seg'], curve['fps']
    if speaking is None:
        speaking = speech(curve, s)
    # The lips close and settle as the face stops talking and before it speaks again, as they do when pressed: the
    # press is not read within half a second of talking either.
    half = int(round(0.5 * fps))
    near = binary_dilation(speaking, np.ones(2 * half + 1, bool)) if speaking.any() else speaking
    each = [np.zeros(len(seg))]               # below the usual counts as at it: only a rise is an expression
    usual_over = stretches(curve, s)
    read = measures(curve, s)
    happy = read.pop('happy', None)
    for name, z in read.items():
        rise = s[RISE[name]]
        if not np.isfinite(rise):
            continue
        rest = np.zeros(len(seg))
        for a, b in usual_over:
            rest[a:b + 1] = np.percentile(z[a:b + 1], 20)
        quiet = (near if name == 'press' else speaking) & (name in QUIET)
        if name == 'smile' and happy is not None and s['smile_seen'] > 0:
            # The mouth widens with words and with a tense face (anger, crying) too: a rise of the smile measure is
            # a smile only where the classifier, which has seen many faces smile, sees this one happy over it
            # (where it read the face at all).
            classified = ~np.isnan(np.asarray(curve['emotion'], np.float64).reshape(len(seg), -1)[:, 0])
            up = (z - rest) / rise > 0.5
            for a0, b0 in segments(seg):
                for a, b in [(a0 + x, a0 + y) for x, y in runs(up[a0:b0 + 1])]:
                    if classified[a:b + 1].any() and happy[a:b + 1].max() <= s['smile_seen']:
                        quiet[a:b + 1] = True
        each.append(np.where((seg < 0) | quiet, 0.0, np.maximum(0.0, (z - rest) / rise)))
    each = np.array(each)
    d = each.max(0)
    out = []
    for a, b in [(a0 + x, a0 + y) for a0, b0 in segments(seg) for x, y in runs(d[a0:b0 + 1] > 0.5)]:
        if (d[a:b + 1] <= 1).all():
            continue
        cuts = set(valleys(d[a:b + 1], s['face_valley'], 0.2 * fps))
        cuts |= set(handovers(each[:, a:b + 1], s['face_valley'], 0.2 * fps))
        edges = [a] + [a + c for c in sorted(cuts)] + [b + 1]
        for x, y in zip(edges, edges[1:]):
            if (y - x) / fps >= s['face_min_s']:
                apex = x + int(np.argmax(d[x:y]))
                out.append((x, y - 1, apex, d[apex]))
    return out, d


def still(curve, a, b, s):
    """Whether the head held still over analysed frames a..b and a quarter of a second either side: its pose read
    from the landmarks (face_shape's nose across and below the eyes' centre, in eye distances, and the eye distance
    relative to its median) changes by less than SPOTTING['head_still']. Where fewer than two frames' landmarks were
    read, nothing says it moved."""
    if s['head_still'] <= 0:
        return False
    seg = curve['seg']
    face, pad = seg[a], int(round(0.25 * curve['fps']))
    a, b = max(0, a - pad), min(len(seg), b + pad + 1)
    column = shape_columns(curve)
    pose = np.stack([column[name][a:b] for name in POSE], 1)
    pose = pose[(seg[a:b] == face) & ~np.isnan(pose[:, 0])]
    if len(pose) < 2:
        return True
    return max(np.ptp(pose[:, 0]), np.ptp(pose[:, 1]), np.ptp(pose[:, 2]) / np.median(pose[:, 2])) < s['head_still']


def valleys(h, valley, width):
    """Indices where a run of the curve h (a departure from the face at rest) splits into two expressions: the
    lowest point between two peaks that falls back to less than `valley` of the lower peak's height (h smoothed
    over `width` samples first, so that a flicker is no peak)."""
    from scipy.signal import find_peaks
    x = smooth(h, width)
    if len(x) < 3:
        return []
    peaks, props = find_peaks(np.r_[-np.inf, x, -np.inf], prominence=0)
    peaks = peaks - 1
    keep = [p for p, pr in zip(peaks, props['prominences']) if pr >= (1 - valley) * x[p]]
    cuts = []
    for p0, p1 in zip(keep, keep[1:]):
        m = p0 + int(np.argmin(x[p0:p1 + 1]))
        if x[m] < valley * min(x[p0], x[p1]):
            cuts.append(m)
    return cuts


def handovers(each, valley, width):
    """Indices where a run of the landmarks' departure (each: one row per measure) passes from one expression to
    the next read by another measure, which valleys does not see: the largest of the measures need not fall back
    between them (surprise's brows coming down as a smile widens the mouth). Between two peaks of their largest
    (smoothed over `width` samples), both past 1 and led by different measures, the point where the second's measure
    overtakes the first's, if the first's has fallen back below `valley` of its own peak by then."""
    from scipy.signal import find_peaks
    x = smooth(each.max(0), width)
    if len(x) < 3:
        return []
    peaks = find_peaks(np.r_[-np.inf, x, -np.inf], prominence=0)[0] - 1
    lead = each.argmax(0)
    cuts = []
    for p0, p1 in zip(peaks, peaks[1:]):
        m0, m1 = lead[p0], lead[p1]
        if m0 == m1 or x[p0] <= 1 or x[p1] <= 1:
            continue
        over = np.flatnonzero(each[m1, p0:p1 + 1] > each[m0, p0:p1 + 1])
        if len(over) and each[m0, p0 + over[0]] < valley * each[m0, p0]:
            cuts.append(p0 + over[0])
    return cuts


def held(curve, h, found, thr, s, one_sided):
    """`found` [(a, b, apex, score)] with the expressions held for longer than SPOTTING['held_s'] added, sorted:
    runs where the face differs from its neutral reference (h) by more than the threshold `thr`, cut where the
    curve cannot be trusted (a hand over the face, a head turned too far: whether the expression went on behind it
    is unknown) and where it falls back most of the way between two peaks (two expressions in a row). A run that an
    interval of `found` covers for most of its length is that interval; the intervals of `found` inside a run are
    parts of the held expression, and those in the segment's last K frames (`one_sided`) whose head frames fall
    inside it are its echo."""
    seg, k, fps = curve['seg'], curve['windows'][0], curve['fps']
    covered = untrusted(curve, s)
    for a, b in runs(covered):              # a frame or two of flow that fits no rigid head is not a hand
        if b - a + 1 < s['min_s'] * fps:
            covered[a:b + 1] = False
    above = (h > thr) & (seg >= 0) & ~covered
    above[1:] &= seg[1:] == seg[:-1]                    # a new segment, a new reference
    for a, b in runs(~above):              # a dip shorter than merge_s inside an expression does not end it
        if 0 < a and b < len(above) - 1 and b - a + 1 < s['merge_s'] * fps and not covered[a:b + 1].any() and \
                seg[a - 1] == seg[b + 1] >= 0:
            above[a:b + 1] = True
    pieces = []
    for a, b in runs(above):
        cuts = valleys(h[a:b + 1], s['valley'], 0.2 * fps)
        edges = [a] + [a + c for c in cuts] + [b + 1]
        pieces += [(x, y - 1) for x, y in zip(edges, edges[1:])]
    out = list(found)
    for a, b in pieces:
        if b - a + 1 <= s['held_s'] * fps:
            continue
        inside = [x for x in out if x[0] <= b and a <= x[1]]
        if any(min(b, x[1]) - max(a, x[0]) + 1 > (b - a + 1) / 2 for x in inside):
            continue
        echoes = [x for x in out if x[0] - k <= b and a <= x[1] - k and one_sided[x[0]:x[1] + 1].all()]
        out = [x for x in out if x not in inside and x not in echoes]
        apex = a + int(np.argmax(h[a:b + 1]))
        out.append((a, b, apex, h[apex]))
    return sorted(out)


def spot_baseline(curve, s):
    """The MEGC 2020 baseline's spotting: per window K (micro, macro), peaks of p above mean + p x (max - mean),
    at least K apart, each spotted as [peak - K, peak + K] of its kind."""
    seg, fps = curve['seg'], curve['fps']
    out, shown = [], None
    for kind, k, p in zip(('micro', 'macro'), curve['windows'], curve['p']):
        p = np.where(seg >= 0, p, 0.0)
        x = p[seg >= 0]
        if not len(x):
            continue
        thr = x.mean() + s['baseline_p'] * (x.max() - x.mean())
        shown = shown or dict(v=p, threshold=thr, untrusted=untrusted(curve, s))
        taken = []
        for t in np.argsort(-p, kind='stable'):
            if p[t] < thr:
                break
            if any(abs(t - u) <= k for u in taken) or (t > 0 and p[t - 1] > p[t]) or (t + 1 < len(p) and p[t + 1] > p[t]):
                continue
            a, b = max(0, t - k), min(len(p) - 1, t + k)
            iv = interval(curve, a, b, t, fps, s, p[t])
            iv['kind'] = kind
            out.append(iv)
            taken.append(t)
    return sorted(out, key=lambda r: r['start']), shown or dict(v=np.zeros(len(seg)), threshold=np.inf,
                                                                untrusted=untrusted(curve, s))


# ----------------------------------------------------------------------------------------------- as it arrives
def online(states, settings=None):
    """The intervals of a stream as they settle: from track's states, yields each interval once, a bounded time
    after it ends, so that a camera's are known while it runs and a file's are never held whole.

    Every SPOTTING['detect_s'] seconds of analysed frames, once the curve holds SPOTTING['warmup_s'] of them,
    `spot` runs on the curve's last SPOTTING['settle_s'] seconds so far (its threshold from those frames, its last
    K frames one-sided, as at a segment's end): the same work an hour in as a minute in. An interval that ends
    more than K + detect_s before the newest frame is given: the motion's v there is two-sided and no check can
    still drop its frames (the landmarks' measures are read against the face's usual over the segment so far, so
    the whole curve may read a little differently: `replay` gives what was given). At the stream's end, what its
    last stretch shows is given too. An interval that reaches back into one already given starts after it, or is
    dropped when its apex lies inside it. The published baseline's threshold is relative to the whole video: it
    settles at the end only, read whole."""
    s = dict(SPOTTING, **(settings or {}))

    def checks():
        last, curve = -np.inf, None
        for c in states:
            n = len(c['pos'])
            if c['ended'] or s['method'] != 'baseline' and n >= s['warmup_s'] * c['fps'] and n - last >= check(c, s):
                last, curve = n, arrays(c, curve, width(c, s))
                yield curve, c['ended']
    yield from settle(checks(), s)


def check(curve, s):
    """How many analysed frames apart online's checks are."""
    return max(1, int(round(s['detect_s'] * curve['fps'])))


def width(curve, s):
    """How many of a stream's last analysed frames each of online's checks spots: SPOTTING['settle_s'] seconds of
    them; all for the published baseline, whose threshold is the whole video's (and for settle_s inf)."""
    if s['method'] == 'baseline' or not np.isfinite(s['settle_s']):
        return None
    return max(1, int(round(s['settle_s'] * curve['fps'])))


def recent(curve, s):
    """The curve's last `width` analysed frames (all of it where it is no longer)."""
    n, w = len(curve['pos']), width(curve, s)
    return curve if w is None or n <= w else cut(curve, n - w, n)


def cut(curve, a, b):
    """The curve's analysed frames a..b - 1 ('start': the first one's index in the stream)."""
    out = dict(curve, start=curve.get('start', 0) + a, pos=curve['pos'][a:b], seg=curve['seg'][a:b],
               p=curve['p'][:, a:b])
    for key in PER_FRAME:
        if key in curve:
            out[key] = curve[key][a:b]
    return out


def settle(checks, s):
    """online's intervals, from its checks: (the curve so far, whether the stream has ended)."""
    given = []
    for curve, ended in checks:
        n, k = len(curve['pos']), curve['windows'][0]
        found, _ = spot(recent(curve, s), s)
        horizon = np.inf if ended else curve['pos'][n - 1] - (k + check(curve, s) + 1) * curve['step']
        for r in found:
            if r['end'] < horizon:
                r = after(r, given, curve['fps'] * curve['step'], s)
                if r is not None:
                    given.append(r)
                    yield r


def replay(curve, settings=None):
    """The intervals `online` gave for the stream whose whole curve (motion's) this is, from it alone: the same
    checks, each on the curve as track had it then (q not yet known for its last K frames, the frames a later
    check found without the face still in their segment). What `mer.py spot` gives, for scoring many settings
    without tracking again."""
    s = dict(SPOTTING, **(settings or {}))
    first = max(1, int(np.ceil(s['warmup_s'] * curve['fps'])))          # online's first n >= warmup_s * fps
    at = [] if s['method'] == 'baseline' else range(first, len(curve['pos']) + 1, check(curve, s))

    def checks():
        for m in at:
            yield then(curve, m, width(curve, s)), False
        yield curve, True
    return list(settle(checks(), s))


def then(curve, m, last=None):
    """The curve as track had it after its first m analysed frames, before the stream ended: the last `last` of
    them where given (as `arrays` gives them, 'start' the first one's index)."""
    first = 0 if last is None else max(0, m - last)
    out = dict(cut(curve, first, m), ended=False)
    out['seg'] = out['seg'].copy()
    for key in ('q', 'rq'):                               # q(t) is known from frame t + K on
        if key in curve:
            out[key] = curve[key][first:m].copy()
            out[key][max(0, m - curve['windows'][0] - first):] = np.nan
    for t, a, segment in curve.get('lost', ()):
        if t >= m:                                        # found gone by a later check: not set back yet
            out['seg'][max(0, a - first):m - first] = segment
    return out


def after(r, given, fps, s):
    """r, started after every interval in `given` that it overlaps, with its kind for its new length; None when
    its apex lies inside one of them or what is left is shorter than SPOTTING['min_s'] (fps: the video's rate)."""
    for g in given:
        if (r['kind'] == 'speech') != (g['kind'] == 'speech'):      # talking and an expression may overlap
            continue
        if r['start'] <= g['end'] and g['start'] <= r['end']:
            if r['apex'] <= g['end']:
                return None
            r = dict(r, start=g['end'] + 1)
    length = (r['end'] - r['start'] + 1) / fps
    if r['kind'] == 'speech':
        return r if length >= s['speech_s'] - 1e-9 else None
    if length < s['min_s'] - 1e-9:
        return None
    return dict(r, kind='micro' if length <= s['micro_s'] + 1e-9 else 'macro')
