"""EMR against the demo set's known motion: the pipeline's magnified flow is the true motion, larger by 1 + alpha."""
import json

import numpy as np
import pytest

import config
from data import releases
from tools import fidelity


@pytest.mark.parametrize('dataset', ['casme2', 'smic'])
def test_demo_clip_magnified_by_its_factor_in_the_true_direction(demo_root, dataset):
    samples = [s for s in releases.load_megc(demo_root / 'megc') if s.dataset == dataset]
    truths = json.loads((demo_root / 'truth.json').read_text())
    s = samples[0]
    r = fidelity.clip_fidelity((s, truths[f'{s.dataset}/{s.subject}/{s.clip}'], config.DEMO))
    # The truth carried into the aligned face agrees with the flow of the raw clip (so the measure is sound) ...
    assert r['cosine_raw'] >= 0.9 and 0.5 <= r['gain_raw'] <= 1.1
    # ... and EMR's flow points the same way, larger by the intended factor, without spreading outside.
    assert r['cosine_emr'] >= 0.9
    assert r['gain_emr'] / r['gain_raw'] == pytest.approx(1 + config.DEMO.evm_alpha, rel=0.25)
    assert r['outside_emr'] <= 1.2 * (1 + config.DEMO.evm_alpha) * r['outside_raw']


def test_aligned_truth_follows_the_transform():
    # A uniform 1-px shift along x, seen through a similarity of scale 2 turned by 90 degrees: 2 px along y.
    truth = dict(landmarks=np.zeros((68, 2)).tolist(), label=0, amp=0.0, profile=[0.0, 0.0], drift=[1.0, 0.0])
    m = np.array([[0.0, -2.0, 40.0], [2.0, 0.0, 0.0]])
    d = fidelity.aligned_truth(truth, (30, 30), m, 20, 0, 1)
    np.testing.assert_allclose(d[5:15, 5:15], np.broadcast_to([0.0, 2.0], (10, 10, 2)), atol=1e-5)
