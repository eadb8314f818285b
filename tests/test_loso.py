import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score

import loso


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


def _field(u, v, n=32):
    x = torch.zeros(1, 3, n, n)
    x[0, 0], x[0, 1], x[0, 2] = u, v, 0.5
    return x


def test_augment_mirror_negates_u_and_rotation_turns_vectors():
    gen = torch.Generator().manual_seed(0)
    x = _field(1.0, 0.0)
    out = loso.augment(x.repeat(64, 1, 1, 1), gen, rotate=0.0, scale=(1.0, 1.0), flip=True)
    us = out[:, 0, 16, 16]
    assert set(torch.round(us).tolist()) == {-1.0, 1.0}              # mirrored samples have u negated
    assert torch.allclose(out[:, 1, 16, 16], torch.zeros(64), atol=1e-6)
    assert torch.allclose(out[:, 2, 16, 16], torch.full((64,), 0.5))  # strain is a magnitude: unchanged
    out = loso.augment(x.repeat(64, 1, 1, 1), gen, rotate=30.0, scale=(1.0, 1.0), flip=False)
    u, v = out[:, 0, 16, 16], out[:, 1, 16, 16]
    assert torch.allclose(u ** 2 + v ** 2, torch.ones(64), atol=1e-5)  # a rotation keeps the length
    assert v.abs().max() > 0.2 and v.abs().max() <= math.sin(math.radians(30)) + 1e-5


def test_augment_moves_content_and_vectors_together():
    # A vector field pointing away from the centre stays radial whatever rotation is applied.
    n = 33
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing='ij')
    x = torch.stack([xx, yy, torch.zeros_like(xx)])[None].repeat(16, 1, 1, 1)
    out = loso.augment(x, torch.Generator().manual_seed(1), rotate=20.0, scale=(1.0, 1.0), flip=True)
    inner = slice(12, 21)
    cross = out[:, 0, inner, inner] * yy[inner, inner] - out[:, 1, inner, inner] * xx[inner, inner]
    assert cross.abs().max() < 0.05


def test_plan_shards_whole_groups():
    keys = [f's{i}' for i in range(7)]
    assert loso.plan(keys, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert loso.plan(keys, 3, (2, 2)) == [[3, 4, 5]]
    assert sorted(j for i in (1, 2, 3) for g in loso.plan(keys, 2, (i, 3)) for j in g) == list(range(7))


@dataclass(frozen=True)
class S:
    dataset: str
    subject: str
    clip: str
    label: int
    domain: str


def _toy(n_subjects=4, per=3, macro=4, size=64, seed=0):
    """Features whose class is readable from a blob's position, so a tiny model can learn them."""
    rng = np.random.default_rng(seed)
    meta, xs = [], []
    for i in range(n_subjects * per + macro):
        label = i % 3
        x = rng.normal(0, 0.1, (3, size, size)).astype(np.float32)
        x[label, 8:24, 8:24] += 1.0
        xs.append(x)
        domain = 'micro' if i < n_subjects * per else 'macro'
        meta.append(S('casme2' if i % 2 else 'samm', f'sub{i // per:02d}' if domain == 'micro' else 'S005',
                      f'c{i}', label, domain))
    return np.stack(xs), meta


CFG = dict(parts=True, adv=True, ckplus=True, epochs=2, batch_size=4, lr_backbone=1e-3, lr_heads=1e-3,
           lr_step=10, weight_decay=1e-6, grad_clip=1.0, lambda_adv=1.0, seed=0, augment=True, select_on_test=True,
           stack=1, bf16=False, device='cpu', quiet=True)


def _folds(out):
    return {p.name: p.read_text() for p in sorted((out / 'folds').glob('*.csv'))}


def test_run_writes_the_run_folder_and_is_deterministic(tmp_path):
    x, meta = _toy()
    a = loso.run(x, meta, CFG, tmp_path / 'a')
    b = loso.run(x, meta, CFG, tmp_path / 'b')
    assert a == b and _folds(tmp_path / 'a') == _folds(tmp_path / 'b')
    assert set(a) == {'honest', 'selected_on_test'} and a['honest']['all']['n'] == 12
    out = tmp_path / 'a'
    for f in ('metrics.json', 'megc_log.txt', 'confusion_all.png', 'confusion_casme2.png', 'confusion_samm.png'):
        assert (out / f).is_file(), f
    log = (out / 'megc_log.txt').read_text().splitlines()
    assert log[0] in ('samm sub00', 'casme2 sub00') and len(log[1].split()) == 3


def test_resume_after_a_kill_gives_identical_results(tmp_path, monkeypatch):
    x, meta = _toy()
    full = loso.run(x, meta, CFG, tmp_path / 'full')
    written = []
    real = loso.write_fold

    def dying(out, key, rows):
        if len(written) == 2:
            raise KeyboardInterrupt('killed')
        written.append(key)
        real(out, key, rows)
    monkeypatch.setattr(loso, 'write_fold', dying)
    with pytest.raises(KeyboardInterrupt):
        loso.run(x, meta, CFG, tmp_path / 'resumed')
    assert len(_folds(tmp_path / 'resumed')) == 2
    monkeypatch.setattr(loso, 'write_fold', real)
    assert loso.run(x, meta, CFG, tmp_path / 'resumed') == full
    assert _folds(tmp_path / 'resumed') == _folds(tmp_path / 'full')


def test_shards_merged_equal_a_single_run(tmp_path):
    x, meta = _toy()
    single = loso.run(x, meta, CFG, tmp_path / 'single')
    assert loso.run(x, meta, CFG, tmp_path / 'sharded', shard=(1, 2)) is None
    assert loso.run(x, meta, CFG, tmp_path / 'sharded', shard=(2, 2)) == single
    assert _folds(tmp_path / 'sharded') == _folds(tmp_path / 'single')


def test_stacked_folds_train_like_separate_folds(tmp_path):
    x, meta = _toy()
    cfg = dict(CFG, augment=False, select_on_test=False)
    loso.run(x, meta, dict(cfg, stack=1), tmp_path / 'one')
    loso.run(x, meta, dict(cfg, stack=4), tmp_path / 'four')
    assert _folds(tmp_path / 'one') == _folds(tmp_path / 'four')


def test_config_mismatch_is_refused(tmp_path):
    loso.check_config(tmp_path, {'epochs': 2, 'device': 'cpu'})
    loso.check_config(tmp_path, {'epochs': 2, 'device': 'cuda'})     # the device may change on resume
    with pytest.raises(SystemExit, match='other settings \\(epochs\\)'):
        loso.check_config(tmp_path, {'epochs': 3, 'device': 'cpu'})


def test_folds_trained_in_worker_processes_match_one_process(tmp_path):
    # --jobs: groups of folds train in spawned processes that share the inputs; the fold files are the same.
    x, meta = _toy()
    one = loso.run(x, meta, dict(CFG, jobs=1), tmp_path / 'one')
    two = loso.run(x, meta, dict(CFG, jobs=2), tmp_path / 'two')
    assert one == two and _folds(tmp_path / 'one') == _folds(tmp_path / 'two')
