"""Spotting expression intervals in a long video (MEGC 2020-2022's task), read as a stream in constant memory.

Beyond the paper, beside it: the method recognises a clip that starts at its onset; a recording is minutes long,
and this finds the clips in it. Each frame is read once and only a small grey face is kept, for a window of
2K + 1 analysed frames (K: SPOTTING['window_s'] seconds):

  track     the face is found by dlib (the largest, when there are several), aligned once by its landmarks onto
            align.TEMPLATE at SPOTTING['size'] pixels and followed: its rigid motion from the segment's first frame
            is removed with stabilise.head_motion; it is looked for again every SPOTTING['detect_s'] seconds and at
            every cut (a jump of the whole picture), and where it is gone (or another face is there) the segment
            ends. Frames of a segment that a later check finds without its face are dropped back to the last
            check, so what the camera shows after the face has left is never read as expression.
  motion    p(t): the MEGC 2020 baseline's main directional maximal difference (MDMD; Wang et al. 2017, He et al.
            2020) of the Farneback flow from the face K frames earlier (the head frame) to the face at t: the flow
            less the similarity that best explains it over the skull's part of the face (what stabilisation left of
            the head), cut into a grid of regions; in each region the mean of the largest third of the magnitudes
            in its main direction (the quadrant most vectors point into); p is the mean of the largest third of the
            regions. The eyes' regions are left out (a blink, the commonest false spot, moves them), and measured
            apart from the same flow. q(t): the same from the face at t - K to the face at t + K.
  spot      v(t) = min(p(t), p(t + K)) - q(t): the face at t differs from the face K frames before and K frames
            after, and those two are alike. That holds inside an expression shorter than K, and neither in its
            echo (where only the past differs) nor between two expressions less than 2K apart. p(t + K) is the flow
            from t to t + K, so the curve costs two flows a frame. At a segment's end the future is unknown and
            v = p, so an expression held to the end is found; an interval there that only echoes one already found
            is dropped, and one that runs on into it is ended where its echo begins. v above a noise-relative
            threshold (SPOTTING['k'] robust spreads above the median of v's lowest quarter, at least
            SPOTTING['floor'] pixels) is a run; a run is widened to where v falls back to SPOTTING['extend'] of its
            height above that median, and its apex is its highest frame. A run whose eyes moved
            SPOTTING['blink_ratio'] times more than the rest of the face is a blink. A run of at most 0.5 s is a
            micro-expression (the datasets' definition), a longer one macro.
  held      an expression held for longer than K, or one that turns into another without a return to neutral
            (crying, then a laugh held to the end), makes v vanish: the faces K before and after it differ as much
            as it differs from them. held(t), the same MDMD from the segment's first face (its reference) to the
            face at t, stays high instead: a run of more than K frames where it exceeds SPOTTING['held_px'] is a
            macro interval, cut where the curve cannot be trusted (below). A run that an interval of v covers for
            most of its length is that interval; v's intervals inside a run are parts of it. One more flow a frame.
  trust     where the flow over the skull's part of the face departs from one rigid head's motion by more than
            SPOTTING['rigid_px'] (a head turned out of plane, a hand over the face), the curve measures that and not
            an expression: those frames are untrusted, and so is an interval lying mostly inside them.
  settle    `online` gives each interval of a stream (a camera) once no later frame can change it.

`SPOTTING['method'] = 'baseline'` is the MEGC 2020 baseline as published instead: p alone with K the half length of
an average micro (0.2 s) and macro (0.6 s) expression, the relative threshold mean + p x (max - mean) per video,
and each peak above it spotted as [peak - K, peak + K]; BENCHMARKS.md measures both.
"""
import collections
import functools
import logging

import cv2
import numpy as np

import align
import stabilise

log = logging.getLogger(__name__)

# size: side of the aligned face in pixels; rate: frames analysed per second at most (a 200-fps video is read at
# every 4th frame: an expression lasts tens of them); detect_s: seconds between checks that the face is still
# there; cut: mean absolute change of a 32x24 thumbnail, in grey levels, that is a cut; window_s: K in seconds;
# rois: the face is cut into rois x rois regions; k, floor, extend: the threshold and the widening above; min_s:
# shorter runs are noise; micro_s: the longest micro-expression; blink_ratio: an interval whose eyes' regions move
# this many times more than the rest of the face is a blink; baseline_s, baseline_p: the published baseline's
# K (micro, macro) and relative threshold; warmup_s: seconds of a stream before its first intervals are given
# (the threshold needs a neutral reference); rigid_px: where the flow over the skull's part of the face departs
# this far (pixels of the 64-px face, on average) from one rigid head's motion, the head has turned out of plane
# or something covers the face, and the curve there cannot be trusted (chosen on the real clips: smiles and the
# demo's in-plane head turn stay under 0.8, a hand over the face and a turned head reach 1.1-1.6); held_px: a face
# that differs this far from its segment's first face for longer than K holds an expression (chosen on the real
# clips and the demo: a face before an expression stays under 0.1 (synthetic) to 0.6 (real, its head drifting), a
# smile reaches 0.6 (a 6-px smile at 224 px) to 4, crying and laughing 2-10; the real clips score the same from 0.5 to 3).
SPOTTING = dict(method='mdmd2', size=64, rate=50.0, detect_s=0.5, cut=20.0, window_s=2.0, rois=8, k=8.0, floor=0.2,
                extend=0.2, min_s=0.12, micro_s=0.5, blink_ratio=1.25, baseline_s=(0.2, 0.6), baseline_p=0.3,
                warmup_s=6.0, rigid_px=1.0, held_px=0.5)
# Farneback's settings for the small face: a smaller window than flow.py's (made for 224 px), so that the eyes'
# motion stays in the eyes' regions.
FLOW = dict(winsize=9)
# The eyes' boxes in the unit square of the aligned face, around align.TEMPLATE's eye centres: regions that touch
# them are not read (blinks).
EYE_BOX = (0.09, 0.07)


# ----------------------------------------------------------------------------------------------- the face
def regions(size, rois, eyes=False):
    """[(y0, y1, x0, x1)]: the face's grid of regions, without a one-region border and without the eyes (with
    eyes=True: the eyes' regions only)."""
    edges = np.linspace(0, size, rois + 1).round().astype(int)
    out = []
    for i in range(1, rois - 1):
        for j in range(1, rois - 1):
            y0, y1, x0, x1 = edges[i], edges[i + 1], edges[j], edges[j + 1]
            near_eye = any(abs((x0 + x1) / 2 / size - ex) < EYE_BOX[0] + 0.5 / rois and
                           abs((y0 + y1) / 2 / size - ey) < EYE_BOX[1] + 0.5 / rois for ex, ey in align.TEMPLATE[:2])
            if near_eye == eyes:
                out.append((y0, y1, x0, x1))
    return out


@functools.lru_cache(maxsize=4)
def _grid(h, w):
    return np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))


def rigid_part(flow, mask):
    """(H, W, 2) the similarity motion that best explains the flow over the mask (the skull's part of the face):
    what stabilisation left of the head's own motion between the two frames."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    m = align.similarity(pts, pts + flow[ys, xs])
    gx, gy = _grid(*flow.shape[:2])
    return np.stack([m[0, 0] * gx + m[0, 1] * gy + m[0, 2] - gx, m[1, 0] * gx + m[1, 1] * gy + m[1, 2] - gy], -1)


def pixels(cells, size):
    """(cells, pixels per cell) flat indices of each region's pixels in a size x size image (regions of one size)."""
    out = [(np.arange(y0, y1)[:, None] * size + np.arange(x0, x1)[None]).ravel() for y0, y1, x0, x1 in cells]
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


def mdmd(flow, cell_sets, mask, rigid=None):
    """The main directional maximal difference of a flow field (see the docstring), its rigid part over `mask`
    (rigid_part's, computed here unless given) removed first: one value per set of regions (pixels' index arrays)
    in cell_sets."""
    f = flow - (rigid_part(flow, mask) if rigid is None else rigid)
    mag = np.hypot(f[..., 0], f[..., 1]).ravel()
    quad = (((np.arctan2(f[..., 1], f[..., 0]) + np.pi) // (np.pi / 2)).astype(int) % 4).ravel()
    out = []
    for idx in cell_sets:
        m, q = mag[idx], quad[idx]                                        # (regions, pixels)
        counts = (q[..., None] == np.arange(4)).sum(1)
        main = counts.argmax(1)                                           # the quadrant most vectors point into
        top = np.maximum(1, counts[np.arange(len(idx)), main] // 3)       # its largest third
        ordered = -np.sort(-np.where(q == main[:, None], m, -np.inf), 1)
        vals = np.cumsum(np.where(np.isfinite(ordered), ordered, 0), 1)[np.arange(len(idx)), top - 1] / top
        vals = np.sort(vals)[::-1]
        out.append(float(vals[:max(1, len(vals) // 3)].mean()))
    return out


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
    arrays over the analysed frames, 'pos' (their positions in the video), 'seg' (the face segment each belongs to,
    -1 where there is no face), 'p' (K, n) one curve per window K (frames analysed) in 'windows', 'q' and 'eyes';
    with 'step', 'fps' (analysed frames per second), 'frames' (read), 'segments' (how many), 'several' (frames
    analysed with more than one face). Memory: the last 2 max(K) + 1 small faces and a few numbers a frame."""
    for state in track(frames, fps, name, settings, windows, progress):
        pass
    return arrays(state)


def arrays(state):
    """motion's dict of numpy arrays, of the curves track has computed so far."""
    return dict(state, pos=np.array(state['pos'], int), seg=np.array(state['seg'], int),
                p=np.array(state['p'], np.float64).reshape(len(state['windows']), -1),
                q=np.array(state['q'], np.float64), eyes=np.array(state['eyes'], np.float64),
                rigid=np.array(state['rigid'], np.float64), held=np.array(state['held'], np.float64))


def track(frames, fps, name='video', settings=None, windows=None, progress=None):
    """motion's curves as they grow: yields, after each analysed frame, the same dict with lists in place of
    arrays (one object, updated in place; read it before the next frame). A frame given as None at a position that
    would be analysed (a live source dropped it) is skipped. Entries up to SPOTTING['detect_s'] seconds back may
    still change: frames whose face a later check finds gone are set to segment -1."""
    import flow
    s = dict(SPOTTING, **(settings or {}))
    every = step(fps, s)
    afps = fps / every
    if windows is None:
        windows = [max(1, int(round(w * afps))) for w in
                   (s['baseline_s'] if s['method'] == 'baseline' else (s['window_s'],))]
    size, mask = s['size'], skull_mask(s['size'])
    cells, eye_cells = (pixels(regions(size, s['rois'], e), size) for e in (False, True))
    detect_every = max(1, int(round(s['detect_s'] * afps)))
    across = s['method'] != 'baseline'
    # (analysed index, face) of the current segment: 2K + 1 of them for the across term
    ring = collections.deque(maxlen=(2 if across else 1) * max(windows) + 1)
    c = dict(pos=[], seg=[], p=[[] for _ in windows], q=[], eyes=[], rigid=[], held=[], windows=list(windows),
             step=every, fps=afps, frames=0, segments=0, several=0, ended=False)
    pos, seg, curves, q, eyes, rigid, held = c['pos'], c['seg'], c['p'], c['q'], c['eyes'], c['rigid'], c['held']
    m = w = ref = prev_thumb = None
    segment, last_check, confirmed, warned_several = -1, -detect_every, -1, False
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
                log.info('%s: the face is lost by frame %d', name, i)
            if box is None or cut:
                m = None
            if box is not None and m is None:
                m, w, ref = face_transform(gray, box, size), np.eye(2, 3), None
                segment += 1
                c['segments'] = segment + 1
                ring.clear()
                log.info('%s: face found at frame %d (%s)', name, i, 'after a cut' if cut else
                         'segment %d' % segment)
            if box is not None:
                confirmed = t
        pos.append(i)
        q.append(np.nan)
        if m is None:
            seg.append(-1)
            for x in curves + [eyes, rigid, held]:
                x.append(0.0)
            yield c
            continue
        face = small_face(gray, m, size)
        if ref is None:
            ref = face
        else:
            # Warm-started from the last frame's head motion, one refinement a frame follows the head.
            w = stabilise.head_motion(ref, small_face(gray, m, size), mask, w, iterations=1)
            face = small_face(gray, stabilise.compose(cv2.invertAffineTransform(w), m), size)
        ring.append((t, face))
        seg.append(segment)
        for n, (k, x) in enumerate(zip(windows, curves)):
            f = flow.optical_flow(ring[max(0, len(ring) - 1 - k)][1], face, method='farneback', **FLOW)
            if n == 0:
                face_value = eye_value = off = 0.0
                if len(ring) > 1:
                    rig = rigid_part(f, mask)
                    face_value, eye_value = mdmd(f, (cells, eye_cells), mask, rig)
                    off = float(np.hypot(*(f - rig)[mask > 0].T).mean())
                x.append(face_value)
                eyes.append(eye_value)
                rigid.append(off)
            else:
                x.append(mdmd(f, (cells,), mask)[0] if len(ring) > 1 else 0.0)
        # The face against the segment's first one, its reference: an expression held for longer than K.
        held.append(mdmd(flow.optical_flow(ref, face, method='farneback', **FLOW), (cells,), mask)[0]
                    if across and face is not ref else 0.0)
        if across:
            # The head frame 2K back against this one, stored at the frame between them.
            k = windows[0]
            if len(ring) > k + 1:
                j = len(ring) - 1 - 2 * k
                q[t - k] = mdmd(flow.optical_flow(ring[max(0, j)][1], face, method='farneback', **FLOW),
                                (cells,), mask)[0]
        yield c
    if segment < 0 and pos:
        raise align.FaceNotFound(f'{name}: no face found by the dlib detector in any of its {len(pos) * every} '
                                 'frames; check that the video shows a frontal face')
    c['ended'] = True
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
def two_sided(p, q, seg, k):
    """v(t) = min(p(t), p(t + k)) - q(t) where t + k is in t's segment, else p(t); 0 where there is no face."""
    v = p.copy()
    later = np.r_[p[k:], np.zeros(k)]
    same = np.r_[seg[k:] == seg[:-k] if k < len(seg) else np.zeros(0, bool), np.zeros(min(k, len(seg)), bool)]
    v[same] = np.maximum(np.minimum(p[same], later[same]) - np.nan_to_num(q[same]), 0.0)
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


def spot(curve, settings=None):
    """The spotted intervals of a motion curve (motion's result), in video frame positions: dicts with 'start',
    'apex', 'end' (inclusive), 'kind' (micro | macro) and 'score' (the curve at the apex); and the curve the
    threshold was applied to with its threshold, for the figure."""
    s = dict(SPOTTING, **(settings or {}))
    if s['method'] == 'baseline':
        return spot_baseline(curve, s)
    seg, fps = curve['seg'], curve['fps']
    k = curve['windows'][0]
    v = two_sided(curve['p'][0], curve['q'], seg, k)
    thr, med = threshold(v, seg, s)
    # Where the future is unknown (a segment's last K frames) only the past is compared, which also holds the echo
    # of an expression that ended less than K before; a run there whose head frames fall inside an interval already
    # found is that echo.
    one_sided = np.ones(len(v), bool)
    one_sided[:max(0, len(v) - k)] = seg[k:] != seg[:len(v) - k] if len(v) > k else one_sided[:0]
    found = []
    for a, b in runs(v > thr):
        if seg[a] < 0:
            continue
        if one_sided[a:b + 1].all() and any(fa <= b - k and a - k <= fb for fa, fb, _ in found):
            continue
        peak = a + int(np.argmax(v[a:b + 1]))
        low = med + s['extend'] * (v[peak] - med)
        while a > 0 and seg[a - 1] == seg[peak] and v[a - 1] > low:
            a -= 1
        while b + 1 < len(v) and seg[b + 1] == seg[peak] and v[b + 1] > low:
            b += 1
        if not one_sided[a] and one_sided[b]:
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
    p, eyes = curve['p'][0], curve['eyes']
    blinks = [x for x in found if eyes[x[0]:x[1] + 1].max() > s['blink_ratio'] * p[x[0]:x[1] + 1].max()]
    if blinks:
        log.info('%d blink%s not counted as expressions', len(blinks), 's' * (len(blinks) > 1))
    scored = [(a, b, peak, v[peak]) for a, b, peak in found
              if (b - a + 1) / fps >= s['min_s'] and (a, b, peak) not in blinks]
    shown = dict(v=v, threshold=thr, untrusted=untrusted(curve, s), one_sided=one_sided)
    if 'held' in curve:
        scored = held(curve, scored, thr, s, one_sided)
        shown.update(held=np.where(seg >= 0, curve['held'], 0.0), held_threshold=max(thr, s['held_px']))
    return [interval(curve, a, b, peak, fps, s, score) for a, b, peak, score in scored], shown


def held(curve, found, thr, s, one_sided):
    """`found` [(a, b, apex, score)] with the expressions held for longer than K added, sorted:
    runs of at least K where the face differs from its segment's first face (the 'held' curve) by more than
    SPOTTING['held_px'] (and the threshold), cut where the curve cannot be trusted (a hand over the face, a head
    turned: whether the expression went on behind it is unknown). A run that an interval of `found` covers for
    most of its length is that interval; the intervals of `found` inside a run are parts of the held expression,
    and those in the segment's last K frames (`one_sided`) whose head frames fall inside it are its echo."""
    h, seg, k = curve['held'], curve['seg'], curve['windows'][0]
    covered = untrusted(curve, s)
    for a, b in runs(covered):              # a frame or two of flow that fits no rigid head is not a hand
        if b - a + 1 < s['min_s'] * curve['fps']:
            covered[a:b + 1] = False
    above = (h > max(thr, s['held_px'])) & (seg >= 0) & ~covered
    above[1:] &= seg[1:] == seg[:-1]                    # a new segment, a new reference
    out = list(found)
    for a, b in runs(above):
        if b - a + 1 <= k:
            continue
        inside = [x for x in out if x[0] <= b and a <= x[1]]
        if any(min(b, x[1]) - max(a, x[0]) + 1 > (b - a + 1) / 2 for x in inside):
            continue
        echoes = [x for x in out if one_sided[x[0]:x[1] + 1].all() and x[0] - k <= b and a <= x[1] - k]
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
    `spot` runs on the curve so far (its threshold from the frames so far, its last K frames one-sided, as at a
    segment's end). An interval that ends more than K + detect_s before the newest frame can no longer change (v
    there is two-sided and no check can still drop its frames) and is given; at the stream's end, what the whole
    curve shows is given too. An interval that reaches back into one already given starts after it, or is dropped
    when its apex lies inside it. The published baseline's threshold is relative to the whole video: it settles
    at the end only."""
    s = dict(SPOTTING, **(settings or {}))
    given, last = [], -np.inf
    for c in states:
        n, k = len(c['pos']), c['windows'][0]
        check = max(1, int(round(s['detect_s'] * c['fps'])))
        if not c['ended'] and (s['method'] == 'baseline' or n < s['warmup_s'] * c['fps'] or n - last < check):
            continue
        last = n
        found, _ = spot(arrays(c), s)
        horizon = np.inf if c['ended'] else c['pos'][n - 1] - (k + check + 1) * c['step']
        for r in found:
            if r['end'] < horizon:
                r = after(r, given, c['fps'] * c['step'], s)
                if r is not None:
                    given.append(r)
                    yield r


def after(r, given, fps, s):
    """r, started after every interval in `given` that it overlaps, with its kind for its new length; None when
    its apex lies inside one of them or what is left is shorter than SPOTTING['min_s'] (fps: the video's rate)."""
    for g in given:
        if r['start'] <= g['end'] and g['start'] <= r['end']:
            if r['apex'] <= g['end']:
                return None
            r = dict(r, start=g['end'] + 1)
    length = (r['end'] - r['start'] + 1) / fps
    if length < s['min_s'] - 1e-9:
        return None
    return dict(r, kind='micro' if length <= s['micro_s'] + 1e-9 else 'macro')
