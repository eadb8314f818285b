"""Face alignment (paper §III.A): dlib HOG+SVM detector, 68 landmarks, one similarity transform per clip.

The detector is dlib's frontal face detector (HOG features + linear SVM) and the landmarks come from dlib's
ensemble-of-regression-trees predictor (Kazemi & Sullivan 2014), whose 68-point model ships with the
`face-recognition-models` package. A clip is warped with ONE transform, estimated on its onset frame, so that
alignment itself adds no motion between onset and apex: the flow then sees only the face's own movement.

To follow it: `align_clip` -> `face_transform` (landmarks -> five anchor points) -> `similarity`.
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


class FaceNotFound(ValueError):
    """No face (or no usable landmarks) in an image; the message names the file."""


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
    if p.is_dir():
        raise FileNotFoundError(f'{p}: a folder, not the dlib 68-point landmark model; pass the .dat file itself '
                                'with --landmarks PATH')
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


def warp(frame, m, size):
    """The size x size crop of a frame under the 2x3 transform m: bilinear, borders replicated (a black border
    would be a strong, fake edge in the flow)."""
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_clip(frames_bgr, size=224, upsample=1, name='clip', no_face='error', landmarks_path=None):
    """((T, size, size, 3) uint8 clip, 2x3 similarity): every frame warped by the one similarity estimated on the
    first (the onset). The frames (BGR, of one size) may be an iterator, read one at a time."""
    out, m = [], None
    for f in frames_bgr:
        if m is None:
            m = face_transform(f, size, upsample, name, no_face, landmarks_path)
        out.append(warp(f, m, size))
    if not out:
        raise ValueError(f'{name}: empty clip, nothing to align')
    return np.stack(out), m
