"""tools/compare.py: runs made with other settings, side by side with Table I's cells and paired comparisons."""
import numpy as np
import pytest

import loso
from engine import runfolder
from results import stats
from tools import compare


def _run(folder, preds, truth):
    """A finished run folder: one fold file per subject (two datasets, three subjects each)."""
    (folder / 'folds').mkdir(parents=True)
    for (ds, subject), p in preds.items():
        rows = [dict(dataset=ds, subject=subject, clip=f'c{i}', label=y, pred=q, pred_selected=q)
                for i, (y, q) in enumerate(zip(truth[ds, subject], p))]
        runfolder.write_fold(folder, f'{ds}_{subject}', rows)


def test_seeds_are_averaged_and_the_first_is_compared_with_the_others(tmp_path):
    rng = np.random.default_rng(0)
    keys = [(ds, f's{i}') for ds in ('casme2', 'samm') for i in range(3)]
    truth = {k: list(rng.integers(0, 3, 8)) for k in keys}
    good = {k: list(t) for k, t in truth.items()}                   # every clip right
    noisy = [{k: [y if rng.random() < 0.6 else (y + 1) % 3 for y in t] for k, t in truth.items()} for _ in range(2)]
    _run(tmp_path / 'a', good, truth)
    for seed, preds in enumerate(noisy):
        _run(tmp_path / 'b' / f'seed{seed}', preds, truth)
    runs_a, runs_b = compare.runs_of(tmp_path / 'a'), compare.runs_of(tmp_path / 'b')
    assert len(runs_a) == 1 and len(runs_b) == 2 and len(runs_b[1]) == 48
    text = compare.compare([('right', runs_a), ('noisy', runs_b)], n_boot=200)
    uf1_b = np.mean([loso.metrics(r)['all']['uf1'] for r in runs_b])
    assert '| right | 1.0000 [1.000, 1.000] |' in text
    assert f'| noisy (mean of 2 seeds) | {uf1_b:.4f} ± ' in text
    diff = stats.paired(runs_a, runs_b, 200)['all']['uf1']
    assert diff[0] == pytest.approx(1 - uf1_b, abs=1e-4) and diff[0] > 0.2
    assert f'| right − noisy | {diff[0]:+.4f} [{diff[1][0]:+.3f}, {diff[1][1]:+.3f}] | 100% |' in text


def test_a_folder_without_fold_files_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match='no fold files'):
        compare.main([f'x={tmp_path}'])
