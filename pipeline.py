"""One sample's network input, the chain of paper §III.A and §III.C, with every step's result:

    frames --align--> aligned clip --(spot the apex)--> onset, apex --EMR--> the apex the flow sees
           --TV-L1--> onset->apex flow --encode--> (3, size, size) u, v, strain

`run` does it for a sample of a dataset (its frames read by the caller's `read`), `from_clip` for a clip already
aligned from its onset (`mer.py predict`'s video, read as a stream). Both return `Steps`; the LOSO run takes
`.x`, the figure and the fidelity study the images, `predict` all of them.
"""
import dataclasses
from typing import NamedTuple

import cv2
import numpy as np

import align
import emr
import evm
import flow
import spot
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
    """The sample with its apex spotted (spot.py) on `full`, its aligned clip from the onset to its last frame."""
    return dataclasses.replace(s, apex=s.onset + spot.apex(full, s.fps))


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
                head_iterations=stabilise.HEAD_ITERATIONS, spot=spot.SPOT)
