"""Optical flow against analytic motions, optical strain, the network encoding, the picture and the cache."""
import numpy as np
import pytest

import flow

N, BORDER = 128, 10
_rng = np.random.default_rng(0)
_K = 60
_FREQ, _THETA, _PHASE, _AMP = (_rng.uniform(0.02, 0.12, _K), _rng.uniform(0, 2 * np.pi, _K),
                               _rng.uniform(0, 2 * np.pi, _K), _rng.uniform(0.5, 1.0, _K))
Y, X = np.mgrid[0:N, 0:N].astype(np.float64)


def texture(xs, ys):
    """A seeded smooth random texture (60 plane waves below 0.12 cycle/px), evaluable at any sub-pixel point."""
    s = sum(a * np.cos(2 * np.pi * f * (np.cos(t) * xs + np.sin(t) * ys) + p)
            for f, t, p, a in zip(_FREQ, _THETA, _PHASE, _AMP))
    return np.clip(np.rint(128 + 22 * s), 0, 255).astype(np.uint8)


def epe(est, gt):
    """Mean end-point error in the interior (a BORDER-px frame left out)."""
    d = np.sqrt(((est - gt) ** 2).sum(-1))
    return float(d[BORDER:-BORDER, BORDER:-BORDER].mean())


def translated(tx, ty):
    # apex(x) = onset(x - t), so the flow onset -> apex is t everywhere.
    gt = np.zeros((N, N, 2), np.float32)
    gt[..., 0], gt[..., 1] = tx, ty
    return texture(X, Y), texture(X - tx, Y - ty), gt


def rotated(deg):
    c, th = (N - 1) / 2, np.deg2rad(deg)
    cs, sn = np.cos(th), np.sin(th)
    # A point p of the onset moves to R (p - c) + c; the apex at q shows the onset at R^-1 (q - c) + c.
    apex = texture(cs * (X - c) + sn * (Y - c) + c, -sn * (X - c) + cs * (Y - c) + c)
    gt = np.stack([cs * (X - c) - sn * (Y - c) + c - X, sn * (X - c) + cs * (Y - c) + c - Y], -1)
    return texture(X, Y), apex, gt.astype(np.float32)


@pytest.mark.parametrize('case', [(0.3, 0.5), (1.0, -2.0), (-1.5, 1.5), 'rot1'], ids=str)
def test_tvl1_recovers_known_motion(case):
    a, b, gt = rotated(1.0) if case == 'rot1' else translated(*case)
    est = flow.optical_flow(a, b)
    assert est.shape == (N, N, 2) and est.dtype == np.float32
    err = epe(est, gt)
    print(f'TV-L1 {case}: EPE {err:.4f} px')
    assert err <= 0.1


def test_tvl1_accepts_float_frames_on_the_0_255_scale():
    a, b, gt = translated(0.3, 0.5)
    assert epe(flow.optical_flow(a.astype(np.float32), b.astype(np.float64)), gt) <= 0.1


@pytest.mark.parametrize('shift', [(0.3, 0.5), (1.0, -2.0)], ids=str)
def test_farneback_runs_and_is_close(shift):
    a, b, gt = translated(*shift)
    est = flow.optical_flow(a, b, method='farneback')
    assert est.shape == (N, N, 2) and est.dtype == np.float32
    err = epe(est, gt)
    print(f'Farneback {shift}: EPE {err:.4f} px')
    assert err <= 0.25


def test_mirrored_pair_gives_mirrored_field():
    a, b, _ = rotated(1.0)
    est = flow.optical_flow(a, b)
    mir = flow.optical_flow(a[:, ::-1], b[:, ::-1])[:, ::-1]
    mir[..., 0] *= -1
    assert epe(mir, est) <= 0.02
    # The rotation field's u is far from zero, so a missing negation would not pass.
    assert np.abs(est[..., 0][BORDER:-BORDER, BORDER:-BORDER]).mean() > 0.3


def test_strain_of_translation_and_stretch():
    f = np.zeros((40, 50, 2), np.float32)
    f[..., 0], f[..., 1] = 1.3, -0.7
    np.testing.assert_allclose(flow.strain(f), 0, atol=1e-6)
    k = 0.05
    f[..., 0], f[..., 1] = k * (np.arange(50) - 25)[None, :], 0
    np.testing.assert_allclose(flow.strain(f), k, rtol=1e-5)
    # Pure shear u = s*y: exy = eyx = s/2, so the magnitude is sqrt(2) * s/2.
    f[..., 0], f[..., 1] = k * np.arange(40)[:, None], 0
    np.testing.assert_allclose(flow.strain(f), k / np.sqrt(2), rtol=1e-5)


def test_strain_of_estimated_stretch():
    k = 0.01  # apex(x) = onset(c + (x - c)/(1 + k)): u = k (x - c), strain k
    c = (N - 1) / 2
    est = flow.optical_flow(texture(X, Y), texture(c + (X - c) / (1 + k), Y))
    e = flow.strain(est)[2 * BORDER:-2 * BORDER, 2 * BORDER:-2 * BORDER]
    assert float(np.median(e)) == pytest.approx(k, rel=0.3)


def test_encode_shape_order_and_scale():
    f = np.zeros((64, 96, 2), np.float32)
    f[..., 0], f[..., 1] = 2.0, -1.0
    enc = flow.encode(f, 32, flow_scale=4.0)
    assert enc.shape == (3, 32, 32) and enc.dtype == np.float32
    # Vectors follow the resize to the output grid: u * 32/96, v * 32/64, then / flow_scale.
    np.testing.assert_allclose(enc[0], 2.0 * 32 / 96 / 4.0, rtol=1e-5)
    np.testing.assert_allclose(enc[1], -1.0 * 32 / 64 / 4.0, rtol=1e-5)
    np.testing.assert_allclose(enc[2], 0, atol=1e-6)
    f[..., 0] = 0.1 * np.arange(96)[None, :]
    enc = flow.encode(f, 32, strain_scale=0.2, clip=3.0)
    np.testing.assert_allclose(enc[2], 0.5, rtol=1e-4)
    assert flow.encode(f, 32, flow_scale=0.5, clip=3.0)[0].max() == pytest.approx(3.0)  # clipped


def test_to_image_shape_and_colours():
    f = np.zeros((20, 30, 2), np.float32)
    f[:, :15, 0] = 1.0  # rightwards: hue 0, red
    img = flow.to_image(f)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (0, 0, 255) and img[:, 15:].max() == 0
    assert flow.to_image(np.zeros((4, 4, 2), np.float32)).max() == 0


def test_bad_input_is_refused():
    g = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match='unknown flow method'):
        flow.optical_flow(g, g, method='horn')
    with pytest.raises(ValueError, match='unknown tvl1 parameters'):
        flow.optical_flow(g, g, lamda=0.1)
    with pytest.raises(ValueError, match='grayscale'):
        flow.optical_flow(np.zeros((16, 16, 3), np.uint8), g)
    with pytest.raises(ValueError, match='differ'):
        flow.optical_flow(g, np.zeros((16, 17), np.uint8))
    with pytest.raises(ValueError, match=r'\(H, W, 2\)'):
        flow.encode(np.zeros((16, 16, 3), np.float32), 8)
