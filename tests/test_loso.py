"""LOSO: the MEGC metrics, the run folder, resume after a kill, shards, training processes."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score
from toy import learnable

import config
import loso
from engine import cli, runfolder


@pytest.mark.parametrize('seed', range(40))
def test_uf1_uar_match_sklearn_macro_scores(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    y = rng.integers(0, 3, n)
    p = np.where(rng.random(n) < rng.random(), y, rng.integers(0, 3, n))
    uf1, uar = loso.uf1_uar(y, p)
    labels = np.unique(y)
    assert uf1 == pytest.approx(f1_score(y, p, labels=labels, average='macro', zero_division=0))
    assert uar == pytest.approx(recall_score(y, p, labels=labels, average='macro', zero_division=0))


def test_uf1_uar_hand_computed():
    y = [0, 0, 0, 1, 1, 2]
    p = [0, 0, 1, 1, 2, 2]
    # class 0: TP 2 FP 0 FN 1 -> F1 4/5; class 1: TP 1 FP 1 FN 1 -> 1/2; class 2: TP 1 FP 1 FN 0 -> 2/3
    uf1, uar = loso.uf1_uar(y, p)
    assert uf1 == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert uar == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert loso.uf1_uar([2, 2], [2, 2]) == (1.0, 1.0)
    np.testing.assert_array_equal(loso.confusion(y, p), [[2, 1, 0], [0, 1, 1], [0, 0, 1]])


def test_shards_cover_every_fold_once():
    specs = [(f's{i}', None, None) for i in range(7)]
    assert [k for k, _, _ in runfolder.shard_of(specs, (2, 3))] == ['s1', 's4']
    assert sorted(k for i in (1, 2, 3) for k, _, _ in runfolder.shard_of(specs, (i, 3))) == [f's{i}' for i in range(7)]


CFG = cli.run_config(config.PAPER, size=40, epochs=2, batch_size=16, init='random', precision='fp32',
                          device='cpu', jobs=1, quiet=True)


def _folds(out):
    return {p.name: p.read_text() for p in sorted((out / 'folds').glob('*.csv'))}


@pytest.fixture(scope='module')
def full(tmp_path_factory):
    """(data, metrics, run folder) of one uninterrupted run, the reference of the tests below."""
    x, meta = learnable(size=40)
    out = tmp_path_factory.mktemp('full')
    return (x, meta), runfolder.run(x, meta, CFG, out), out


@pytest.mark.slow
def test_run_writes_the_run_folder(full):
    _, res, out = full
    assert set(res) == {'honest', 'audit', 'calibration', 'rows'}
    assert res['honest']['all']['n'] == 12 and len(res['rows']) == 12
    for f in ('metrics.json', 'megc_log.txt', 'train_log.csv', 'curves.png', 'confusion_all.png',
              'confusion_casme2.png', 'confusion_samm.png'):
        assert (out / f).is_file(), f
    log = (out / 'megc_log.txt').read_text().splitlines()
    assert log[0] in ('samm sub00', 'casme2 sub00') and len(log[1].split()) == 3
    train_log = (out / 'train_log.csv').read_text().splitlines()
    assert train_log[0] == 'fold,epoch,lt,lb,lc,ladv,acc' and len(train_log) == 1 + 4 * CFG.epochs
    assert json.loads((out / 'metrics.json').read_text()) == {k: v for k, v in res.items() if k != 'rows'}


@pytest.mark.slow
def test_resume_after_a_kill_gives_identical_results(full, tmp_path, monkeypatch):
    (x, meta), res, out = full
    written = []
    real = runfolder.write_fold

    def dying(out, key, rows, epochs=None):
        if len(written) == 2:
            raise KeyboardInterrupt('killed')
        written.append(key)
        real(out, key, rows, epochs)
    monkeypatch.setattr(runfolder, 'write_fold', dying)
    with pytest.raises(KeyboardInterrupt):
        runfolder.run(x, meta, CFG, tmp_path / 'resumed')
    assert len(_folds(tmp_path / 'resumed')) == 2
    monkeypatch.setattr(runfolder, 'write_fold', real)
    assert runfolder.run(x, meta, CFG, tmp_path / 'resumed') == res       # the same predictions: deterministic too
    assert _folds(tmp_path / 'resumed') == _folds(out)


@pytest.mark.slow
def test_shards_merged_equal_a_single_run(full, tmp_path):
    (x, meta), res, out = full
    assert runfolder.run(x, meta, CFG, tmp_path / 'sharded', shard=(1, 2)) is None
    assert runfolder.run(x, meta, CFG, tmp_path / 'sharded', shard=(2, 2)) == res
    assert _folds(tmp_path / 'sharded') == _folds(out)


def test_config_mismatch_is_refused_and_volatile_settings_are_not(tmp_path):
    runfolder.check_config(tmp_path, config.result_settings(CFG))
    saved = json.loads((tmp_path / 'config.json').read_text())
    assert saved['epochs'] == 2 and 'code_version' in saved and 'device' not in saved
    runfolder.check_config(tmp_path, config.result_settings(dataclasses.replace(CFG, device='cuda', jobs=3, streams=4)))
    with pytest.raises(SystemExit, match='other settings \\(epochs\\)'):
        runfolder.check_config(tmp_path, config.result_settings(dataclasses.replace(CFG, epochs=3)))


@pytest.mark.slow
def test_folds_trained_in_worker_processes_match_one_process(tmp_path):
    # --jobs: folds train in spawned processes of one thread that share the inputs; the fold files are those of
    # one process of one thread (oneDNN's reductions are ordered by thread count, so threads are held equal).
    x, meta = learnable(n_subjects=2, size=40)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = runfolder.run(x, meta, CFG, tmp_path / 'one')
    finally:
        torch.set_num_threads(threads)
    two = runfolder.run(x, meta, dataclasses.replace(CFG, jobs=2), tmp_path / 'two')
    assert one == two and _folds(tmp_path / 'one') == _folds(tmp_path / 'two')


@pytest.mark.slow
def test_damaged_fold_files_are_trained_again_not_merged_short(full, tmp_path, caplog):
    import shutil
    (x, meta), res, out = full
    copy = tmp_path / 'run'
    shutil.copytree(out, copy)
    (copy / 'metrics.json').unlink()
    short, garbage = sorted((copy / 'folds').glob('*.csv'))[:2]
    lines = short.read_text().splitlines()
    short.write_text('\n'.join(lines[:2]) + '\n')                               # cut to its header and one row
    lines = garbage.read_text().splitlines()
    garbage.write_text('\n'.join(lines[:2] + ['samm,sub00,???'] + lines[2:]) + '\n')   # a garbage line
    assert runfolder.run(x, meta, CFG, copy) == res
    for victim in (short, garbage):
        assert f'{victim}: ' in caplog.text
    assert caplog.text.count('the fold will be trained again') == 2
    assert _folds(copy) == _folds(out)


@pytest.mark.slow
def test_a_fold_locked_by_another_process_is_left_to_it(full, tmp_path, caplog):
    import fcntl
    import logging
    caplog.set_level(logging.INFO, logger='engine.runfolder')
    (x, meta), res, out = full
    run = tmp_path / 'shared'
    (run / 'folds').mkdir(parents=True)
    key = loso.plan_folds(meta)[1][0]
    with open(run / 'folds' / f'{key}.lock', 'a') as other:       # another process is training this fold
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert runfolder.run(x, meta, CFG, run) is None
        assert not (run / 'folds' / f'{key}.csv').exists() and len(_folds(run)) == 3
        assert f'{key}: another process is training this fold' in caplog.text
    # That process died without finishing: its lock went with it, and the next run trains the fold.
    assert runfolder.run(x, meta, CFG, run) == res
    assert _folds(run) == _folds(out)
