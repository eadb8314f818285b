"""The one per-sample pipeline: every step's result, the same for a dataset's sample and for a clip aligned from
its onset (what `mer.py predict` has), with EMR's two roles."""
import dataclasses

import cv2
import numpy as np
import pytest

import config
import emr
import flow
import pipeline
from data import releases
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
    assert st.sample.apex == s.onset + __import__('spot').apex(full, s.fps)
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
