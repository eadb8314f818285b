"""Calibrated probabilities (results/calibration.py): temperature scaling lowers the ECE of an overconfident
network without changing a prediction; a run keeps its out-of-fold logits, calibrates them, and the model it saves
carries the temperature that `predict` applies."""
import json

import numpy as np
import pytest
import torch

import mer
from results import calibration
from test_mer import _args


def overconfident(n=3000, sharpen=4.0, seed=0):
    """(logits, labels): labels drawn from softmax(z), so z is calibrated; the network's logits are sharpen * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    p = calibration.softmax(z)
    labels = np.array([rng.choice(3, p=row) for row in p])
    return sharpen * z, labels


def test_ece_of_a_hand_made_set():
    probs = np.array([[0.9, 0.05, 0.05]] * 10 + [[0.2, 0.5, 0.3]] * 10)
    labels = np.array([0] * 6 + [1] * 4 + [1] * 5 + [0] * 5)
    # bin of 0.9: accuracy 0.6, gap 0.3; bin of 0.5: accuracy 0.5, gap 0.0; weighted: 0.15
    assert calibration.ece(probs, labels)[0] == pytest.approx(0.15)


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_network_and_keeps_its_predictions():
    logits, labels = overconfident()
    cal = calibration.calibrate(logits, labels)
    assert cal['temperature'] == pytest.approx(4.0, rel=0.15)          # undoes the sharpening
    assert cal['ece_before'] > 0.1 and cal['ece_after'] < cal['ece_before'] / 3
    assert cal['nll_after'] < cal['nll_before']
    after = calibration.softmax(logits, cal['temperature'])
    assert (after.argmax(1) == logits.argmax(1)).all()
    # an already calibrated network keeps a temperature of about 1
    assert calibration.fit_temperature(logits / 4.0, labels) == pytest.approx(1.0, rel=0.15)


@pytest.mark.slow
def test_a_run_calibrates_its_out_of_fold_logits_and_its_model_carries_the_temperature(demo_root, tmp_path,
                                                                                        feature_cache, caplog):
    import logging

    import config
    from engine import runfolder
    from video import api
    out = tmp_path / 'run'
    assert mer.main(_args(demo_root, feature_cache, '--out', str(out), '--save-model')) == 0
    rows = [r for f in sorted((out / 'folds').glob('*.csv')) for r in runfolder.read_fold(out, f.stem)[0]]
    keys = [f'logit_{c}' for c in config.CLASSES]
    assert len(rows) == 18 and all(k in r for r in rows for k in keys)
    # the logits are the predictions' own: their argmax is the fold file's prediction
    assert all(int(np.argmax([r[k] for k in keys])) == r['pred'] for r in rows)
    m = json.loads((out / 'metrics.json').read_text())['calibration']
    want = calibration.calibrate([[r[k] for k in keys] for r in rows], [r['label'] for r in rows])
    assert m['temperature'] == want['temperature'] and m['n'] == 18
    assert (out / 'reliability.png').stat().st_size > 1000
    d = torch.load(out / 'model.pt', weights_only=True)
    assert d['calibration']['temperature'] == m['temperature'] and 'bins_before' not in d['calibration']

    # predict applies it: the probabilities are softmax(logits / T) of the saved network
    from data import synth
    rng = np.random.default_rng(1)
    face, lm = synth.identity(synth.photos()[1], rng)
    frames = synth.render(face, synth.deformation(lm, synth.POS, face.shape[:2], 5.0), synth.profile(12, 0, 6, 11),
                          rng)
    # ... where it helps on folds it was not fitted to (the cross-fitted ECE); else it says so and leaves them be
    for helps in (True, False):
        path = tmp_path / f'helps_{helps}.pt'
        torch.save(dict(d, calibration=dict(d['calibration'], helps=helps)), path)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            model = api.load(path)
        said = f'calibrated by temperature {m["temperature"]:.3f}' if helps else 'did not help on folds it was not'
        assert said in caplog.text
        got = api.predict(frames, 30, model, apex=6)
        with torch.no_grad():
            z = model['net'](torch.as_tensor(got['steps'].x)[None], 0.0)['joint'].numpy()
        want = calibration.softmax(z, m['temperature'] if helps else 1.0)[0]
        assert np.allclose(list(got['probabilities'].values()), want, atol=1e-6)


@pytest.mark.slow
def test_a_model_without_a_calibration_says_its_probabilities_are_uncalibrated(model_file, caplog):
    import logging

    from video import api
    with caplog.at_level(logging.INFO):
        model = api.load(model_file)            # --final-only: no LOSO to calibrate on
    assert model['temperature'] == 1.0 and 'uncalibrated' in caplog.text
