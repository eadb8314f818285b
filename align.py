"""Face alignment (paper §III.A): dlib HOG+SVM detector, 68 landmarks, one similarity transform per clip.

The detector is dlib's frontal face detector (HOG features + linear SVM) and the landmarks come from dlib's
ensemble-of-regression-trees predictor (Kazemi & Sullivan 2014), whose 68-point model ships with the
`face-recognition-models` package. A clip is warped with ONE transform, estimated on its onset frame, so that
alignment itself adds no motion between onset and apex: the flow then sees only the face's own movement.

Rigid head motion (stabilise=True): each later frame is also mapped onto the onset frame by the similarity that
best explains its Farneback flow over STABLE_BOX (the eyes' row down to the nose, which expressions barely move),
in the same warp, so that a head that turns or shifts between onset and apex does not masquerade as expression.
"""
import functools
import importlib.util
import logging
from pathlib import Path

import cv2
import dlib
import numpy as np

log = logging.getLogger(__name__)

# Canonical positions, in a unit square, of the eye centres, nose tip and mouth corners: the widely used
# 5-point template of ArcFace (112x112), shrunk by 0.8 about the centre and shifted down, so the crop keeps the
# brows and forehead (AU1/2/4) and the chin (AU26) that micro-expressions move.
_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                          [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
TEMPLATE = (_TEMPLATE_112 / 112.0 - 0.5) * 0.8 + np.array([0.5, 0.52])
# The part of the aligned face that follows the skull rather than the expression, as ((x0, y0), (x1, y1)) in the
# unit square: from just above the eyes to the nose tip, a little beyond the eye centres on each side. The brows
# (AU1/2/4), the mouth and the jaw (AU12/15/26) are outside it.
STABLE_BOX = ((TEMPLATE[0, 0] - 0.1, TEMPLATE[0, 1] - 0.05), (TEMPLATE[1, 0] + 0.1, TEMPLATE[2, 1]))
# Refinements of the head's motion: each warps the frame by the estimate so far and fits the flow that is left
# (a flow of several pixels is estimated less precisely than the sub-pixel remainder).
HEAD_ITERATIONS = 3


class FaceNotFound(ValueError):
    """No face (or no usable landmarks) in an image; the message names the file."""


class FrameError(ValueError):
    """A frame file that is cut short, or a clip whose frames differ in size; the message names the file."""


def landmark_model_path(path=None):
    """Path of dlib's 68-point shape predictor: `path`, else the copy inside face-recognition-models."""
    if path is not None:
        p = Path(path)
    else:
        # Don't import face_recognition_models: its __init__ needs pkg_resources, gone from new setuptools.
        spec = importlib.util.find_spec('face_recognition_models')
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError('dlib 68-point landmark model not found: pip install face-recognition-models '
                                    '(or pass the .dat file with --landmarks PATH)')
        p = Path(spec.submodule_search_locations[0]) / 'models' / 'shape_predictor_68_face_landmarks.dat'
    if not p.is_file():
        raise FileNotFoundError(f'{p}: dlib 68-point landmark model missing; reinstall face-recognition-models '
                                'or pass the .dat file with --landmarks PATH')
    return p


@functools.lru_cache(maxsize=1)
def _detector():
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=2)
def _predictor(path=None):
    # Loading the 100 MB predictor takes ~1 s: once per process (and per worker of a pool).
    return dlib.shape_predictor(str(landmark_model_path(path)))


def detect_faces(image_bgr, upsample=1):
    """Face boxes (left, top, right, bottom) and detector scores, best score first (dlib HOG + linear SVM)."""
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    rects, scores, _ = _detector().run(gray, upsample, 0.0)
    order = np.argsort(scores)[::-1]
    return [((rects[i].left(), rects[i].top(), rects[i].right(), rects[i].bottom()), scores[i]) for i in order]


def detect_landmarks(image_bgr, upsample=1, name='image', landmarks_path=None):
    """(68, 2) float landmarks (x, y) of the best-scored face (Kazemi & Sullivan 2014 regression trees)."""
    faces = detect_faces(image_bgr, upsample)
    if not faces:
        raise FaceNotFound(f'{name}: no face found by the dlib detector; check the frame shows a frontal face, '
                           'or pass --no-face center to fall back to a centre crop')
    (l, t, r, b), _ = faces[0]
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    shape = _predictor(landmarks_path)(gray, dlib.rectangle(int(l), int(t), int(r), int(b)))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def anchor_points(landmarks):
    """(5, 2) eye centres, nose tip, mouth corners from 68 landmarks (iBUG indexing), matching TEMPLATE."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def similarity(src, dst):
    """2x3 least-squares similarity (rotation, uniform scale, translation) mapping src to dst (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    # A reflection is never a valid face pose: force det(R) = +1.
    e = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ e @ vt
    scale = (sig * np.diag(e)).sum() / (s ** 2).sum(1).mean()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def face_transform(image_bgr, size=224, upsample=1, name='image', no_face='error', landmarks_path=None):
    """2x3 similarity taking the image's face onto the canonical `size` x `size` template, or a centre crop."""
    try:
        lm = detect_landmarks(image_bgr, upsample, name, landmarks_path)
        return similarity(anchor_points(lm), TEMPLATE * size)
    except FaceNotFound:
        if no_face != 'center':
            raise
        log.warning('%s: no face found, using a centre crop (--no-face center)', name)
        h, w = image_bgr.shape[:2]
        side = min(h, w)
        k = size / side
        return np.array([[k, 0, -k * (w - side) / 2], [0, k, -k * (h - side) / 2]])


def stable_mask(size):
    """(size, size) uint8 mask of the aligned face's STABLE_BOX: the part that follows the skull."""
    (x0, y0), (x1, y1) = (np.asarray(STABLE_BOX) * size).round().astype(int)
    mask = np.zeros((size, size), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def head_motion(ref_gray, gray, mask, init=None, iterations=HEAD_ITERATIONS):
    """2x3 similarity W with gray(W x) ~ ref_gray(x): the rigid motion of the head between two aligned frames,
    the least-squares similarity of the Farneback flow over the mask's pixels, refined `iterations` times."""
    import flow
    w = np.eye(2, 3) if init is None else np.asarray(init, np.float64)
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    for _ in range(iterations):
        moved = cv2.warpAffine(gray, w, gray.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        f = flow.optical_flow(ref_gray, moved, method='farneback')
        w = compose(w, similarity(pts, pts + f[ys, xs]))
    return w


def compose(m, s):
    """2x3 affine m . s: s applied first."""
    out = m[:, :2] @ s
    out[:, 2] += m[:, 2]
    return out


def align_clip(frames_bgr, size=224, ref=0, upsample=1, name='clip', no_face='error', landmarks_path=None,
               stabilise=False):
    """(T, size, size, 3) uint8 clip warped by the one similarity estimated on frame `ref` (the onset); with
    stabilise, each frame's rigid head motion relative to frame `ref` (head_motion over the aligned face's
    STABLE_BOX) is removed in the same warp. With ref 0 the frames may be an iterator, read one at a time."""
    frames = list(frames_bgr) if ref else frames_bgr
    out, m, first, mask, ref_gray, w = [], None, None, None, None, None
    for i, f in enumerate(frames):
        if first is None:
            first = f.shape[:2]
        elif f.shape[:2] != first:
            raise FrameError(f'{name}: the clip\'s frames differ in size ({first[1]}x{first[0]}, '
                             f'{f.shape[1]}x{f.shape[0]} at frame {i}); one transform per clip needs frames of one '
                             'size: check the clip\'s folder')
        f = f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
        if m is None:
            r = frames[ref] if ref else f
            m = face_transform(r, size, upsample, name, no_face, landmarks_path)
            if stabilise:
                mask = stable_mask(size)
                ref_gray = cv2.cvtColor(_warp(r if r.ndim == 3 else cv2.cvtColor(r, cv2.COLOR_GRAY2BGR), m, size),
                                        cv2.COLOR_BGR2GRAY)
        a = _warp(f, m, size)
        if mask is not None and i != ref:
            # The previous frame's motion starts the estimate: heads move little from one frame to the next.
            w = head_motion(ref_gray, cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), mask, w)
            a = _warp(f, compose(cv2.invertAffineTransform(w), m), size)
        out.append(a)
    if not out:
        raise ValueError(f'{name}: empty clip, nothing to align')
    return np.stack(out)


def _warp(frame, m, size):
    # Bilinear warp with replicated borders: a black border would be a strong, fake edge in the flow.
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def truncated(path, data):
    """Why an image file's bytes end early (JPEG without its end marker, PNG without IEND, BMP shorter than its
    header says), or '' when they look whole. OpenCV decodes such files silently, the missing rows grey."""
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-64:]:
        return 'the JPEG data ends without its end-of-image marker'
    if data[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in data[-16:]:
        return 'the PNG data ends without its IEND chunk'
    if data[:2] == b'BM' and len(data) >= 6 and len(data) < int.from_bytes(data[2:6], 'little'):
        return f'the BMP file has {len(data)} of the {int.from_bytes(data[2:6], "little")} bytes its header gives'
    return ''


def read_frames(paths):
    """List of BGR uint8 frames read from `paths`; an unreadable or cut-short file is an error naming it."""
    frames = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError:
            data = b''
        why = truncated(p, data) if data else ''
        if why:
            raise FrameError(f'{p}: {why} (a truncated file; decoders fill the missing rows with grey or fail); '
                             'copy the frame again from the release')
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            raise FileNotFoundError(f'{p}: cannot read this frame (missing, empty or not an image); '
                                    'copy the frame again from the release')
        frames.append(img)
    return frames
