"""Apex spotting: the frame of greatest facial motion relative to the onset, on the aligned face.

Where no apex is annotated (SMIC-HS; a user's own clip), the apex is taken as the frame whose face differs most
from the onset's, in the spirit of Liong et al. 2018 ("Less is more", which spots the apex by the largest
difference of LBP features from the onset frame). Cheaply: every aligned frame is made grey, shrunk to SPOT['size']
pixels (INTER_AREA averages, so the shrink does not alias) and blurred; its motion is the mean magnitude of the
Farneback flow from the onset, less its median (what alignment and head-motion removal left of the head's own
translation: on the demo set a drift of a third of a pixel otherwise outweighs a local expression), over the face
without its border (a border that the alignment replicated carries no expression); the motion curve is smoothed
by a moving average of SPOT['window_s'] seconds so that a single noisy frame cannot win; the apex is its argmax
(the first one on ties).
"""
import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

# size: side of the shrunk face; border: fraction of the side left out on each edge; blur: Gaussian sigma in
# pixels of the shrunk face; window_s: the moving average's length in seconds (at least one frame).
SPOT = dict(size=64, border=0.125, blur=1.0, window_s=0.025)


def _small(frame, size, blur):
    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    g = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), blur) if blur else g


def motion(clip, size=SPOT['size'], border=SPOT['border'], blur=SPOT['blur']):
    """(T,) float: mean |Farneback flow - its median| from frame 0 (the onset) to each frame, in pixels of the
    shrunk face."""
    import flow
    ref = _small(clip[0], size, blur)
    b = int(round(border * size))
    out = np.zeros(len(clip))
    for t in range(1, len(clip)):
        f = flow.optical_flow(ref, _small(clip[t], size, blur), method='farneback')[b:size - b, b:size - b]
        f = f.reshape(-1, 2)
        out[t] = np.linalg.norm(f - np.median(f, 0), axis=1).mean()
    return out


def window(fps, window_s=SPOT['window_s']):
    """Length in frames (odd, at least 1) of the moving average at `fps` frames per second."""
    n = max(1, int(round(fps * window_s)))
    return n + 1 - n % 2


def smooth(x, n):
    """x smoothed by a centred moving average of n frames, the ends padded with their own values."""
    x = np.asarray(x, np.float64)
    if n <= 1 or len(x) < 2:
        return x
    pad = np.pad(x, n // 2, mode='edge')
    return np.convolve(pad, np.ones(n) / n, mode='valid')


def apex(clip, fps, **settings):
    """Index of the apex in an aligned clip that starts at its onset: argmax of the smoothed motion (Liong 2018)."""
    if len(clip) < 2:
        raise ValueError(f'a clip of {len(clip)} frame cannot be spotted: it needs an onset and a later frame')
    s = dict(SPOT, **settings)
    m = smooth(motion(clip, s['size'], s['border'], s['blur']), window(fps, s['window_s']))
    m[0] = -1.0            # the onset itself is never its own apex
    return int(np.argmax(m))
