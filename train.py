"""One LOSO fold's training (paper §III.B, §IV): its schedule, its step, and the loop over many folds.

A fold is a plain PartNet with its own Adam, its own gradient clipping and its own BatchNorm statistics. Every
random choice of its training (the batches of every step, the augmentation of every sample) is drawn up front
from the fold's own seed, and the step reads its batch, its learning rates and the DANN coefficient from device
tensors indexed by a step counter that the step itself advances. So the step never synchronises with the host and
never changes shape, and:
  - on CPU it runs eagerly, one fold after another in each of `jobs` processes;
  - on CUDA it is captured once per fold as a CUDA graph and replayed (a 32-sample ResNet18 step is launch-bound:
    replay removes the launches), with the graphs of several folds replayed on their own CUDA streams at once.
A fold's result therefore depends on its seed and settings alone, not on which folds train beside it.
"""
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import model

# Folds replayed at once on CUDA, each on its own stream (BENCHMARKS.md: measured on one H100).
CUDA_STREAMS = 17
# Per step the step accumulates, per epoch: Lt (top), Lb (bottom), Lc (joint), Ladv, correct predictions, samples.
LOSSES = ('lt', 'lb', 'lc', 'ladv')


# ----------------------------------------------------------------------------------------------- the schedule
def steps_per_epoch(pool, batch_size):
    """Steps in one epoch: the whole training pool (micro + macro) over the batch size, the same for every fold."""
    return max(1, math.ceil(pool / batch_size))


def batch_schedule(train_idx, n_steps, batch_size, gen):
    """(n_steps, batch) long: batches drawn from successive shuffles of the training set, across epoch ends."""
    train_idx = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
    need = n_steps * batch_size
    perms = [train_idx[torch.randperm(len(train_idx), generator=gen)]
             for _ in range(math.ceil(need / len(train_idx)))]
    return torch.cat(perms)[:need].view(n_steps, batch_size)


def augment_params(n, gen, rotate=10.0, zoom=0.9, flip=True):
    """(n, 5) float: per sample a rotation (radians), the crop's side s in [zoom, 1], a mirror sign, a shift (x, y)."""
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(rotate)
    s = zoom + torch.rand(n, generator=gen) * (1 - zoom)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (1 - s)[:, None]      # the crop stays inside the image
    return torch.cat([ang[:, None], s[:, None], sign[:, None], shift], 1)


def augment(x, p):
    """x (B, 3, H, W) u, v, strain rotated, zoomed and mirrored by p (B, 5), with the (u, v) vectors moved too.

    The content is transformed by T = (rotation . zoom . mirror) about the centre plus a shift; grid_sample needs
    the inverse map A = T^-1. A vector field follows the content, so (u, v) are multiplied by T's linear part: a
    mirror negates u, a rotation turns the vectors, a zoom-in by 1/s stretches them by 1/s. Strain is invariant.
    """
    ang, s, sign, shift = p[:, 0], p[:, 1], p[:, 2], p[:, 3:5]
    cos, sin = torch.cos(ang), torch.sin(ang)
    # A (output -> input, normalised coordinates): mirror . zoom(s) . rotate(-ang), then the shift.
    a = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) * s[:, None, None]
    a = a * torch.stack([sign, torch.ones_like(sign)], -1)[:, :, None]
    grid = F.affine_grid(torch.cat([a, shift[:, :, None]], 2).to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    # T's linear part is A^-1 = R(ang) . M / s, written out so no batched inverse runs inside the step.
    t = torch.stack([torch.stack([cos * sign, -sin], -1), torch.stack([sin * sign, cos], -1)], -2) / s[:, None, None]
    uv = torch.einsum('bij,bjhw->bihw', t.to(x.dtype), out[:, :2])
    return torch.cat([uv, out[:, 2:]], 1)


def heads_lr(cfg, epoch):
    """Learning rate of the heads and the discriminator at `epoch`: lr_heads halved every lr_step epochs."""
    return cfg.lr_heads * 0.5 ** (epoch // cfg.lr_step)


# ----------------------------------------------------------------------------------------------- one fold
@dataclass
class Fold:
    """One fold's model, optimiser and every device tensor its step reads or writes."""
    key: str
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    batches: torch.Tensor     # (steps, B) long: sample indices of every step
    aug: torch.Tensor         # (steps, B, 5): augmentation parameters of every sample of every step
    test: torch.Tensor        # (n_test,) long: the held-out subject's samples
    t: torch.Tensor           # () long: the step counter
    lr: torch.Tensor          # (2,): backbone and heads learning rates, read by Adam
    sums: torch.Tensor        # (epochs, 6): per epoch LOSSES, correct, samples
    preds: torch.Tensor       # (epochs, n_test) long: test predictions after the epochs evaluated
    graph: object = None      # its CUDA graph, once captured


def fold_seed(seed, key):
    """Seed of one fold from the run's seed and the fold's name: independent of order, company and sharding."""
    return (seed * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(key))) % (2 ** 31)


def make_fold(key, train_idx, test_idx, cfg, pool, device, weights=None):
    """A fold ready to train: its net, its Adam, and its whole schedule drawn from fold_seed(cfg.seed, key)."""
    seed = fold_seed(cfg.seed, key)
    torch.manual_seed(seed)
    net = model.PartNet(parts=cfg.parts, weights=weights).to(device).to(memory_format=torch.channels_last)
    cuda = device.type == 'cuda'
    lr = torch.tensor([cfg.backbone_lr(), heads_lr(cfg, 0)], dtype=torch.float32, device=device)
    groups = [{'params': [p for n, p in net.named_parameters() if n.startswith('trunk.')], 'lr': lr[0]},
              {'params': [p for n, p in net.named_parameters() if not n.startswith('trunk.')], 'lr': lr[1]}]
    # Fused Adam: one kernel over all parameters; capturable keeps its step count on the device for the graph.
    opt = torch.optim.Adam(groups, weight_decay=cfg.weight_decay, fused=True, capturable=cuda)
    gen = torch.Generator().manual_seed(seed)
    n_steps = steps_per_epoch(pool, cfg.batch_size) * cfg.epochs
    batches = batch_schedule(train_idx, n_steps, cfg.batch_size, gen)
    aug = augment_params(n_steps * cfg.batch_size, gen, cfg.rotate, cfg.zoom).view(n_steps, cfg.batch_size, 5)
    test = torch.as_tensor(np.asarray(test_idx), dtype=torch.long)
    return Fold(key, net, opt, batches.to(device), aug.to(device), test.to(device),
                torch.zeros((), dtype=torch.long, device=device), lr,
                torch.zeros(cfg.epochs, 2 + len(LOSSES), device=device),
                torch.zeros(cfg.epochs, len(test), dtype=torch.long, device=device))


def bf16(cfg, device):
    """Whether convolutions and matmuls run in bf16: 'auto' = where the hardware has fast bf16 (CUDA sm80+, CPUs
    with AVX-512 or AMX); on other CPUs oneDNN falls back to a convolution ~20x slower than fp32."""
    if cfg.precision != 'auto':
        return cfg.precision == 'bf16'
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported()
    return device.type == 'cpu' and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast(cfg, device):
    """bf16 autocast of convolutions and matmuls (BatchNorm and the losses stay fp32), or nothing for fp32."""
    # cache_enabled=False: a captured graph must not keep autocast's cast copies of the weights from capture time.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16(cfg, device), cache_enabled=False)


def forward_losses(net, xb, yb, db, coeff, lambda_adv):
    """PartNet's outputs on a batch and L = Lt + Lb + Lc - lambda Ladv with its parts (§III.B)."""
    out = net(xb, coeff)
    total, parts = model.losses(out, yb, db, lambda_adv)
    return out['joint'], total, parts


def train_step(f, data, cfg):
    """One optimisation step of fold f on its scheduled batch: L = Lt + Lb + Lc - lambda Ladv (§III.B).

    Only tensor operations: no host synchronisation and fixed shapes, so the same code runs eagerly or captured.
    """
    x, y, dom = data
    steps = f.batches.shape[0] // cfg.epochs
    t = f.t
    idx = f.batches.index_select(0, t.view(1))[0]
    xb = x.index_select(0, idx)
    if cfg.augment:
        xb = augment(xb, f.aug.index_select(0, t.view(1))[0])
    xb = xb.contiguous(memory_format=torch.channels_last)
    yb = y.index_select(0, idx)
    epoch = torch.div(t, steps, rounding_mode='floor')
    coeff = model.dann_coeff(t.float() / f.batches.shape[0], cfg.dann_gamma)
    f.lr[1].copy_(cfg.lr_heads * torch.pow(0.5, torch.div(epoch, cfg.lr_step, rounding_mode='floor').float()))
    f.opt.zero_grad(set_to_none=True)
    with autocast(cfg, x.device):
        joint, total, parts = forward_losses(f.net, xb, yb, dom.index_select(0, idx) if cfg.adv else None, coeff,
                                             cfg.lambda_adv)
    total.backward()
    torch.nn.utils.clip_grad_norm_(f.net.parameters(), cfg.grad_clip, foreach=True)
    f.opt.step()
    zero = torch.zeros((), device=x.device)
    correct = (joint.argmax(-1) == yb).sum().float()
    row = torch.stack([parts.get('top', zero), parts.get('bottom', zero), parts['joint'], parts.get('adv', zero),
                       correct, torch.full((), float(len(idx)), device=x.device)])
    f.sums.index_add_(0, epoch.view(1), row.float()[None])
    t.add_(1)


@torch.no_grad()
def evaluate(f, data, cfg, epoch):
    """Stores the fold's test predictions after `epoch` (eval mode: BatchNorm's running statistics)."""
    x = data[0]
    f.net.eval()
    with autocast(cfg, x.device):
        out = f.net(x.index_select(0, f.test).contiguous(memory_format=torch.channels_last), 0.0)
    f.net.train()
    f.preds[epoch].copy_(out['joint'].argmax(-1))


def capture(f, data, cfg, warmup=3):
    """Captures fold f's train_step as a CUDA graph, leaving the fold exactly as it was before (step 0)."""
    state = {k: v.clone() for k, v in f.net.state_dict().items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):       # warm-up off the capture stream: cuDNN choices, Adam's state, allocations
        for _ in range(warmup):
            train_step(f, data, cfg)
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():               # undo the warm-up: weights, BatchNorm statistics, Adam's state, counters
        f.net.load_state_dict(state)
        for s in f.opt.state.values():
            for v in s.values():
                v.zero_()
        f.t.zero_(), f.sums.zero_()
    f.graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(f.graph):
        train_step(f, data, cfg)
    return f


def results(f, y, cfg):
    """(honest predictions after the last epoch, predictions of the best epoch on the test subject, per-epoch log).

    The second is the authors' selection (the epoch with the best test accuracy, the last on ties): optimistic,
    reported beside the honest one only with select_on_test. The log has LOSSES and the training accuracy.
    """
    preds = f.preds.cpu().numpy()
    sums = f.sums.cpu().numpy().astype(np.float64)
    truth = y.index_select(0, f.test).cpu().numpy()
    best = preds[-1]
    if cfg.select_on_test:
        acc = (preds == truth).mean(1)
        best = preds[len(acc) - 1 - int(np.argmax(acc[::-1]))]
    n = np.maximum(sums[:, -1:], 1)
    steps = f.batches.shape[0] // cfg.epochs
    log = [dict(zip(LOSSES + ('acc',), np.r_[sums[e, :4] / steps, sums[e, 4] / n[e, 0]].round(6).tolist()),
                epoch=e + 1) for e in range(cfg.epochs)]
    return preds[-1], best, log


def step_all(folds, data, cfg, streams=None):
    """One training step of every fold: its captured graph replayed on its own CUDA stream, or (streams None) the
    eager train_step."""
    for j, f in enumerate(folds):
        if streams:
            with torch.cuda.stream(streams[j]):
                f.graph.replay()
        else:
            train_step(f, data, cfg)


def train_all(train_idx, data, pool, cfg, device, weights=None, progress=None):
    """(the PartNet trained on every sample of train_idx, in eval mode, its per-epoch log): the final model, with a
    fold's schedule and step but no held-out subject, so nothing is evaluated (seed: fold_seed(cfg.seed, 'all'))."""
    f = make_fold('all', train_idx, [], cfg, pool, device, weights)
    graphs = device.type == 'cuda'
    if graphs:
        capture(f, data, cfg)
    streams = [torch.cuda.current_stream()] if graphs else None
    steps = f.batches.shape[0] // cfg.epochs
    for _ in range(cfg.epochs):
        for _ in range(steps):
            step_all([f], data, cfg, streams)
        if progress is not None:
            progress.update(steps)
    if graphs:
        torch.cuda.synchronize()
    return f.net.eval(), results(f, data[1], dataclasses.replace(cfg, select_on_test=False))[2]


def train_folds(specs, data, pool, cfg, device, weights=None, streams=1, graphs=None, progress=None, claim=None):
    """Trains every fold of `specs` [(key, train_idx, test_idx)]; yields (key, honest, selected, log) per fold.

    `data` is (x, y, domain) on the device; `pool` the number of micro + macro samples, which sets the epoch.
    `claim(key)`, asked just before a fold would train, may say False: then another process has it, and it is
    skipped here.

    On CUDA (graphs=None or True) folds go in waves of `streams`: each fold's step is captured as a CUDA graph and
    the graphs of a wave are replayed on their own streams, step by step. Elsewhere folds train eagerly, one by one.
    """
    graphs = device.type == 'cuda' if graphs is None else graphs
    wave = max(1, streams) if graphs else 1
    queue = list(specs)
    while queue:
        mine = []
        while queue and len(mine) < wave:
            spec = queue.pop(0)
            if claim is None or claim(spec[0]):
                mine.append(spec)
        if not mine:
            return
        folds = [make_fold(key, tr, te, cfg, pool, device, weights) for key, tr, te in mine]
        n_steps = folds[0].batches.shape[0]
        steps = n_steps // cfg.epochs
        if graphs:
            ss = [torch.cuda.Stream() for _ in folds]
            for f in folds:
                capture(f, data, cfg)
            torch.cuda.synchronize()
        for epoch in range(cfg.epochs):
            for _ in range(steps):
                step_all(folds, data, cfg, ss if graphs else None)
                if progress is not None:
                    progress.update(len(folds))
            if cfg.select_on_test or epoch == cfg.epochs - 1:
                for j, f in enumerate(folds):
                    if graphs:
                        with torch.cuda.stream(ss[j]):
                            evaluate(f, data, cfg, epoch)
                    else:
                        evaluate(f, data, cfg, epoch)
        if graphs:
            torch.cuda.synchronize()
        for f in folds:
            yield (f.key,) + results(f, data[1], cfg)
        del folds
