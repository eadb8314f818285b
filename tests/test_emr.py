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
        out = emr.magnify(onset, apex, alpha)
        assert out.dtype == np.uint8 and out.shape == apex.shape
        assert np.abs(out.astype(int) - apex - alpha * change).max() <= alpha     # 8-bit frames, rounded
    np.testing.assert_array_equal(emr.magnify(onset, apex, 0.0), apex)     # alpha 0: the apex itself
    np.testing.assert_array_equal(emr.magnify(apex, apex, 5.0), apex)      # no change, nothing to magnify


def test_the_residual_illumination_and_the_chroma_are_left_alone():
    rng = np.random.default_rng(0)
    onset = cv2.GaussianBlur(rng.integers(60, 190, (64, 64, 3)).astype(np.uint8), (0, 0), 3)
    brighter = np.clip(onset.astype(int) + 12, 0, 255).astype(np.uint8)
    # A uniform change of brightness sits in the residual: not amplified.
    assert np.abs(emr.magnify(onset, brighter, 4.0).astype(int) - brighter).max() <= 1
    # A change of I alone is amplified by chroma x alpha.
    yiq = cv2.transform(onset.astype(np.float32), emr.BGR2YIQ)
    bump = np.zeros((64, 64), np.float32)
    bump[24:40, 24:40] = 10.0
    tinted = yiq.copy()
    tinted[..., 1] += cv2.GaussianBlur(bump, (0, 0), 2)
    apex = emr.to_bgr(tinted)
    for chroma in (0.1, 1.0):
        out = cv2.transform(emr.magnify(onset, apex, 2.0, chroma).astype(np.float32), emr.BGR2YIQ)
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
    magnified = emr.magnify(clip[0], clip[-1], cfg.evm_alpha, cfg.evm_chroma)
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
    noise = {k: np.abs(emr.magnify(onset, apex, 2.0, 0.1, k).astype(float) - apex).mean() for k in (1.0, 2.0)}
    assert noise[2.0] < 0.8 * noise[1.0], noise
