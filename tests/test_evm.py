"""EVM: the reference's level gains and filters; motion amplified by the predicted factor, and only in band."""
import math

import cv2
import numpy as np
import pytest
import scipy.signal

import config
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
    assert evm.max_levels(480, 640) == 8
    assert evm.max_levels(224, 224) == 7
    assert evm.max_levels(28, 28) == 4


def test_pyramid_reconstructs_exactly():
    img = np.random.default_rng(0).random((37, 50, 3)).astype(np.float32)
    bands = evm.build_lpyr(img, evm.max_levels(37, 50))
    assert [b.shape[:2] for b in bands][:3] == [(37, 50), (19, 25), (10, 13)]
    np.testing.assert_allclose(evm.recon_lpyr(bands), img, atol=1e-5)


@pytest.mark.parametrize('temporal,kw', [('iir', dict(r1=0.4, r2=0.05)), ('butter', dict(fl=1.0, fh=4.0))])
def test_lowpass_steps_match_lfilter(temporal, kw):
    x = np.random.default_rng(1).standard_normal((50, 3))
    pair = evm.lowpass_pair(temporal, 30.0, **kw)
    ys = []
    for b, a in pair:
        y, out = x[0].copy(), [x[0].copy()]
        for i in range(1, len(x)):
            out.append(evm.lowpass_step(y, x[i], x[i - 1], b, a).copy())
        # Started at the first sample as the reference does = lfilter started in its steady state there.
        ref, _ = scipy.signal.lfilter(b, a, x, axis=0, zi=scipy.signal.lfilter_zi(b, a)[:, None] * x[0])
        np.testing.assert_allclose(out, ref, atol=1e-10)
        ys.append(np.array(out))
    if temporal == 'butter':  # cut-offs in Hz, normalised to Nyquist: -3 dB at fh and at fl
        for (b, a), fc in zip(pair, (kw['fh'], kw['fl'])):
            assert abs(scipy.signal.freqz(b, a, [2 * np.pi * fc / 30.0])[1][0]) == pytest.approx(2 ** -0.5)
    if temporal == 'iir':  # the reference's own recurrence
        lp = x[0].copy()
        for i in range(1, len(x)):
            lp = (1 - kw['r1']) * lp + kw['r1'] * x[i]
        np.testing.assert_allclose(ys[0][-1], lp, atol=1e-10)


def test_ideal_bandpass_keeps_band_only():
    t = np.arange(128) / 30.0
    inside, outside = np.sin(2 * np.pi * 3.75 * t), np.sin(2 * np.pi * 9.375 * t)
    x = np.stack([inside + outside + 2.0, outside], 1).astype(np.float32)
    y = evm.ideal_bandpass(x, 30.0, 3.0, 4.5, chunk_bytes=1)  # 1-byte chunks: one row at a time
    assert y is x and y.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], inside, atol=1e-4)
    np.testing.assert_allclose(x[:, 1], 0, atol=1e-4)


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
    bgr = cv2.transform(yiq.astype(np.float32), evm.YIQ2BGR)
    return np.repeat(np.rint(bgr)[:, None], SIZE, 1).astype(np.uint8)


def displacement(clip, channel=0, contrast=CONTRAST):
    """Per-frame shift: the YIQ channel minus the still grating, projected on its derivative w.r.t. the shift."""
    x = np.arange(SIZE)[BORDER:-BORDER]
    still = contrast * np.cos(2 * np.pi * x / WAVELENGTH)
    deriv = contrast * 2 * np.pi / WAVELENGTH * np.sin(2 * np.pi * x / WAVELENGTH)
    yiq = cv2.transform(clip[:, BORDER:-BORDER, BORDER:-BORDER].reshape(len(clip), -1, 3).astype(np.float32),
                        evm.BGR2YIQ)[..., channel].reshape(len(clip), -1, len(x)).mean(axis=1)
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
    amp = evm.recon_lpyr([g * b for g, b in zip(gains, evm.build_lpyr(deriv, len(gains)))])
    m = slice(BORDER, -BORDER)
    return float((amp * deriv)[m, m].sum() / (deriv * deriv)[m, m].sum())


def band_response(temporal, f, fps, fl, fh):
    if temporal == 'ideal':
        return 1.0 if fl <= f <= fh else 0.0
    (b1, a1), (b2, a2) = evm.lowpass_pair(temporal, fps, fl=fl, fh=fh)
    w = [2 * np.pi * f / fps]
    return scipy.signal.freqz(b1, a1, w)[1][0] - scipy.signal.freqz(b2, a2, w)[1][0]


@pytest.mark.parametrize('temporal,fps,f,fl,fh', [
    ('ideal', 30.0, 3.75, 3.0, 4.5),     # f on an FFT bin: 16 periods in 128 frames
    ('ideal', 200.0, 12.5, 10.0, 15.0),  # micro-expression frame rate
    ('butter', 30.0, 2.0, 1.0, 4.0),
    ('iir', 30.0, 2.0, None, None),
])
def test_motion_amplified_by_predicted_factor(temporal, fps, f, fl, fh):
    g = spatial_gain()
    assert g > 0.85 * 10  # the grating sits in bands that get (nearly) the full alpha
    expected = abs(1 + g * band_response(temporal, f, fps, fl, fh))
    clip = grating_clip(f, fps)
    out = evm.magnify(clip, fps, temporal=temporal, fl=fl, fh=fh)
    assert out.shape == clip.shape and out.dtype == np.uint8
    skip = 0 if temporal == 'ideal' else 48  # let the causal filters forget their start
    a_in = amplitude(displacement(clip), f, fps, skip)
    a_out = amplitude(displacement(out), f, fps, skip)
    assert a_in == pytest.approx(A_PX, rel=0.05)
    assert expected > 4
    assert a_out / a_in == pytest.approx(expected, rel=0.10)


def test_motion_outside_band_not_amplified():
    fps, f = 30.0, 9.375
    clip = grating_clip(f, fps)
    out = evm.magnify(clip, fps, temporal='ideal', fl=3.0, fh=4.5)
    ratio = amplitude(displacement(out), f, fps, 0) / amplitude(displacement(clip), f, fps, 0)
    assert ratio == pytest.approx(1.0, rel=0.10)


@pytest.mark.parametrize('chrom_attenuation', [0.1, 0.5])
def test_chroma_band_attenuated(chrom_attenuation):
    # A grating in I alone: its motion is amplified by chrom_attenuation times the luma gain.
    fps, f = 30.0, 3.75
    clip = grating_clip(f, fps, chroma=True)
    out = evm.magnify(clip, fps, temporal='ideal', fl=3.0, fh=4.5, chrom_attenuation=chrom_attenuation)
    a_in = amplitude(displacement(clip, 1, 0.6 * CONTRAST), f, fps, 0)
    a_out = amplitude(displacement(out, 1, 0.6 * CONTRAST), f, fps, 0)
    assert a_in == pytest.approx(A_PX, rel=0.05)
    assert a_out / a_in == pytest.approx(1 + chrom_attenuation * spatial_gain(), rel=0.10)


@pytest.mark.parametrize('temporal,fl,fh', [('iir', None, None), ('butter', 0.5, 3.0), ('ideal', 0.5, 3.0)])
def test_static_clip_unchanged(temporal, fl, fh):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (12, 16, 3)).astype(np.float32)
    img = cv2.resize(img, (80, 60), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    clip = np.repeat(img[None], 20, 0)
    out = evm.magnify(clip, 30.0, temporal=temporal, fl=fl, fh=fh)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - clip).max() <= 1


def test_magnified_apex_is_last_frame_of_onset_to_apex():
    clip = grating_clip(2.0, 30.0, frames=40)
    apex = evm.magnified_apex(clip, 5, 20, 30.0)
    np.testing.assert_array_equal(apex, evm.magnify(clip[5:21], 30.0)[-1])
    assert np.abs(apex.astype(int) - clip[20]).max() > 5  # something was amplified
    np.testing.assert_array_equal(evm.magnified_apex(clip, 7, 7, 30.0), clip[7])
    assert evm.middle_frame_index(10, 31) == 20 and evm.middle_frame_index(4, 4) == 4


def test_bad_input_is_refused():
    clip = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match='fl and fh'):
        evm.magnify(clip, 30.0, temporal='butter')
    with pytest.raises(ValueError, match='fps/2'):
        evm.magnify(clip, 30.0, temporal='ideal', fl=1.0, fh=15.0)
    with pytest.raises(ValueError, match='temporal'):
        evm.magnify(clip, 30.0, temporal='fir')
    with pytest.raises(ValueError, match='uint8'):
        evm.magnify(clip.astype(np.float32), 30.0)
    with pytest.raises(ValueError, match='levels'):
        evm.magnify(clip, 30.0, levels=9)
    with pytest.raises(ValueError, match='onset'):
        evm.magnified_apex(clip, 3, 1, 30.0)


# ----------------------------------------------------------------------------------------------- EMR's settings
def test_onset_change_band_needs_only_onset_and_apex():
    # r1 = 1, r2 = 0: the band is the change since the first frame, so the frames between do not matter.
    kw = config.PAPER.evm()
    assert evm.onset_change(**kw) and not evm.onset_change(r1=0.4, r2=0.05)
    clip = grating_clip(2.0, 30.0, frames=12)
    full = evm.magnify(clip, 30.0, **kw)
    np.testing.assert_array_equal(evm.magnified_apex(clip, 2, 9, 30.0, **kw), evm.magnify(clip[2:10], 30.0, **kw)[-1])
    shuffled = clip.copy()
    shuffled[1:-1] = clip[1:-1][::-1]
    np.testing.assert_array_equal(evm.magnify(shuffled, 30.0, **kw)[-1], full[-1])
    # The apex gains alpha times its change since the first frame (the grating has nothing in the residual).
    change = clip[-1].astype(int) - clip[0]
    assert np.abs(change).max() >= 3
    assert np.abs(full[-1].astype(int) - clip[-1] - kw['alpha'] * change).max() <= 1
    assert evm.level_gains(128, 128, 1.0, 0.0) == [1.0] * 5 + [0.0]   # every band but the residual


def face_texture(size=128):
    """A real face (matplotlib's Grace Hopper photo), cropped around the face and resized, BGR uint8."""
    import matplotlib.cbook
    img = cv2.imread(str(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)))
    return cv2.resize(img[60:380, 110:430], (size, size), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize('fps', [100.0, 200.0])
def test_emr_magnifies_a_subpixel_warp_by_its_factor_and_keeps_its_direction(fps):
    import fidelity
    import flow
    import synth
    face = face_texture()
    yy, xx = np.mgrid[:128, :128].astype(np.float32)
    bump = np.exp(-((xx - 64) ** 2 + (yy - 80) ** 2) / (2 * 14.0 ** 2))
    field = np.stack([0.4 * bump, -0.5 * bump], -1).astype(np.float32)      # up to 0.64 px, up and to the right
    n = int(0.1 * fps)                                                      # onset -> apex in 0.1 s
    clip = synth.render(face, field, synth.profile(n + 1, 0, n, n), np.random.default_rng(0), noise=1.0)
    cfg = config.PAPER
    emr = evm.magnified_apex(clip, 0, n, fps, **cfg.evm())
    gray = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (clip[0], clip[-1], emr)]
    region = bump >= 0.25
    raw_gain, raw_cos = fidelity.agreement(flow.optical_flow(gray[0], gray[1]), field, region)
    gain, cos = fidelity.agreement(flow.optical_flow(gray[0], gray[2]), field, region)
    assert raw_cos > 0.9
    assert cos >= 0.9
    assert gain / raw_gain == pytest.approx(1 + cfg.evm_alpha, rel=0.25)
