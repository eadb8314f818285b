"""One sample's network input, the chain of paper §III.A and §III.C, with every step's result:

    frames --align--> aligned clip --(spot the apex)--> onset, apex --EMR--> the apex the flow sees
           --TV-L1--> onset->apex flow --encode--> (3, size, size) u, v, strain

`run` does it for a sample of a dataset (its frames read by the caller's `read`), `from_clip` for a clip already
aligned from its onset (`mer.py predict`'s video, read as a stream). Both return `Steps`; the LOSO run takes
`.x`, the figure and the fidelity study the images, `predict` all of them. `find_apex`, at the end, spots the apex
where none is annotated (beyond the paper, off in its protocol).
"""
import dataclasses
from typing import NamedTuple

import cv2
import numpy as np

import align
import emr
import evm
import flow
import stabilise
from config import Sample


class Steps(NamedTuple):
    sample: Sample       # its apex spotted where cfg.apex is 'spot'
    transform: np.ndarray  # 2x3 similarity taking the onset frame to the aligned face
    clip: np.ndarray     # (T, align_size, align_size, 3) uint8: the aligned frames EMR needs, onset first
    onset: np.ndarray    # the aligned onset frame
    apex: np.ndarray     # the aligned apex frame (for a macro sample under EMR: the onset-apex middle frame)
    flow_to: np.ndarray  # the frame the flow goes to from the onset: the apex, magnified for a micro sample by EMR
    flow: np.ndarray     # (align_size, align_size, 2) float32 onset -> flow_to
    x: np.ndarray        # (3, size, size) float32 network input: u, v, strain


def needed(s, cfg):
    """(indices into s.frames the sample needs, position of its apex among them): EMR's two roles (§III.C)."""
    # MIT's magnifier (Config.mit_evm) whose temporal band is not the change since the onset filters the whole rise.
    if cfg.emr and s.domain == 'micro' and cfg.mit_evm() and not evm.onset_change(cfg.evm_r1, cfg.evm_r2):
        return list(range(s.onset, s.apex + 1)), s.apex - s.onset
    apex = emr.middle_frame(s.onset, s.apex) if cfg.emr and s.domain == 'macro' else s.apex
    return [s.onset, apex], 1


def align_frames(frames, cfg, name):
    """((T, align_size, align_size, 3) uint8 clip, 2x3 similarity): frames warped by the onset's similarity
    (§III.A); with cfg.stabilise each frame's rigid head motion relative to the onset removed too."""
    fn = stabilise.align_clip if cfg.stabilise else align.align_clip
    return fn(frames, cfg.align_size, name=name, no_face=cfg.no_face, landmarks_path=cfg.landmarks or None)


def spotted(full, s):
    """The sample with its apex spotted (`find_apex`) on `full`, its aligned clip from the onset to its last
    frame."""
    return dataclasses.replace(s, apex=s.onset + find_apex(full, s.fps))


def run(s, cfg, read):
    """Every step of one sample, `read(paths)` giving the BGR frames of some of s.frames (data/frames.py's
    read_frames): aligned, its apex spotted under cfg.apex 'spot', EMR, flow."""
    if cfg.apex == 'spot':        # the whole clip from the onset is aligned, for the spotter to choose from
        full, m = align_frames(read(s.frames[s.onset:]), cfg, str(s.frames[s.onset]))
        return from_clip(full, m, spotted(full, s), cfg)
    idx, _ = needed(s, cfg)
    return from_frames(*align_frames(read([s.frames[i] for i in idx]), cfg, str(s.frames[idx[0]])), s, cfg)


def from_clip(full, m, s, cfg):
    """Every step of a sample whose clip, aligned from its onset on by the similarity m, is `full` (its apex
    within it)."""
    idx, _ = needed(s, cfg)
    return from_frames(full[[i - s.onset for i in idx]], m, s, cfg)


def from_frames(clip, m, s, cfg):
    """EMR, flow and the network input of a sample from the aligned frames `needed` names."""
    _, apex = needed(s, cfg)
    to = emr_apex(clip, apex, scale(m), s, cfg)
    f = flow.optical_flow(*(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) for img in (clip[0], to)), method=cfg.flow)
    return Steps(s, m, clip, clip[0], clip[apex], to, f, flow.encode(f, cfg.size))


def emr_apex(clip, apex, scale, s, cfg):
    """The apex image the flow is taken to: a micro sample's apex magnified under EMR (§III.A), else the apex;
    EMR's equation (emr.magnify), or MIT's magnifier (evm.py) where the settings ask for it (Config.mit_evm)."""
    if not (cfg.emr and s.domain == 'micro'):
        return clip[apex]
    if cfg.mit_evm():
        return evm.magnified_apex(clip, 0, apex, **cfg.evm())
    return emr.magnify(clip[0], clip[apex], cfg.evm_alpha, cfg.evm_chroma, scale, cfg.emr_bands)


def scale(m):
    """Aligned pixels per pixel of the frame of the 2x3 similarity m."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(m)[:, :2]))))


def constants():
    """The pipeline's fixed constants, beside the settings: flow parameters, the input's normalisation, the
    alignment template, head-motion removal's and the spotter's parameters (the feature cache's key and model.pt
    hold them)."""
    return dict(tvl1=flow.TVL1_DEFAULTS, farneback=flow.FARNEBACK_DEFAULTS, encode=flow.ENCODE,
                template=align.TEMPLATE, stable_box=stabilise.STABLE_BOX,
                head_iterations=stabilise.HEAD_ITERATIONS, spot=SPOT)


# ----------------------------------------------------------------------------------------------- apex spotting
# Where no apex is annotated (SMIC-HS; a user's own clip; --apex spot), the apex is the frame whose face differs
# most from the onset's, in the spirit of Liong et al. 2018 ("Less is more", which spots the apex by the largest
# difference of LBP features from the onset frame). Cheaply: every aligned frame is made grey, shrunk to
# SPOT['size'] pixels (INTER_AREA averages, so the shrink does not alias) and blurred; its motion is the mean
# magnitude of the Farneback flow from the onset, less its median (what alignment and head-motion removal left of
# the head's own translation: on the demo set a drift of a third of a pixel otherwise outweighs a local
# expression), over the face without its border (a border that the alignment replicated carries no expression);
# the motion curve is smoothed by a moving average of SPOT['window_s'] seconds so that a single noisy frame cannot
# win; the apex is its argmax (the first one on ties).
# size: side of the shrunk face; border: fraction of the side left out on each edge; blur: Gaussian sigma in
# pixels of the shrunk face; window_s: the moving average's length in seconds (at least one frame).
SPOT = dict(size=64, border=0.125, blur=1.0, window_s=0.025)


def find_apex(clip, fps, **settings):
    """Index of the apex in an aligned clip that starts at its onset: argmax of the smoothed motion (Liong 2018)."""
    if len(clip) < 2:
        raise ValueError(f'a clip of {len(clip)} frame cannot be spotted: it needs an onset and a later frame')
    s = dict(SPOT, **settings)
    m = smooth(apex_motion(clip, s['size'], s['border'], s['blur']), apex_window(fps, s['window_s']))
    m[0] = -1.0            # the onset itself is never its own apex
    return int(np.argmax(m))


def apex_motion(clip, size=SPOT['size'], border=SPOT['border'], blur=SPOT['blur']):
    """(T,) float: mean |Farneback flow - its median| from frame 0 (the onset) to each frame, in pixels of the
    shrunk face."""
    ref = _small(clip[0], size, blur)
    b = int(round(border * size))
    out = np.zeros(len(clip))
    for t in range(1, len(clip)):
        f = flow.optical_flow(ref, _small(clip[t], size, blur), method='farneback')[b:size - b, b:size - b]
        f = f.reshape(-1, 2)
        out[t] = np.linalg.norm(f - np.median(f, 0), axis=1).mean()
    return out


def _small(frame, size, blur):
    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    g = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), blur) if blur else g


def apex_window(fps, window_s=SPOT['window_s']):
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
