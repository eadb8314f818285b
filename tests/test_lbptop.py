"""The MEGC2019 baseline: TIM, LBP-TOP against a direct reference and scikit-image, the SVM per fold."""
import numpy as np
import pytest
from skimage.feature import local_binary_pattern

import lbptop


def _reference(vol, radii=(1, 1, 4), points=4, blocks=5):
    """LBP-TOP written out voxel by voxel: each plane's 4 neighbours at 0, 90, 180, 270 degrees."""
    rx, ry, rt = radii
    t_, h, w = vol.shape
    planes = {'xy': [(0, 0, rx), (0, -ry, 0), (0, 0, -rx), (0, ry, 0)],       # (dt, dy, dx) for p = 0..3
              'xt': [(0, 0, rx), (-rt, 0, 0), (0, 0, -rx), (rt, 0, 0)],
              'yt': [(0, ry, 0), (-rt, 0, 0), (0, -ry, 0), (rt, 0, 0)]}
    codes = {k: np.zeros((t_ - 2 * rt, h - 2 * ry, w - 2 * rx), int) for k in planes}
    for t in range(rt, t_ - rt):
        for y in range(ry, h - ry):
            for x in range(rx, w - rx):
                for k, offs in planes.items():
                    c = sum((vol[t + dt, y + dy, x + dx] >= vol[t, y, x]) << p for p, (dt, dy, dx) in enumerate(offs))
                    codes[k][t - rt, y - ry, x - rx] = c
    hh, ww = h - 2 * ry, w - 2 * rx
    ys, xs = np.linspace(0, hh, blocks + 1).astype(int), np.linspace(0, ww, blocks + 1).astype(int)
    out = []
    for i in range(blocks):
        for j in range(blocks):
            for k in ('xy', 'xt', 'yt'):
                hist = np.bincount(codes[k][:, ys[i]:ys[i + 1], xs[j]:xs[j + 1]].ravel(), minlength=16)
                out.append(hist / hist.sum())
    return np.concatenate(out)


def test_lbptop_matches_a_direct_reference():
    vol = np.random.default_rng(0).integers(0, 6, (10, 14, 17)).astype(float)   # ties happen: >= matters
    got = lbptop.lbptop(vol)
    assert got.shape == (5 * 5 * 3 * 16,)
    np.testing.assert_allclose(got, _reference(vol))
    np.testing.assert_allclose(got.reshape(75, 16).sum(1), 1.0)


def test_xy_codes_are_scikit_images():
    vol = np.random.default_rng(1).integers(0, 255, (9, 20, 23)).astype(np.uint8)
    ours = lbptop.lbp_plane(vol, (1, 2), (1, 1))
    for t in range(ours.shape[0]):
        ref = local_binary_pattern(vol[t + 4], 4, 1, method='default').astype(int)
        np.testing.assert_array_equal(ours[t], ref[1:-1, 1:-1])


def test_tim_returns_the_length_asked_and_keeps_a_ramp_linear():
    n, shape = 23, (6, 7)
    t = np.arange(n)
    base = np.random.default_rng(2).uniform(0, 100, shape)
    ramp = base[None] + 3.0 * t[:, None, None]                 # every pixel brightens linearly with time
    out = lbptop.tim(ramp, 10)
    assert out.shape == (10,) + shape
    steps = np.diff(out, axis=0)
    # Linear in time: equal steps, all pixels together, spanning the clip (first frame to last).
    assert np.abs(steps - steps.mean()).max() < 0.05 * steps.mean()
    np.testing.assert_allclose(out[0], ramp[0], atol=1.0)
    np.testing.assert_allclose(out[-1], ramp[-1], atol=1.0)
    np.testing.assert_allclose(lbptop.tim(ramp, n), ramp, atol=1e-6)   # n steps reproduce the frames
    with pytest.raises(ValueError, match='at least 2 frames'):
        lbptop.tim(ramp[:1])


def test_svm_separates_separable_classes():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.1, (60, 20))
    y = np.arange(60) % 3
    x[np.arange(60), y] += 1.0
    assert (lbptop.svm_predict(x[:45], y[:45], x[45:]) == y[45:]).all()
