"""Onset-to-apex motion (paper §III.A): optical flow, optical strain, the 3-channel network input.

Flow convention is OpenCV's: apex(y + v, x + u) ~= onset(y, x); u is along x (columns), v along y (rows), in
pixels of the frames given. The network input stacks (u, v, strain) as in the optical-flow / optical-strain
micro-expression literature (Liong et al. 2018; Shreve et al. 2011).

Network input normalisation (`encode`) is fixed, not per sample, so that a larger motion gives a larger input
in every sample: u and v are first rescaled to pixels of the size x size output grid (u * size/W, v * size/H,
so they keep their meaning after the resize), divided by flow_scale = 4 px (an EVM-magnified micro-expression,
or a macro one at its middle frame, moves a few pixels on a 224-px face) and clipped to [-clip, clip] = [-3, 3]
(12 px: beyond it is flow failure, not expression). Strain is scale-free (pixels per pixel), so it is computed
on the source grid where the flow was estimated, then area-averaged, divided by strain_scale = 0.2 (a 4-px
change over 20 px) and clipped to [0, clip]. Resizing uses INTER_AREA: it averages, so shrinking does not alias.
"""
import cv2
import numpy as np

# OpenCV's own defaults for cv::optflow::DualTVL1OpticalFlow (Zach et al. 2007; Sanchez et al. IPOL 2013).
# Listed in the order of DualTVL1OpticalFlow_create's positional arguments.
TVL1_DEFAULTS = dict(tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01, inner_iterations=30,
                     outer_iterations=10, scale_step=0.8, gamma=0.0, median_filtering=5)
# The values of OpenCV's samples/python/opt_flow.py (a 3-level pyramid, 15-px window).
FARNEBACK_DEFAULTS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _gray(img, name):
    a = np.asarray(img)
    if a.ndim != 2 or not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f'{name} must be a 2-D grayscale uint8 or float (0-255 scale) image, got {a.shape} {a.dtype}')
    return np.ascontiguousarray(a)


def optical_flow(onset_gray, apex_gray, method='tvl1', **params):
    """(H, W, 2) float32 flow (u, v) in pixels from onset to apex: TV-L1 (paper §III.A) or Farneback."""
    a, b = _gray(onset_gray, 'onset_gray'), _gray(apex_gray, 'apex_gray')
    if a.shape != b.shape:
        raise ValueError(f'onset {a.shape} and apex {b.shape} frames differ in size')
    defaults = {'tvl1': TVL1_DEFAULTS, 'farneback': FARNEBACK_DEFAULTS}.get(method)
    if defaults is None:
        raise ValueError(f"unknown flow method {method!r}: use 'tvl1' or 'farneback'")
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f'unknown {method} parameters {sorted(unknown)}; known: {sorted(defaults)}')
    p = {**defaults, **params}
    if method == 'tvl1':
        # OpenCV multiplies float input by 255 (it expects [0, 1]); uint8 goes in as is.
        a, b = [x if x.dtype == np.uint8 else (x / 255.0).astype(np.float32) for x in (a, b)]
        tv = cv2.optflow.DualTVL1OpticalFlow_create(*p.values())
        flow = tv.calc(a, b, None)
    else:
        a, b = a.astype(np.float32), b.astype(np.float32)
        flow = cv2.calcOpticalFlowFarneback(a, b, None, *p.values())
    return flow.astype(np.float32, copy=False)


def _flow(flow):
    f = np.asarray(flow)
    if f.ndim != 3 or f.shape[2] != 2 or not np.issubdtype(f.dtype, np.floating):
        raise ValueError(f'flow must be a float (H, W, 2) array, got {f.shape} {f.dtype}')
    return f


def strain(flow):
    """(H, W) optical strain magnitude sqrt(exx^2 + eyy^2 + exy^2 + eyx^2), e = (grad u + grad u^T)/2 (Liong 2018)."""
    f = _flow(flow).astype(np.float32)
    # np.gradient: central differences inside, one-sided at the border; axis 0 is y, axis 1 is x.
    du_dy, du_dx = np.gradient(f[..., 0])
    dv_dy, dv_dx = np.gradient(f[..., 1])
    exy = 0.5 * (du_dy + dv_dx)  # = eyx, the shear term counted twice
    return np.sqrt(du_dx ** 2 + dv_dy ** 2 + 2 * exy ** 2).astype(np.float32)


# The fixed normalisation of the network input, explained above.
ENCODE = dict(flow_scale=4.0, strain_scale=0.2, clip=3.0)


def encode(flow, size, *, flow_scale=None, strain_scale=None, clip=None):
    """(3, size, size) float32 network input u, v, strain with the fixed normalisation above (§III.A)."""
    flow_scale = ENCODE['flow_scale'] if flow_scale is None else flow_scale
    strain_scale = ENCODE['strain_scale'] if strain_scale is None else strain_scale
    clip = ENCODE['clip'] if clip is None else clip
    f = _flow(flow).astype(np.float32)
    if int(size) != size or size < 1:
        raise ValueError(f'size must be a positive integer, got {size}')
    if not (flow_scale > 0 and strain_scale > 0 and clip > 0):
        raise ValueError(f'flow_scale, strain_scale, clip must be positive: {flow_scale}, {strain_scale}, {clip}')
    size = int(size)
    h, w = f.shape[:2]
    e = strain(f)
    f = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
    e = cv2.resize(e, (size, size), interpolation=cv2.INTER_AREA)
    u = f[..., 0] * (size / w) / flow_scale
    v = f[..., 1] * (size / h) / flow_scale
    out = np.stack([np.clip(u, -clip, clip), np.clip(v, -clip, clip), np.clip(e / strain_scale, 0, clip)])
    return out.astype(np.float32)


def to_image(flow, *, max_magnitude=None):
    """(H, W, 3) uint8 BGR colour-wheel picture: hue = direction, value = magnitude / max_magnitude (or the max)."""
    f = _flow(flow).astype(np.float32)
    mag, ang = cv2.cartToPolar(f[..., 0], f[..., 1], angleInDegrees=True)
    top = float(mag.max()) if max_magnitude is None else float(max_magnitude)
    hsv = np.empty(f.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = ((ang / 2) % 180).astype(np.uint8)  # OpenCV's 8-bit hue runs 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag * (255 / top), 0, 255).astype(np.uint8) if top > 0 else 0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
