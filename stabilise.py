"""Rigid head motion removed from a clip (beyond the paper): lab recordings hold the head still, a user's own
clip rarely does, and a head that turns or shifts between onset and apex would masquerade as expression.

After the one alignment on the onset (align.py), each later frame is also mapped onto the onset frame by the
similarity that best explains its Farneback flow over STABLE_BOX (the eyes' row down to the nose, which
expressions barely move), in the same warp. The flow, not dlib's landmarks, measures the motion: landmarks jitter
by 1-2 px between frames of a still face, more than a micro-expression moves.
"""
import cv2
import numpy as np

import align

# The part of the aligned face that follows the skull rather than the expression, as ((x0, y0), (x1, y1)) in the
# unit square: from just above the eyes to the nose tip, a little beyond the eye centres on each side. The brows
# (AU1/2/4), the mouth and the jaw (AU12/15/26) are outside it.
STABLE_BOX = ((align.TEMPLATE[0, 0] - 0.1, align.TEMPLATE[0, 1] - 0.05),
              (align.TEMPLATE[1, 0] + 0.1, align.TEMPLATE[2, 1]))
# Refinements of the head's motion: each warps the frame by the estimate so far and fits the flow that is left
# (a flow of several pixels is estimated less precisely than the sub-pixel remainder).
HEAD_ITERATIONS = 3


def stable_mask(size):
    """(size, size) uint8 mask of the aligned face's STABLE_BOX: the part that follows the skull."""
    (x0, y0), (x1, y1) = (np.asarray(STABLE_BOX) * size).round().astype(int)
    mask = np.zeros((size, size), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def compose(m, s):
    """2x3 affine m . s: s applied first."""
    out = m[:, :2] @ s
    out[:, 2] += m[:, 2]
    return out


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
        w = compose(w, align.similarity(pts, pts + f[ys, xs]))
    return w


def align_clip(frames_bgr, size=224, upsample=1, name='clip', no_face='error', landmarks_path=None):
    """align.align_clip (the clip, the onset's similarity) with each frame's rigid head motion relative to the first
    (head_motion over the aligned face's STABLE_BOX) removed in the same warp. The frames may be an iterator."""
    out, m, mask, ref_gray, w = [], None, stable_mask(size), None, None
    for f in frames_bgr:
        if m is None:
            m = align.face_transform(f, size, upsample, name, no_face, landmarks_path)
            out.append(align.warp(f, m, size))
            ref_gray = cv2.cvtColor(out[0], cv2.COLOR_BGR2GRAY)
            continue
        # The previous frame's motion starts the estimate: heads move little from one frame to the next.
        w = head_motion(ref_gray, cv2.cvtColor(align.warp(f, m, size), cv2.COLOR_BGR2GRAY), mask, w)
        out.append(align.warp(f, compose(cv2.invertAffineTransform(w), m), size))
    if not out:
        raise ValueError(f'{name}: empty clip, nothing to align')
    return np.stack(out), m
