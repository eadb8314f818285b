"""EMR (emr.py): the magnified micro apex is apex + alpha x (apex - onset) in every band but the residual, and it
magnifies a real face's sub-pixel motion by its factor without turning it; the macro apex is the middle frame."""
import cv2
import numpy as np
import pytest
from test_evm import grating_clip

import config
import emr


def test_the_apex_gains_alpha_times_its_change_since_the_onset():
    clip = grating_clip(2.0, 30.0, frames=12)
    onset, apex = clip[0], clip[-1]
    change = apex.astype(int) - onset
    assert np.abs(change).max() >= 3
    for alpha in (1.0, 2.0):
        out = emr.magnify(onset, apex, alpha, bands='all')
        assert out.dtype == np.uint8 and out.shape == apex.shape
        assert np.abs(out.astype(int) - apex - alpha * change).max() <= alpha     # 8-bit frames, rounded
    for bands in emr.BANDS:
        np.testing.assert_array_equal(emr.magnify(onset, apex, 0.0, bands=bands), apex)   # alpha 0: the apex itself
        np.testing.assert_array_equal(emr.magnify(apex, apex, 5.0, bands=bands), apex)    # no change, no magnifying


def test_the_residual_illumination_and_the_chroma_are_left_alone():
    rng = np.random.default_rng(0)
    onset = cv2.GaussianBlur(rng.integers(60, 190, (64, 64, 3)).astype(np.uint8), (0, 0), 3)
    brighter = np.clip(onset.astype(int) + 12, 0, 255).astype(np.uint8)
    # A uniform change of brightness sits in the residual: not amplified.
    assert np.abs(emr.magnify(onset, brighter, 4.0, bands='all').astype(int) - brighter).max() <= 1
    # A change of I alone is amplified by chroma x alpha.
    yiq = cv2.transform(onset.astype(np.float32), emr.BGR2YIQ)
    bump = np.zeros((64, 64), np.float32)
    bump[24:40, 24:40] = 10.0
    tinted = yiq.copy()
    tinted[..., 1] += cv2.GaussianBlur(bump, (0, 0), 2)
    apex = emr.to_bgr(tinted)
    for chroma in (0.1, 1.0):
        out = cv2.transform(emr.magnify(onset, apex, 2.0, chroma, bands='all').astype(np.float32), emr.BGR2YIQ)
        got = out[28:36, 28:36, 1] - yiq[28:36, 28:36, 1]
        want = (1 + 2.0 * chroma) * (cv2.transform(apex.astype(np.float32), emr.BGR2YIQ) - yiq)[28:36, 28:36, 1]
        assert np.median(got) == pytest.approx(np.median(want), rel=0.15), chroma


def test_the_macro_apex_is_the_middle_frame():
    assert emr.middle_frame(10, 31) == 20 and emr.middle_frame(4, 4) == 4
    with pytest.raises(ValueError, match='precedes'):
        emr.middle_frame(5, 4)


def face_texture(size=128):
    """A real face (matplotlib's Grace Hopper photo), cropped around the face and resized, BGR uint8."""
    import matplotlib.cbook
    img = cv2.imread(str(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)))
    return cv2.resize(img[60:380, 110:430], (size, size), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize('fps', [100.0, 200.0])
def test_emr_magnifies_a_subpixel_warp_by_its_factor_and_keeps_its_direction(fps):
    import flow
    from data import synth
    from tools import fidelity
    face = face_texture()
    yy, xx = np.mgrid[:128, :128].astype(np.float32)
    bump = np.exp(-((xx - 64) ** 2 + (yy - 80) ** 2) / (2 * 14.0 ** 2))
    field = np.stack([0.4 * bump, -0.5 * bump], -1).astype(np.float32)      # up to 0.64 px, up and to the right
    n = int(0.1 * fps)                                                      # onset -> apex in 0.1 s
    clip = synth.render(face, field, synth.profile(n + 1, 0, n, n), np.random.default_rng(0), noise=1.0)
    cfg = config.PAPER
    magnified = emr.magnify(clip[0], clip[-1], cfg.evm_alpha, cfg.evm_chroma, bands=cfg.emr_bands)
    gray = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (clip[0], clip[-1], magnified)]
    region = bump >= 0.25
    raw_gain, raw_cos = fidelity.agreement(flow.optical_flow(gray[0], gray[1]), field, region)
    gain, cos = fidelity.agreement(flow.optical_flow(gray[0], gray[2]), field, region)
    assert raw_cos > 0.9
    assert cos >= 0.9
    assert gain / raw_gain == pytest.approx(1 + cfg.evm_alpha, rel=0.25)


def test_bands_finer_than_the_frames_pixels_are_left_alone():
    assert emr.kept_bands(7) == [1, 1, 1, 1, 1, 1, 0]                    # the residual never
    assert emr.kept_bands(7, 0.6) == emr.kept_bands(7, 1.0)
    assert emr.kept_bands(7, 1.4) == [0, 1, 1, 1, 1, 1, 0]               # enlarged: the finest band holds no face
    assert emr.kept_bands(7, 2.5) == [0, 0, 1, 1, 1, 1, 0]
    # Two still frames of a face enlarged twice, each with its own camera noise: the noise's change is magnified
    # less when the bands finer than the camera's pixels are left alone.
    rng = np.random.default_rng(0)
    face = face_texture(64).astype(np.float32)
    onset, apex = (cv2.resize(np.clip(face + rng.normal(0, 3, face.shape), 0, 255), (128, 128),
                              interpolation=cv2.INTER_LINEAR).astype(np.uint8) for _ in range(2))
    noise = {k: np.abs(emr.magnify(onset, apex, 2.0, 0.1, k, 'camera').astype(float) - apex).mean() for k in (1.0, 2.0)}
    assert noise[2.0] < 0.8 * noise[1.0], noise


def test_each_band_setting_keeps_its_equation():
    rng = np.random.default_rng(1)
    onset = face_texture(64).astype(np.uint8)
    onset = cv2.resize(onset, (128, 128), interpolation=cv2.INTER_LINEAR)
    apex = np.clip(onset + rng.normal(0, 3, onset.shape), 0, 255).astype(np.uint8)
    y0, y1 = (cv2.transform(f.astype(np.float32), emr.BGR2YIQ) for f in (onset, apex))
    n = emr.levels(128, 128)
    p0, p1 = emr.pyramid(y0, n), emr.pyramid(y1, n)

    def expected(gains, change):
        out = y1 + emr.collapse([d * np.float32(2.0 * g) for d, g in zip(change, gains)]) * np.array(
            [1, 0.1, 0.1], np.float32)
        return emr.to_bgr(out)

    change = [b1 - b0 for b0, b1 in zip(p0, p1)]
    # camera: the finest band left alone on a face enlarged 2x; all: every band but the residual.
    np.testing.assert_array_equal(emr.magnify(onset, apex, 2.0, 0.1, 2.0, 'camera'),
                                  expected(emr.kept_bands(n, 2.0), change))
    np.testing.assert_array_equal(emr.magnify(onset, apex, 2.0, 0.1, 2.0, 'all'), expected(emr.kept_bands(n), change))
    # cored: every band but the residual, each band's change soft-thresholded at CORE robust noise deviations.
    cored = []
    for d in change:
        sigma = 1.4826 * np.median(np.abs(d).reshape(-1, 3), axis=0)
        cored.append(np.sign(d) * np.maximum(np.abs(d) - emr.CORE * sigma, 0))
    np.testing.assert_allclose(emr.magnify(onset, apex, 2.0, 0.1, 2.0, 'cored').astype(int),
                               expected(emr.kept_bands(n), cored).astype(int), atol=1)
    with pytest.raises(ValueError, match='bands'):
        emr.magnify(onset, apex, bands='fine')


def test_coring_removes_the_noise_and_keeps_a_motion_above_it():
    # Pure noise between two frames keeps a fifth of its size (E max(|x| - 1, 0) / E |x| = 0.21 for Gaussian noise
    # cored at one deviation), a motion well above it nearly all of it.
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1.0, (64, 64, 3)).astype(np.float32)
    assert np.abs(emr.core(noise)).mean() < 0.25 * np.abs(noise).mean()
    signal = noise.copy()
    signal[20:30, 20:30] += 12.0
    kept = emr.core(signal)[20:30, 20:30]
    assert np.all(kept > 12.0 - emr.CORE * 1.3 - 4)
    assert np.median(kept) == pytest.approx(12.0 - emr.CORE * 1.0, abs=0.6)
