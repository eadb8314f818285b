"""Eulerian Video Magnification for EMR (paper §III.A), after MIT's reference code (Wu et al., SIGGRAPH 2012).

Follows amplify_spatial_lpyr_temporal_{iir,butter,ideal}.m: each frame goes to YIQ (MATLAB's rgb2ntsc) and a
Laplacian pyramid; every pyramid coefficient is band-passed in time; band l is multiplied by the gain of
`level_gains` (the reference's Figure-6 attenuation); I and Q are scaled by `chrom_attenuation`; the collapsed
band is added to the frame. Defaults alpha=10, lambda_c=16, r1=0.4, r2=0.05, chroma 0.1 are the reference's
baby.mp4 settings, which micro-expression work (and the authors) reuse.

Where this differs from the reference, on purpose:
- Pyramid: cv2.pyrDown/pyrUp (5-tap binomial [1 4 6 4 1]/16, BORDER_REFLECT_101, samples at even indices,
  ceil(n/2) sizes) instead of buildLpyr's binom5*sqrt(2) with 'reflect1' edges: the same filter, border rule,
  sampling grid and sizes, so the bands match up to buildLpyr's constant sqrt(2)-per-axis scaling, which
  reconLpyr undoes. Level count as buildLpyr('auto'): 1 + maxPyrHt(size, 5) (see `max_levels`).
- 'butter' normalises the cut-offs to Nyquist, butter(1, f/(fps/2)); the reference passes f/fps to MATLAB's
  butter (Nyquist-normalised), so its real cut-offs are half the numbers it is given.
- 'ideal' keeps both halves of the spectrum; the reference zeroes the negative-frequency bins and takes
  real(ifft), which halves the band's amplitude (its ideal filter acts like alpha/2 here).
- Every frame is output (the reference drops the last 10) and the first frame goes through the same path
  (its band is zero because the filters start at it), so the output has the input's shape.
- Two limits the reference refuses are allowed, and EMR uses both by default (config.py): r1 = 1, r2 = 0 makes
  the IIR band the change since the first frame (`onset_change`), and lambda_c = 0 gives alpha to every band but
  the residual. Why, measured against the demo set's known motion (fidelity.py, BENCHMARKS.md): EMR magnifies one
  frame, the apex, relative to the onset. The reference's band at the apex holds only part of that change, and a
  part that depends on the rise's length in frames (0.65 for 8 frames, 0.50 for 26, 0.23 for 65: so on fps and
  clip length), while alpha = 10 on 0.5-2 px micro motions is far past the linear approximation's bound
  (1 + alpha) delta < lambda / 8, and the attenuated fine bands then move less than the coarse ones. The
  magnified flow came out 2-3x larger instead of 11x, at cosine 0.84 to the true motion. With the change since
  onset, no attenuation and alpha = 1 the flow is 2x larger (0.9-0.95 of it) at cosine 0.96; alpha = 2 already
  falls to 0.65-0.8 of its factor.
"""
import math

import cv2
import numpy as np
import scipy.fft
import scipy.signal

# MATLAB's ntsc2rgb matrix; rgb2ntsc is its inverse, so the round trip is exact up to float rounding.
_YIQ2RGB = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
_RGB2YIQ = np.linalg.inv(_YIQ2RGB)
# Our frames are BGR: reorder the RGB columns of the forward matrix and the RGB rows of the inverse.
BGR2YIQ = _RGB2YIQ[:, ::-1].astype(np.float32)
YIQ2BGR = _YIQ2RGB[::-1, :].astype(np.float32)


def max_levels(h, w, filt_size=5):
    """Pyramid height of buildLpyr(im, 'auto'): 1 + maxPyrHt, the number of halvings with both sides >= 5."""
    n = 1
    while h >= filt_size and w >= filt_size:
        n, h, w = n + 1, h // 2, w // 2
    return n


def level_gains(h, w, alpha, lambda_c, levels=None, *, exaggeration=2.0):
    """Per-level amplification, finest band first (Wu et al. 2012 Fig. 6 as coded in amplify_spatial_lpyr_*);
    lambda_c = 0: alpha on every band but the residual (no attenuation)."""
    n = max_levels(h, w) if levels is None else levels
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


def build_lpyr(img, levels):
    """Laplacian pyramid of a float32 (H, W[, C]) image, finest band first, residual last (buildLpyr)."""
    bands, g = [], img
    for _ in range(levels - 1):
        down = cv2.pyrDown(g)
        bands.append(g - cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0])))
        g = down
    bands.append(g)
    return bands


def recon_lpyr(bands):
    """Image collapsed from a Laplacian pyramid, finest band first (reconLpyr)."""
    img = bands[-1]
    for band in reversed(bands[:-1]):
        img = cv2.pyrUp(img, dstsize=(band.shape[1], band.shape[0])) + band
    return img


def lowpass_pair(temporal, fps, *, r1=0.4, r2=0.05, fl=None, fh=None):
    """((b, a) of the high-cut low-pass, (b, a) of the low-cut one): band = first - second (reference iir/butter)."""
    if temporal == 'iir':
        if not 0 <= r2 < r1 <= 1:
            raise ValueError(f'iir needs 0 <= r2 < r1 <= 1, got r1={r1}, r2={r2}')
        # y[n] = r x[n] + (1 - r) y[n-1]: r = 1 passes x through, r = 0 holds the first frame
        return (np.array([r1, 0.0]), np.array([1.0, r1 - 1])), (np.array([r2, 0.0]), np.array([1.0, r2 - 1]))
    if temporal == 'butter':
        _check_band(fps, fl, fh)
        return scipy.signal.butter(1, fh / (fps / 2)), scipy.signal.butter(1, fl / (fps / 2))
    raise ValueError(f"lowpass_pair: temporal must be 'iir' or 'butter', got {temporal!r}")


def lowpass_step(y, x, x_prev, b, a):
    """Update in place and return y = b0 x + b1 x_prev - a1 y: one step of a first-order low-pass (a0 = 1)."""
    y *= -a[1]
    y += b[0] * x
    if b[1]:
        y += b[1] * x_prev
    return y


def ideal_bandpass(stack, fps, fl, fh, *, chunk_bytes=64 << 20):
    """Band-pass `stack` (T, ...) float32 in place along time, keeping [fl, fh] Hz (reference ideal_bandpassing)."""
    _check_band(fps, fl, fh)
    if stack.ndim == 1:
        ideal_bandpass(stack[:, None], fps, fl, fh, chunk_bytes=chunk_bytes)
        return stack
    t = stack.shape[0]
    freqs = scipy.fft.rfftfreq(t, d=1.0 / fps)
    keep = ((freqs >= fl) & (freqs <= fh)).astype(np.float32).reshape((-1,) + (1,) * (stack.ndim - 1))
    # Chunks of rows bound the complex64 spectrum to ~chunk_bytes instead of a copy of the whole stack;
    # scipy.fft keeps float32 as complex64 and, unlike numpy.fft on a strided slice, makes no extra copies.
    row_bytes = max(1, stack[:, :1].nbytes)
    step = max(1, chunk_bytes // row_bytes)
    for r in range(0, stack.shape[1], step):
        spec = scipy.fft.rfft(stack[:, r:r + step], axis=0)
        spec *= keep
        stack[:, r:r + step] = scipy.fft.irfft(spec, n=t, axis=0)
    return stack


def _check_band(fps, fl, fh):
    if fl is None or fh is None:
        raise ValueError('butter and ideal filters need fl and fh in Hz (e.g. fl=0.4, fh=3)')
    if not 0 < fl < fh < fps / 2:
        raise ValueError(f'need 0 < fl < fh < fps/2 = {fps / 2:g} Hz, got fl={fl}, fh={fh}')


def _render(yiq, bands, chroma):
    """BGR uint8 frame plus the collapsed amplified band, I/Q attenuated."""
    out = yiq + recon_lpyr(bands) * chroma
    return np.clip(np.rint(cv2.transform(out, YIQ2BGR)), 0, 255).astype(np.uint8)


def magnify(clip_bgr_u8, fps, *, alpha=10, lambda_c=16, r1=0.4, r2=0.05, chrom_attenuation=0.1,
            temporal='iir', fl=None, fh=None, levels=None):
    """Motion-magnified clip, same shape and dtype (Wu et al. 2012, amplify_spatial_lpyr_temporal_*; EMR §III.A)."""
    clip = np.asarray(clip_bgr_u8)
    if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[3] != 3:
        raise ValueError(f'magnify wants a (T, H, W, 3) uint8 BGR clip, got {clip.shape} {clip.dtype}')
    if not fps > 0:
        raise ValueError(f'fps must be positive, got {fps}')
    if temporal not in ('iir', 'butter', 'ideal'):
        raise ValueError(f"temporal must be 'iir', 'butter' or 'ideal', got {temporal!r}")
    t, h, w = clip.shape[:3]
    top = max_levels(h, w)
    n = top if levels is None else int(levels)
    if not 1 <= n <= top:
        raise ValueError(f'levels must be in 1..{top} for {h}x{w} frames, got {levels}')
    if temporal == 'ideal':
        _check_band(fps, fl, fh)
    else:
        filt_hi, filt_lo = lowpass_pair(temporal, fps, r1=r1, r2=r2, fl=fl, fh=fh)
    gains = level_gains(h, w, alpha, lambda_c, levels=n)
    active = [l for l, g in enumerate(gains) if g != 0]
    chroma = np.array([1.0, chrom_attenuation, chrom_attenuation], np.float32)

    def yiq_of(i):
        return cv2.transform(clip[i].astype(np.float32), BGR2YIQ)

    # Bands that are never amplified stay zero; allocated once and only read.
    sizes = [(h, w)]
    for _ in range(n - 1):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    bands = [np.zeros(s + (3,), np.float32) for s in sizes]
    out = np.empty_like(clip)

    if temporal == 'ideal':
        # Non-causal: one float32 (T, h_l, w_l, 3) stack per amplified level, about a third of the clip.
        stacks = {l: np.empty((t,) + sizes[l] + (3,), np.float32) for l in active}
        for i in range(t):
            pyr = build_lpyr(yiq_of(i), n)
            for l in active:
                stacks[l][i] = pyr[l]
        for l in active:
            ideal_bandpass(stacks[l], fps, fl, fh)
            stacks[l] *= gains[l]
        for i in range(t):
            for l in active:
                bands[l] = stacks[l][i]
            out[i] = _render(yiq_of(i), bands, chroma)
        return out

    # Causal filters: only per-level state (two low-passes and the previous frame's pyramid) is kept.
    lp_hi = lp_lo = prev = None
    for i in range(t):
        yiq = yiq_of(i)
        pyr = build_lpyr(yiq, n)
        cur = [pyr[l] for l in active]
        if lp_hi is None:  # the reference starts both low-passes at the first frame, so its band is zero
            lp_hi, lp_lo = [c.copy() for c in cur], [c.copy() for c in cur]
        else:
            for k in range(len(active)):
                lowpass_step(lp_hi[k], cur[k], prev[k], *filt_hi)
                lowpass_step(lp_lo[k], cur[k], prev[k], *filt_lo)
        prev = cur
        for k, l in enumerate(active):
            bands[l] = (lp_hi[k] - lp_lo[k]) * np.float32(gains[l])
        out[i] = _render(yiq, bands, chroma)
    return out


def onset_change(temporal='iir', r1=0.4, r2=0.05, **_):
    """True when the temporal band is the change since the first frame (IIR with r1 = 1, r2 = 0): then a frame's
    magnification depends on that frame and the first only, whatever lies between them."""
    return temporal == 'iir' and r1 == 1 and r2 == 0


def magnified_apex(clip, onset, apex, fps, **kw):
    """Apex frame of the clip magnified from onset through apex (EMR for micro samples, §III.A); kw go to magnify."""
    clip = np.asarray(clip)
    if not 0 <= onset <= apex < len(clip):
        raise ValueError(f'need 0 <= onset <= apex < {len(clip)} frames, got onset={onset}, apex={apex}')
    frames = clip[[onset, apex]] if onset_change(**kw) else clip[onset:apex + 1]
    return magnify(frames, fps, **kw)[-1]


def middle_frame_index(onset, apex):
    """Index of the frame halfway from onset to apex: EMR's 'reduction' of a macro sample's apex (§III.A)."""
    if apex < onset:
        raise ValueError(f'apex ({apex}) precedes onset ({onset})')
    return (onset + apex) // 2
