"""EMR, Eulerian Motion Magnification and Reduction (paper §III.A, §III.C): the apex image the flow is taken to.

A micro-expression moves too little for the flow to read well, a macro-expression too much for the network to
share what it learns with micro ones (§III.C). So:
    micro   the apex is magnified: apex + alpha x (apex - onset) in every band of a Laplacian pyramid but the
            residual, each band's change cored below its noise level (`magnify`), so the flow from the onset is
            about (1 + alpha) times the expression's motion;
    macro   the apex is replaced by the frame halfway from onset to apex (`middle_frame`).

`magnify` is Eulerian Video Magnification (Wu et al., SIGGRAPH 2012) at the one frame EMR needs, with the
settings measured faithful to known motion (BENCHMARKS.md, tools/fidelity.py): a linear EVM magnifies the band-passed
change of each pyramid level; with the band taken as the apex's change since the onset, the magnified apex depends
on those two frames alone, whatever the frame rate or the clip's length. Like MIT's code it works in YIQ (I and Q
change by `chroma` of the luma's gain) and leaves the residual, the illumination, alone. Where alignment enlarged
the face (`scale`, aligned pixels per pixel of the frame, above 1), the finest bands hold the camera's noise,
interpolated, rather than the face, and magnified, it is read by the flow as motion. `bands` chooses:
'cored' (the default) magnifies every band but the residual after coring each band's change below its noise level,
as phase-based magnification does (`core`); 'all' magnifies every band but the residual, as Wu et al. do; 'camera'
leaves alone the bands finer than the frame's pixels. docs/emr.md compares them on the hard demo, whose near-floor
motions make the choice matter. MIT's own
magnifier, with its IIR band and its spatial attenuation, is evm.py, reached through the EVM settings.
"""
import cv2
import numpy as np

# MATLAB's ntsc2rgb matrix; rgb2ntsc is its inverse, so the round trip is exact up to float rounding.
_YIQ2RGB = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
_RGB2YIQ = np.linalg.inv(_YIQ2RGB)
# Our frames are BGR: reorder the RGB columns of the forward matrix and the RGB rows of the inverse.
BGR2YIQ = _RGB2YIQ[:, ::-1].astype(np.float32)
YIQ2BGR = _YIQ2RGB[::-1, :].astype(np.float32)


BANDS = ('cored', 'all', 'camera')
CORE = 1.0     # 'cored': a band's change under CORE noise deviations is taken as noise (docs/emr.md compares others)


def magnify(onset, apex, alpha=1.0, chroma=0.1, scale=1.0, bands='cored'):
    """The magnified apex (§III.A), BGR uint8: apex + alpha x (apex - onset) in every Laplacian band but the
    residual, in YIQ with the I and Q channels' change scaled by chroma. bands: 'cored' cores each band's change
    (`core`) first; 'all' magnifies it as it is; 'camera' also leaves alone the bands finer than the frame's pixels
    (`kept_bands`; scale: aligned pixels per pixel of the frame)."""
    if bands not in BANDS:
        raise ValueError(f'bands {bands!r}: expected one of {", ".join(BANDS)}')
    y0, y1 = (cv2.transform(f.astype(np.float32), BGR2YIQ) for f in (onset, apex))
    n = levels(*onset.shape[:2])
    p0, p1 = pyramid(y0, n), pyramid(y1, n)
    gain = [np.float32(alpha * keep) for keep in kept_bands(n, scale if bands == 'camera' else 1.0)]
    change = [b1 - b0 for b0, b1 in zip(p0, p1)]
    if bands == 'cored':
        change = [core(d) for d in change]
    return to_bgr(y1 + collapse([d * g for d, g in zip(change, gain)]) * np.array([1.0, chroma, chroma], np.float32))


def core(d, k=CORE):
    """A band's change soft-thresholded at k noise deviations per channel: sign(d) max(|d| - k sigma, 0), sigma
    estimated as 1.4826 x the median |d| (an expression moves a small part of the face, so the median is the
    noise's); the change two noisy frames make where nothing moved is removed, the expression's kept less k sigma."""
    sigma = 1.4826 * np.median(np.abs(d).reshape(-1, d.shape[-1] if d.ndim == 3 else 1), axis=0)
    return np.sign(d) * np.maximum(np.abs(d) - np.float32(k) * sigma.astype(np.float32), 0)


def kept_bands(n, scale=1.0):
    """[1 or 0] per band of an n-level pyramid, finest first: the residual (the illumination) is never magnified,
    nor band l when the face was enlarged 2^l times or more (scale: aligned pixels per pixel of the frame), since
    a band finer than the camera's pixels holds its noise, interpolated, not the face."""
    return [int(l < n - 1 and 2 ** l >= scale) for l in range(n)]


def middle_frame(onset, apex):
    """Index of the frame halfway from onset to apex: EMR's reduction of a macro-expression's apex (§III.C)."""
    if apex < onset:
        raise ValueError(f'apex ({apex}) precedes onset ({onset})')
    return (onset + apex) // 2


def levels(h, w, filt_size=5):
    """Pyramid height of MIT's buildLpyr(im, 'auto'): 1 + maxPyrHt, the number of halvings with both sides >= 5."""
    n = 1
    while h >= filt_size and w >= filt_size:
        n, h, w = n + 1, h // 2, w // 2
    return n


def pyramid(img, n):
    """Laplacian pyramid of a float32 (H, W[, C]) image, finest band first, residual last (buildLpyr; OpenCV's
    5-tap binomial filter and reflect-101 borders, the same filter, border rule and sizes)."""
    bands, g = [], img
    for _ in range(n - 1):
        down = cv2.pyrDown(g)
        bands.append(g - cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0])))
        g = down
    bands.append(g)
    return bands


def collapse(bands):
    """The image a Laplacian pyramid, finest band first, collapses to (reconLpyr)."""
    img = bands[-1]
    for band in reversed(bands[:-1]):
        img = cv2.pyrUp(img, dstsize=(band.shape[1], band.shape[0])) + band
    return img


def to_bgr(yiq):
    """BGR uint8 frame of a float YIQ image, rounded and clipped."""
    return np.clip(np.rint(cv2.transform(yiq, YIQ2BGR)), 0, 255).astype(np.uint8)
