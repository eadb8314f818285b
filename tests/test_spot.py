"""Apex spotting: the frame of greatest motion from the onset, smoothed so that one noisy frame cannot win."""
import numpy as np
import pytest

import align
import spot
from data import synth


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
    got = spot.apex(clip, fps=200)
    assert abs(got - apex) <= 2, got
    assert abs(len(clip) // 2 - apex) > 2          # the middle-frame rule would miss it


def test_the_motion_curve_rises_to_the_apex_and_falls_after(micro_clip):
    clip, apex = micro_clip
    m = spot.motion(clip)
    assert m[0] == 0 and m[apex] > 3 * m[1] and m[apex] > 3 * m[-1]


def test_one_noisy_frame_does_not_win():
    # A held expression at frames 10-16 and a single-frame glitch at 3 that is higher than any frame of it.
    x = np.zeros(25)
    x[10:17] = 0.5
    x[3] = 0.9
    assert spot.window(200) == 5 and spot.window(30) == 1
    assert np.argmax(x) == 3 and 10 <= np.argmax(spot.smooth(x, spot.window(200))) <= 16
    assert np.allclose(spot.smooth(x, 1), x) and len(spot.smooth(x, 5)) == len(x)


def test_a_clip_of_one_frame_cannot_be_spotted(micro_clip):
    with pytest.raises(ValueError, match='1 frame'):
        spot.apex(micro_clip[0][:1], fps=200)
