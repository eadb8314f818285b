"""MIT's Eulerian Video Magnification (Wu et al., SIGGRAPH 2012) as its reference code computes it, the magnifier
the authors reused for EMR; reached through the EVM settings (config.py), e.g. MIT's published settings
`--evm-alpha 10 --evm-lambda-c 16 --evm-r1 0.4 --evm-r2 0.05`. EMR's own magnification is emr.magnify.

Follows amplify_spatial_lpyr_temporal_iir.m: each frame goes to YIQ (MATLAB's rgb2ntsc) and a Laplacian pyramid
(emr.pyramid); every pyramid coefficient is band-passed in time by the difference of two first-order low-passes
(r1, r2); band l is multiplied by the gain of `level_gains` (the reference's Figure-6 attenuation by lambda_c);
I and Q are scaled by `chrom_attenuation`; the collapsed band is added to the frame.

Where this differs from the reference, on purpose:
- Pyramid: cv2.pyrDown/pyrUp (5-tap binomial [1 4 6 4 1]/16, BORDER_REFLECT_101, samples at even indices,
  ceil(n/2) sizes) instead of buildLpyr's binom5*sqrt(2) with 'reflect1' edges: the same filter, border rule,
  sampling grid and sizes, so the bands match up to buildLpyr's constant sqrt(2)-per-axis scaling, which
  reconLpyr undoes. Level count as buildLpyr('auto'): 1 + maxPyrHt(size, 5) (emr.levels).
- Every frame is output (the reference drops the last 10) and the first frame goes through the same path
  (its band is zero because the filters start at it), so the output has the input's shape.
- Two limits the reference refuses are allowed: r1 = 1, r2 = 0 makes the band the change since the first frame
  (`onset_change`), and lambda_c = 0 gives alpha to every band but the residual; with both, the last frame is
  exactly emr.magnify of the first and the last.
Why EMR does not use MIT's settings, measured against the demo set's known motion (tools/fidelity.py, BENCHMARKS.md):
the IIR band at the apex holds only part of the onset->apex change, and a part that depends on the rise's length
in frames (0.65 for 8 frames, 0.50 for 26, 0.23 for 65: so on fps and clip length), while alpha = 10 on 0.5-2 px
micro motions is far past the linear approximation's bound (1 + alpha) delta < lambda / 8, and the attenuated fine
bands then move less than the coarse ones: the magnified flow came out 2-3x larger instead of 11x, at cosine 0.84
to the true motion.
"""
import math

import cv2
import numpy as np

import emr
from emr import BGR2YIQ, collapse, pyramid, to_bgr


def level_gains(h, w, alpha, lambda_c, n=None, *, exaggeration=2.0):
    """Per-level amplification, finest band first (Wu et al. 2012 Fig. 6 as coded in amplify_spatial_lpyr_*);
    lambda_c = 0: alpha on every band but the residual (no attenuation)."""
    n = emr.levels(h, w) if n is None else n
    if lambda_c == 0:
        return [float(alpha)] * (n - 1) + [0.0]
    delta = lambda_c / 8 / (1 + alpha)
    # The reference starts at the residual (coarsest) with lambda = diagonal/3 and halves it per finer band.
    lam = math.hypot(h, w) / 3
    gains = [0.0] * n
    for l in range(n - 1, -1, -1):
        if 0 < l < n - 1:  # the finest band (noise) and the residual (illumination) are never amplified
            gains[l] = float(min(alpha, (lam / delta / 8 - 1) * exaggeration))
        lam /= 2
    return gains


def lowpass_pair(r1, r2):
    """((b, a) of the high-cut low-pass, (b, a) of the low-cut one): the band is the first minus the second."""
    if not 0 <= r2 < r1 <= 1:
        raise ValueError(f'iir needs 0 <= r2 < r1 <= 1, got r1={r1}, r2={r2}')
    # y[n] = r x[n] + (1 - r) y[n-1]: r = 1 passes x through, r = 0 holds the first frame
    return (np.array([r1, 0.0]), np.array([1.0, r1 - 1])), (np.array([r2, 0.0]), np.array([1.0, r2 - 1]))


def lowpass_step(y, x, b, a):
    """Update in place and return y = b0 x - a1 y: one step of a first-order low-pass (a0 = 1, b1 = 0)."""
    y *= -a[1]
    y += b[0] * x
    return y


def magnify(clip_bgr_u8, *, alpha=10, lambda_c=16, r1=0.4, r2=0.05, chrom_attenuation=0.1, levels=None):
    """Motion-magnified clip, same shape and dtype (amplify_spatial_lpyr_temporal_iir; its IIR band is set in
    frames, whatever the frame rate)."""
    clip = np.asarray(clip_bgr_u8)
    if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[3] != 3:
        raise ValueError(f'magnify wants a (T, H, W, 3) uint8 BGR clip, got {clip.shape} {clip.dtype}')
    t, h, w = clip.shape[:3]
    top = emr.levels(h, w)
    n = top if levels is None else int(levels)
    if not 1 <= n <= top:
        raise ValueError(f'levels must be in 1..{top} for {h}x{w} frames, got {levels}')
    filt_hi, filt_lo = lowpass_pair(r1, r2)
    gains = level_gains(h, w, alpha, lambda_c, n)
    active = [l for l, g in enumerate(gains) if g != 0]
    chroma = np.array([1.0, chrom_attenuation, chrom_attenuation], np.float32)
    sizes = [(h, w)]
    for _ in range(n - 1):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    bands = [np.zeros(s + (3,), np.float32) for s in sizes]       # bands never amplified stay zero
    out = np.empty_like(clip)
    # Causal filters: only per-level state (two low-passes) is kept.
    lp_hi = lp_lo = None
    for i in range(t):
        yiq = cv2.transform(clip[i].astype(np.float32), BGR2YIQ)
        pyr = pyramid(yiq, n)
        cur = [pyr[l] for l in active]
        if lp_hi is None:  # the reference starts both low-passes at the first frame, so its band is zero
            lp_hi, lp_lo = [c.copy() for c in cur], [c.copy() for c in cur]
        else:
            for k in range(len(active)):
                lowpass_step(lp_hi[k], cur[k], *filt_hi)
                lowpass_step(lp_lo[k], cur[k], *filt_lo)
        for k, l in enumerate(active):
            bands[l] = (lp_hi[k] - lp_lo[k]) * np.float32(gains[l])
        out[i] = to_bgr(yiq + collapse(bands) * chroma)
    return out



def onset_change(r1=0.4, r2=0.05, **_):
    """True when the band is the change since the first frame (r1 = 1, r2 = 0): then a frame's magnification
    depends on that frame and the first only, whatever lies between them."""
    return r1 == 1 and r2 == 0


def magnified_apex(clip, onset, apex, **kw):
    """Apex frame of the clip magnified from onset through apex; kw go to magnify."""
    clip = np.asarray(clip)
    if not 0 <= onset <= apex < len(clip):
        raise ValueError(f'need 0 <= onset <= apex < {len(clip)} frames, got onset={onset}, apex={apex}')
    frames = clip[[onset, apex]] if onset_change(**kw) else clip[onset:apex + 1]
    return magnify(frames, **kw)[-1]
