"""One fold's training: its schedule, its step, learning, and the CUDA-graph path against the eager one.

This file imports neither cv2, dlib, openpyxl nor scikit-learn, so it runs on a GPU machine that lacks them.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch
from toy import learnable

import config
import loso
import model
import train
from engine import cli, graphs, runfolder

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason='no CUDA device here: the CUDA-graph path is tested where one is')
TOY = cli.run_config(config.PAPER, size=40, epochs=2, batch_size=4, init='random', precision='fp32',
                          device='cpu', quiet=True, jobs=1)


def _data(x, meta, device='cpu'):
    return (torch.as_tensor(x, device=device), torch.as_tensor([m.label for m in meta], device=device),
            torch.as_tensor([int(m.domain == 'macro') for m in meta], device=device))


# ----------------------------------------------------------------------------------------------- the schedule
def test_batches_cover_the_training_set_once_per_shuffle():
    train_idx = np.array([3, 5, 7, 9, 11])
    b = train.batch_schedule(train_idx, 5, 4, torch.Generator().manual_seed(0))
    assert b.shape == (5, 4)
    flat = b.flatten().tolist()
    for k in range(0, 20, 5):             # 20 draws = 4 whole shuffles of the 5 samples
        assert sorted(flat[k:k + 5]) == [3, 5, 7, 9, 11]
    again = train.batch_schedule(train_idx, 5, 4, torch.Generator().manual_seed(0))
    assert torch.equal(b, again)


def test_no_fold_trains_on_its_test_subject_and_macro_only_trains():
    x, meta = learnable(n_subjects=4, per=3, macro=4)
    specs = loso.plan_folds(meta)
    assert len(specs) == 4
    macro = {i for i, m in enumerate(meta) if m.domain == 'macro'}
    for key, tr, te in specs:
        test_subjects = {(meta[i].dataset, meta[i].subject) for i in te}
        assert test_subjects == {tuple(key.split('_', 1))}
        assert not {(meta[i].dataset, meta[i].subject) for i in tr} & test_subjects
        assert macro <= set(tr.tolist()) and not macro & set(te.tolist())
        f = train.new_fold(key, tr, te, TOY, len(meta), torch.device('cpu'))
        assert not set(f.batches.flatten().tolist()) & set(te.tolist())      # every scheduled batch
    assert sorted(i for _, _, te in specs for i in te) == [i for i, m in enumerate(meta) if m.domain == 'micro']


def _field(u, v, n=33):
    x = torch.zeros(1, 3, n, n)
    x[0, 0], x[0, 1], x[0, 2] = u, v, 0.5
    return x


def _params(n, rotate=0.0, zoom=1.0, flip=False, seed=0):
    return train.augment_params(n, torch.Generator().manual_seed(seed), rotate, zoom, flip)


def test_augment_mirror_negates_u_and_rotation_turns_vectors():
    x = _field(1.0, 0.0).repeat(64, 1, 1, 1)
    out = train.augment(x, _params(64, flip=True))
    assert set(torch.round(out[:, 0, 16, 16]).tolist()) == {-1.0, 1.0}      # mirrored samples have u negated
    assert torch.allclose(out[:, 1, 16, 16], torch.zeros(64), atol=1e-6)
    assert torch.allclose(out[:, 2, 16, 16], torch.full((64,), 0.5))         # strain is a magnitude: unchanged
    out = train.augment(x, _params(64, rotate=30.0))
    u, v = out[:, 0, 16, 16], out[:, 1, 16, 16]
    assert torch.allclose(u ** 2 + v ** 2, torch.ones(64), atol=1e-5)       # a rotation keeps the length
    assert v.abs().max() > 0.2 and v.abs().max() <= math.sin(math.radians(30)) + 1e-5


def test_augment_zoom_stretches_vectors_by_its_factor():
    x = _field(1.0, -0.5).repeat(32, 1, 1, 1)
    p = _params(32, zoom=0.5)
    out = train.augment(x, p)
    s = p[:, 1]
    assert s.min() < 0.7                    # some real zooms were drawn
    torch.testing.assert_close(out[:, 0, 16, 16], 1.0 / s)                  # a crop of side s shown at full size
    torch.testing.assert_close(out[:, 1, 16, 16], -0.5 / s)
    torch.testing.assert_close(out[:, 2, 16, 16], torch.full((32,), 0.5))


def test_augment_moves_content_and_vectors_together():
    # A vector field pointing away from the centre stays radial whatever rotation and mirror are applied.
    n = 33
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing='ij')
    x = torch.stack([xx, yy, torch.zeros_like(xx)])[None].repeat(16, 1, 1, 1)
    out = train.augment(x, _params(16, rotate=20.0, flip=True, seed=1))
    inner = slice(12, 21)
    cross = out[:, 0, inner, inner] * yy[inner, inner] - out[:, 1, inner, inner] * xx[inner, inner]
    assert cross.abs().max() < 0.05


# ----------------------------------------------------------------------------------------------- the step
def _fold(cfg=TOY, **kw):
    x, meta = learnable(n_subjects=3, per=3, macro=3, size=cfg.size)
    key, tr, te = loso.plan_folds(meta)[0]
    cfg = dataclasses.replace(cfg, **kw)
    return train.new_fold(key, tr, te, cfg, len(meta), torch.device('cpu')), _data(x, meta), cfg


@pytest.mark.slow
def test_learning_rate_halves_every_lr_step_epochs_and_the_trunk_follows_init():
    f, data, cfg = _fold(epochs=5, lr_step=2, lr_heads=1e-3)
    steps = f.batches.shape[0] // cfg.epochs
    seen = []
    for _ in range(cfg.epochs):
        for _ in range(steps):
            train.fold_step(f, data, cfg)
            seen.append(f.lr.tolist())
    per_epoch = [seen[e * steps][1] for e in range(cfg.epochs)]
    assert per_epoch == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    assert per_epoch == pytest.approx([train.heads_lr(cfg, e) for e in range(cfg.epochs)])
    assert all(s[0] == pytest.approx(1e-3) for s in seen)             # random init: the trunk at the heads' rate
    assert dataclasses.replace(cfg, init='imagenet').backbone_lr() == 1e-5
    assert dataclasses.replace(cfg, lr_backbone=3e-4).backbone_lr() == 3e-4


def test_dann_coefficient_follows_the_schedule_step_by_step(monkeypatch):
    f, data, cfg = _fold()
    seen = []
    real = model.dann_coeff
    monkeypatch.setattr(model, 'dann_coeff', lambda p, g: seen.append(float(p)) or real(p, g))
    n = f.batches.shape[0]
    for _ in range(n):
        train.fold_step(f, data, cfg)
    assert seen == pytest.approx([k / n for k in range(n)])


def _trained(cfg=TOY, **kw):
    """A fold trained to its end by the epoch loop (train.train)."""
    f, data, cfg = _fold(cfg, **kw)
    train.train(f, data, cfg)
    return f, data, cfg


def test_every_training_step_feeds_the_network_the_dann_coefficient_of_its_progress(monkeypatch):
    # What reaches the reversal layer in training, step by step: 2 / (1 + exp(-gamma t / T)) - 1 (Ganin &
    # Lempitsky), from 0 at the first step towards 1; evaluation passes 0.
    fed = []
    forward = model.PartNet.forward

    def recording(net, x, grl_coeff=1.0):
        if net.training:
            fed.append(float(grl_coeff))
        return forward(net, x, grl_coeff)
    monkeypatch.setattr(model.PartNet, 'forward', recording)
    f, _, cfg = _trained(epochs=3, dann_gamma=10.0)
    n = f.batches.shape[0]
    assert len(fed) == n
    assert fed == pytest.approx([2 / (1 + math.exp(-10.0 * t / n)) - 1 for t in range(n)], abs=1e-6)


def test_evaluation_uses_batchnorm_running_statistics_and_leaves_them_alone():
    # Each training step updates every BatchNorm's statistics once; the evaluations after each epoch (in eval mode)
    # never do, and the fold's last predictions are the eval-mode predictions of its final weights.
    f, data, cfg = _trained(epochs=3)
    bns = [m for m in f.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(int(m.num_batches_tracked) == f.batches.shape[0] for m in bns)
    f.net.eval()
    with torch.no_grad():
        expected = f.net(data[0][f.test].contiguous(memory_format=torch.channels_last), 0.0)['joint'].argmax(-1)
    assert torch.equal(f.preds[-1], expected)


def test_the_trunk_trains_at_its_own_rate_and_the_heads_at_theirs():
    # A trunk rate 10^7 times below the heads': the trunk barely moves while the heads learn.
    f, data, cfg = _fold(epochs=2, lr_backbone=1e-9, lr_heads=1e-2)
    before = {n: p.detach().clone() for n, p in f.net.named_parameters()}
    train.train(f, data, cfg)
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in f.net.named_parameters()}
    trunk = [v for n, v in moved.items() if n.startswith('trunk.')]
    heads = [v for n, v in moved.items() if not n.startswith('trunk.')]
    assert trunk and max(trunk) < 1e-6, max(trunk)
    assert min(heads) > 1e-4, min(heads)


@pytest.mark.slow
def test_a_failed_graph_capture_falls_back_to_eager_training_with_one_warning(caplog):
    # Capture needs CUDA: asked for on this CPU, it fails, and the wave trains eagerly, exactly as without graphs.
    import logging
    x, meta = learnable(n_subjects=2, per=3, macro=3, size=40)
    specs = loso.plan_folds(meta)
    data = _data(x, meta)
    dev = torch.device('cpu')
    eager = list(graphs.train_folds(specs, data, len(meta), TOY, dev, streams=2, use_graphs=False))
    with caplog.at_level(logging.WARNING, logger='engine.graphs'):
        tried = list(graphs.train_folds(specs, data, len(meta), TOY, dev, streams=2, use_graphs=True))
    warnings = [r for r in caplog.records if 'CUDA graphs' in r.getMessage()]
    assert len(warnings) == 1 and 'training eagerly' in warnings[0].getMessage()
    assert [k for k, *_ in tried] == [k for k, *_ in eager]
    for a, b in zip(eager, tried):
        assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2]) and a[3] == b[3]


def test_graphs_are_used_on_cuda_unless_turned_off(monkeypatch):
    # The decision alone: on a CUDA device graphs unless --no-graphs; never on CPU.
    asked = []
    monkeypatch.setattr(graphs, 'wave', lambda specs, *a: asked.append(a[5]) or ([], a[5]))
    spec = [('k', np.arange(3), np.arange(3, 4))]
    for device, on in (('cuda', True), ('cuda', False), ('cpu', True)):
        list(graphs.train_folds(spec, None, 4, dataclasses.replace(TOY, graphs=on), torch.device(device)))
    assert asked == [True, False, False]


def test_gradients_are_clipped_over_the_folds_own_parameters():
    f, data, cfg = _fold(grad_clip=1e-3)
    train.fold_step(f, data, cfg)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in f.net.parameters()]))
    assert norm == pytest.approx(1e-3, rel=1e-3)


def test_the_epoch_chosen_on_test_is_the_best_fold_f1_last_on_ties():
    f, data, cfg = _fold(epochs=4)
    truth = data[1][f.test]
    wrong = (truth + 1) % 3
    f.preds.copy_(torch.stack([wrong, truth, wrong, truth]))          # epochs 2 and 4 are right: the last wins
    f.preds[1, 0] = wrong[0]                                           # now only epoch 4 is all right
    honest, best, log, _ = graphs.results(f, data, cfg)
    assert np.array_equal(honest, truth.numpy()) and np.array_equal(best, truth.numpy())
    f.preds.copy_(torch.stack([truth, wrong, wrong, wrong]))
    honest, best, _, _ = graphs.results(f, data, cfg)
    assert np.array_equal(best, truth.numpy()) and np.array_equal(honest, wrong.numpy())
    assert [r['epoch'] for r in log] == [1, 2, 3, 4] and set(log[0]) == {'epoch', *train.LOSSES, 'acc'}


@pytest.mark.slow
def test_a_fold_trains_the_same_alone_or_beside_others():
    x, meta = learnable(n_subjects=3, per=3, macro=3, size=40)
    specs = loso.plan_folds(meta)
    data = _data(x, meta)
    dev = torch.device('cpu')
    cfg = dataclasses.replace(TOY, batch_size=8)
    together = {r[0]: r for r in graphs.train_folds(specs, data, len(meta), cfg, dev)}
    alone = list(graphs.train_folds(specs[1:2], data, len(meta), cfg, dev))[0]
    assert np.array_equal(alone[1], together[alone[0]][1]) and alone[3] == together[alone[0]][3]


@pytest.mark.slow
def test_training_learns_a_learnable_set():
    # Fails when nothing learns: with lr_heads=lr_backbone=0 this set scores UF1 about 0.3.
    x, meta = learnable(n_subjects=2, per=6, macro=4, size=40)
    cfg = dataclasses.replace(TOY, epochs=12)
    specs = loso.plan_folds(meta)
    test_of = {k: te for k, _, te in specs}
    labels, preds = [], []
    for key, pred, _, log, _ in graphs.train_folds(specs, _data(x, meta), len(meta), cfg, torch.device('cpu')):
        labels += [meta[i].label for i in test_of[key]]
        preds += pred.tolist()
        assert log[-1]['lc'] < log[0]['lc'] and log[-1]['acc'] > 0.9     # the joint loss fell, the batches fit
    uf1, uar = loso.uf1_uar(labels, preds)
    assert uf1 >= 0.9, (uf1, uar)


# ----------------------------------------------------------------------------------------------- CUDA
def _cuda_setup(size=64, precision='fp32', n_subjects=3):
    x, meta = learnable(n_subjects=n_subjects, per=4, macro=6, size=size)
    cfg = dataclasses.replace(TOY, size=size, epochs=3, batch_size=8, precision=precision, device='cuda')
    return loso.plan_folds(meta), _data(x, meta, 'cuda'), len(meta), cfg


@needs_cuda
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_cuda_graph_replay_trains_like_eager(precision):
    torch.backends.cudnn.deterministic = True
    specs, data, pool, cfg = _cuda_setup(precision=precision)
    dev = torch.device('cuda')
    eager = list(graphs.train_folds(specs[:1], data, pool, cfg, dev, use_graphs=False))[0]
    graph = list(graphs.train_folds(specs[:1], data, pool, cfg, dev, use_graphs=True))[0]
    # Same kernels in the same order: the losses agree to rounding, the predictions exactly or nearly.
    for a, b in zip(eager[3], graph[3]):
        for k in train.LOSSES:
            assert a[k] == pytest.approx(b[k], rel=1e-3 if precision == 'fp32' else 2e-2, abs=1e-4), (k, a, b)
    assert np.mean(eager[1] == graph[1]) >= (1.0 if precision == 'fp32' else 0.75)


@needs_cuda
def test_cuda_folds_on_streams_match_folds_alone():
    torch.backends.cudnn.deterministic = True
    specs, data, pool, cfg = _cuda_setup()
    dev = torch.device('cuda')
    together = {r[0]: r for r in graphs.train_folds(specs, data, pool, cfg, dev, streams=3)}
    alone = list(graphs.train_folds(specs[2:3], data, pool, cfg, dev, streams=1))[0]
    other = together[alone[0]]
    assert np.array_equal(alone[1], other[1]) and np.array_equal(alone[2], other[2])
    for a, b in zip(alone[3], other[3]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


@needs_cuda
def test_cuda_default_run_learns(tmp_path):
    # The GPU default (bf16, CUDA graphs, folds on streams) through runfolder.run, as mer.py calls it.
    x, meta = learnable(n_subjects=4, per=4, macro=6, size=64)
    cfg = cli.run_config(config.PAPER, size=64, epochs=20, batch_size=8, init='random', device='cuda',
                              quiet=True)
    res = runfolder.run(x, meta, cfg, tmp_path)
    assert res['honest']['all']['uf1'] >= 0.9, res
    assert (tmp_path / 'curves.png').is_file() and (tmp_path / 'train_log.csv').is_file()
