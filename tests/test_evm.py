"""MIT's EVM (evm.py), the reference magnifier behind the EVM settings: its level gains and IIR filter, motion
amplified by the predicted factor, chroma attenuated, and its limit that EMR's own magnification is."""
import math

import cv2
import numpy as np
import pytest
import scipy.signal

import emr
import evm


def formula_gains(h, w, n, alpha=10, lambda_c=16):
    # MIT's attenuation rule (Wu et al. 2012: (1 + alpha) delta < lambda / 8), written independently of evm.
    delta = lambda_c / 8 / (1 + alpha)
    out = []
    for l in range(n):  # l = 0 finest ... n-1 residual
        lam = math.sqrt(h * h + w * w) / 3 / 2 ** (n - 1 - l)
        out.append(0.0 if l in (0, n - 1) else min(alpha, (lam / delta / 8 - 1) * 2))
    return out


def test_level_gains_table_224_and_28():
    # Hand-computed: delta = 16/8/11; lambda(residual) = 224*sqrt(2)/3 = 105.60, halved per finer band.
    table_224 = [0.0, 2.53727, 7.07454, 10.0, 10.0, 10.0, 0.0]
    table_28 = [0.0, 2.53727, 7.07454, 0.0]
    assert evm.level_gains(224, 224, 10, 16) == pytest.approx(table_224, abs=1e-5)
    assert evm.level_gains(28, 28, 10, 16) == pytest.approx(table_28, abs=1e-5)
    assert evm.level_gains(224, 224, 10, 16) == pytest.approx(formula_gains(224, 224, 7))
    assert evm.level_gains(28, 28, 10, 16) == pytest.approx(formula_gains(28, 28, 4))
    assert evm.level_gains(480, 640, 20, 8) == pytest.approx(formula_gains(480, 640, 8, 20, 8))


def test_levels_as_buildLpyr_auto():
    # 1 + maxPyrHt(size, 5): the reference's comment says nLevels = 8 for its 640x480 videos.
    assert emr.levels(480, 640) == 8
    assert emr.levels(224, 224) == 7
    assert emr.levels(28, 28) == 4


def test_pyramid_reconstructs_exactly():
    img = np.random.default_rng(0).random((37, 50, 3)).astype(np.float32)
    bands = emr.pyramid(img, emr.levels(37, 50))
    assert [b.shape[:2] for b in bands][:3] == [(37, 50), (19, 25), (10, 13)]
    np.testing.assert_allclose(emr.collapse(bands), img, atol=1e-5)


def test_lowpass_steps_match_lfilter():
    x = np.random.default_rng(1).standard_normal((50, 3))
    r1, r2 = 0.4, 0.05
    for b, a in evm.lowpass_pair(r1, r2):
        y, out = x[0].copy(), [x[0].copy()]
        for i in range(1, len(x)):
            out.append(evm.lowpass_step(y, x[i], b, a).copy())
        # Started at the first sample as the reference does = lfilter started in its steady state there.
        ref, _ = scipy.signal.lfilter(b, a, x, axis=0, zi=scipy.signal.lfilter_zi(b, a)[:, None] * x[0])
        np.testing.assert_allclose(out, ref, atol=1e-10)
    lp, y = x[0].copy(), x[0].copy()                     # the reference's own recurrence
    for i in range(1, len(x)):
        lp = (1 - r1) * lp + r1 * x[i]
        evm.lowpass_step(y, x[i], *evm.lowpass_pair(r1, r2)[0])
    np.testing.assert_allclose(y, lp, atol=1e-10)


SIZE, WAVELENGTH, A_PX, CONTRAST = 128, 48.0, 0.25, 100.0
BORDER = 16  # the interior spans whole periods of the grating (96 = 2 x 48)


def grating_clip(f, fps, frames=128, chroma=False):
    """Vertical-bar grating shifted horizontally by A_PX * sin(2 pi f t): (T, S, S, 3) uint8, grey or in I only."""
    x = np.arange(SIZE)
    d = A_PX * np.sin(2 * np.pi * f * np.arange(frames) / fps)
    rows = CONTRAST * np.cos(2 * np.pi * (x[None] - d[:, None]) / WAVELENGTH)
    yiq = np.stack([np.full_like(rows, 128.0), rows * 0.6 if chroma else 0 * rows, 0 * rows], -1)
    if not chroma:
        yiq[..., 0] += rows
    bgr = cv2.transform(yiq.astype(np.float32), emr.YIQ2BGR)
    return np.repeat(np.rint(bgr)[:, None], SIZE, 1).astype(np.uint8)


def displacement(clip, channel=0, contrast=CONTRAST):
    """Per-frame shift: the YIQ channel minus the still grating, projected on its derivative w.r.t. the shift."""
    x = np.arange(SIZE)[BORDER:-BORDER]
    still = contrast * np.cos(2 * np.pi * x / WAVELENGTH)
    deriv = contrast * 2 * np.pi / WAVELENGTH * np.sin(2 * np.pi * x / WAVELENGTH)
    yiq = cv2.transform(clip[:, BORDER:-BORDER, BORDER:-BORDER].reshape(len(clip), -1, 3).astype(np.float32),
                        emr.BGR2YIQ)[..., channel].reshape(len(clip), -1, len(x)).mean(axis=1)
    base = 128.0 if channel == 0 else 0.0
    return (yiq - base - still) @ deriv / (deriv @ deriv)


def amplitude(d, f, fps, skip):
    t = np.arange(len(d))[skip:]
    basis = np.stack([np.sin(2 * np.pi * f * t / fps), np.cos(2 * np.pi * f * t / fps), np.ones(len(t))], 1)
    c = np.linalg.lstsq(basis, d[skip:], rcond=None)[0]
    return math.hypot(c[0], c[1])


def spatial_gain(alpha=10, lambda_c=16):
    """The grating's effective level gain: its shift derivative through the code's pyramid and level_gains."""
    x = np.arange(SIZE)
    deriv = np.tile(np.sin(2 * np.pi * x / WAVELENGTH).astype(np.float32), (SIZE, 1))
    gains = evm.level_gains(SIZE, SIZE, alpha, lambda_c)
    amp = emr.collapse([g * b for g, b in zip(gains, emr.pyramid(deriv, len(gains)))])
    m = slice(BORDER, -BORDER)
    return float((amp * deriv)[m, m].sum() / (deriv * deriv)[m, m].sum())


def band_response(f, fps, r1=0.4, r2=0.05):
    (b1, a1), (b2, a2) = evm.lowpass_pair(r1, r2)
    w = [2 * np.pi * f / fps]
    return scipy.signal.freqz(b1, a1, w)[1][0] - scipy.signal.freqz(b2, a2, w)[1][0]


@pytest.mark.parametrize('fps,f', [(30.0, 2.0), (200.0, 12.5)])
def test_motion_amplified_by_predicted_factor(fps, f):
    g = spatial_gain()
    assert g > 0.85 * 10  # the grating sits in bands that get (nearly) the full alpha
    expected = abs(1 + g * band_response(f, fps))
    clip = grating_clip(f, fps)
    out = evm.magnify(clip)
    assert out.shape == clip.shape and out.dtype == np.uint8
    skip = 48  # let the causal filters forget their start
    a_in = amplitude(displacement(clip), f, fps, skip)
    a_out = amplitude(displacement(out), f, fps, skip)
    assert a_in == pytest.approx(A_PX, rel=0.05)
    assert expected > 4
    assert a_out / a_in == pytest.approx(expected, rel=0.10)


@pytest.mark.parametrize('chrom_attenuation', [0.1, 0.5])
def test_chroma_band_attenuated(chrom_attenuation):
    # A grating in I alone: its motion is amplified by chrom_attenuation times the luma gain.
    fps, f = 30.0, 2.0
    clip = grating_clip(f, fps, chroma=True)
    out = evm.magnify(clip, chrom_attenuation=chrom_attenuation)
    a_in = amplitude(displacement(clip, 1, 0.6 * CONTRAST), f, fps, 48)
    a_out = amplitude(displacement(out, 1, 0.6 * CONTRAST), f, fps, 48)
    assert a_in == pytest.approx(A_PX, rel=0.05)
    assert a_out / a_in == pytest.approx(abs(1 + chrom_attenuation * spatial_gain() * band_response(f, fps)),
                                         rel=0.10)


def test_static_clip_unchanged():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (12, 16, 3)).astype(np.float32)
    img = cv2.resize(img, (80, 60), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    clip = np.repeat(img[None], 20, 0)
    out = evm.magnify(clip)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - clip).max() <= 1


def test_magnified_apex_is_last_frame_of_onset_to_apex():
    clip = grating_clip(2.0, 30.0, frames=40)
    apex = evm.magnified_apex(clip, 5, 20)
    np.testing.assert_array_equal(apex, evm.magnify(clip[5:21])[-1])
    assert np.abs(apex.astype(int) - clip[20]).max() > 5  # something was amplified
    np.testing.assert_array_equal(evm.magnified_apex(clip, 7, 7), clip[7])


def test_bad_input_is_refused():
    clip = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match='r2 < r1'):
        evm.magnify(clip, r1=0.2, r2=0.3)
    with pytest.raises(ValueError, match='uint8'):
        evm.magnify(clip.astype(np.float32))
    with pytest.raises(ValueError, match='levels'):
        evm.magnify(clip, levels=9)
    with pytest.raises(ValueError, match='onset'):
        evm.magnified_apex(clip, 3, 1)


def test_its_limit_without_attenuation_is_emrs_magnification():
    # r1 = 1, r2 = 0: the band is the change since the first frame, so the frames between do not matter, and with
    # lambda_c = 0 the last frame is exactly emr.magnify of the first and the last.
    kw = dict(alpha=1.0, lambda_c=0.0, r1=1.0, r2=0.0, chrom_attenuation=0.1)
    assert evm.onset_change(**kw) and not evm.onset_change(r1=0.4, r2=0.05)
    clip = grating_clip(2.0, 30.0, frames=12)
    full = evm.magnify(clip, **kw)
    np.testing.assert_array_equal(evm.magnified_apex(clip, 2, 9, **kw), evm.magnify(clip[2:10], **kw)[-1])
    shuffled = clip.copy()
    shuffled[1:-1] = clip[1:-1][::-1]
    np.testing.assert_array_equal(evm.magnify(shuffled, **kw)[-1], full[-1])
    np.testing.assert_array_equal(full[-1], emr.magnify(clip[0], clip[-1], 1.0, 0.1, bands='all'))
    assert evm.level_gains(128, 128, 1.0, 0.0) == [1.0] * 5 + [0.0]   # every band but the residual
