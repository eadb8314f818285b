"""The one per-sample pipeline: every step's result, the same for a dataset's sample and for a clip aligned from
its onset (what `mer.py predict` has), with EMR's two roles; apex spotting: the frame of greatest motion from the
onset, smoothed so that one noisy frame cannot win."""
import dataclasses

import cv2
import numpy as np
import pytest

import align
import config
import emr
import flow
import pipeline
from data import releases, synth
from data.frames import read_frames

CFG = dataclasses.replace(config.DEMO, align_size=96, size=40)


@pytest.fixture(scope='module')
def samples(demo_root):
    micro = [s for s in releases.load_megc(demo_root / 'megc') if s.dataset == 'casme2']
    return micro[0], releases.load_ckplus(demo_root / 'ck')[0]


def test_every_step_of_a_micro_sample(samples):
    s = samples[0]
    st = pipeline.run(s, CFG, read_frames)
    assert st.sample == s and st.clip.shape == (2, 96, 96, 3)
    np.testing.assert_array_equal(st.onset, st.clip[0])
    np.testing.assert_array_equal(st.apex, st.clip[1])
    scale = pipeline.scale(st.transform)
    assert 0.5 < scale < 1.5                            # the demo's faces are a little smaller than 96 px
    np.testing.assert_array_equal(st.flow_to, emr.magnify(st.onset, st.apex, CFG.evm_alpha, CFG.evm_chroma, scale,
                                                                  CFG.emr_bands))
    gray = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (st.onset, st.flow_to)]
    np.testing.assert_array_equal(st.flow, flow.optical_flow(*gray))
    np.testing.assert_array_equal(st.x, flow.encode(st.flow, CFG.size))
    off = pipeline.run(s, dataclasses.replace(CFG, emr=False), read_frames)
    np.testing.assert_array_equal(off.flow_to, off.apex)
    np.testing.assert_array_equal(off.apex, st.apex)
    assert not np.array_equal(off.x, st.x)


def test_a_macro_sample_flows_to_its_middle_frame(samples):
    s = samples[1]
    st = pipeline.run(s, CFG, read_frames)
    middle = pipeline.run(dataclasses.replace(s, apex=emr.middle_frame(s.onset, s.apex)),
                          dataclasses.replace(CFG, emr=False), read_frames)
    np.testing.assert_array_equal(st.flow_to, middle.apex)
    np.testing.assert_array_equal(st.x, middle.x)


def test_a_clip_aligned_from_its_onset_gives_the_same_steps(samples):
    s = samples[0]
    full, m = pipeline.align_frames(read_frames(s.frames[s.onset:]), CFG, 'clip')
    a, b = pipeline.run(s, CFG, read_frames), pipeline.from_clip(full, m, s, CFG)
    for name in ('transform', 'onset', 'apex', 'flow_to', 'flow', 'x'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    spot = dataclasses.replace(CFG, apex='spot')
    st = pipeline.run(s, spot, read_frames)
    assert st.sample.apex == s.onset + pipeline.find_apex(full, s.fps)
    np.testing.assert_array_equal(st.x, pipeline.from_clip(full, m, st.sample, spot).x)


def test_mits_settings_magnify_the_whole_rise_with_its_reference_code(samples):
    import evm
    s = samples[0]
    mit = dataclasses.replace(CFG, evm_alpha=10.0, evm_lambda_c=16.0, evm_r1=0.4, evm_r2=0.05)
    st = pipeline.run(s, mit, read_frames)
    assert len(st.clip) == s.apex - s.onset + 1                     # the IIR band runs over onset..apex
    np.testing.assert_array_equal(st.apex, st.clip[-1])
    np.testing.assert_array_equal(st.flow_to, evm.magnified_apex(st.clip, 0, len(st.clip) - 1, **mit.evm()))
    assert not np.array_equal(st.flow_to, pipeline.run(s, CFG, read_frames).flow_to)


# ----------------------------------------------------------------------------------------------- apex spotting
@pytest.fixture(scope='module')
def micro_clip():
    """(aligned 128-px clip of 30 frames, apex 8): a demo-like lip-corner pull (1.5 px at 224 px) on a real face,
    with the demo's head drift and noise; its middle frame (15) is far from the apex."""
    rng = np.random.default_rng(3)
    face, lm = synth.identity(synth.photos()[1], rng)
    to_src = np.linalg.norm(align.anchor_points(lm)[1] - align.anchor_points(lm)[0]) / synth.EYE_DIST_224
    field = synth.deformation(lm, synth.POS, face.shape[:2], 1.5 * to_src)
    clip = synth.render(face, field, synth.profile(30, 0, 8, 20), rng, drift=synth.head_drift(rng, 0.3 * to_src))
    return align.align_clip(clip, 128)[0], 8


def test_spotting_finds_the_apex_of_a_micro_expression(micro_clip):
    clip, apex = micro_clip
    got = pipeline.find_apex(clip, fps=200)
    assert abs(got - apex) <= 2, got
    assert abs(len(clip) // 2 - apex) > 2          # the middle-frame rule would miss it


def test_the_motion_curve_rises_to_the_apex_and_falls_after(micro_clip):
    clip, apex = micro_clip
    m = pipeline.apex_motion(clip)
    assert m[0] == 0 and m[apex] > 3 * m[1] and m[apex] > 3 * m[-1]


def test_one_noisy_frame_does_not_win():
    # A held expression at frames 10-16 and a single-frame glitch at 3 that is higher than any frame of it.
    x = np.zeros(25)
    x[10:17] = 0.5
    x[3] = 0.9
    assert pipeline.apex_window(200) == 5 and pipeline.apex_window(30) == 1
    assert np.argmax(x) == 3 and 10 <= np.argmax(pipeline.smooth(x, pipeline.apex_window(200))) <= 16
    assert np.allclose(pipeline.smooth(x, 1), x) and len(pipeline.smooth(x, 5)) == len(x)


def test_a_clip_of_one_frame_cannot_be_spotted(micro_clip):
    with pytest.raises(ValueError, match='1 frame'):
        pipeline.find_apex(micro_clip[0][:1], fps=200)
