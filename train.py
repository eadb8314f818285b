"""One LOSO fold's training and its result (paper §III.B, §IV, with the authors' code's schedule).

A fold trains a fresh PartNet on its training pool (every other micro subject and every macro sample) for
`epochs` epochs of Adam on L = Lt + Lb + Lc - lambda Ladv: the heads at lr_heads halved every lr_step epochs, the
trunk at its own rate, gradients clipped to grad_clip, batches augmented as flow (the vectors turn with the
content). After every epoch its held-out subject is predicted; the fold's result is its prediction after the
last epoch, nothing chosen on the test subject.

To follow it, top to bottom:
    new_fold    the fold: its net, its Adam, and its whole schedule drawn up front from its own seed (its batches,
                their augmentation), so a fold's result depends on its seed and settings alone
    fold_step   one step t of the schedule: the batch, the epoch's learning rate, the DANN progress p = t / T,
                then `step`: L = Lt + Lb + Lc - lambda Ladv, clipping, Adam
    train       the epoch loop: every step of every epoch, the test subject predicted after each epoch
    results     the rule: the fold's predictions after its last epoch, and its per-epoch log
The schedule lives in tensors indexed by the step counter, so a step reads nothing from the host and never
changes shape: the engine (engine/graphs.py) can record it once and run it again on the GPU, and a fold stopped
after any step goes on from its saved tensors exactly as if never stopped.
"""
import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import model

# The terms of the loss, as the paper names them: top (eyes), bottom (mouth), joint classifier, adversarial.
LOSSES = ('lt', 'lb', 'lc', 'ladv')
# The columns of a fold's per-epoch sums: the loss terms, then its correct predictions and its samples.
SUMS = LOSSES + ('correct', 'samples')


# ----------------------------------------------------------------------------------------------- the schedule
def fold_seed(seed, key):
    """Seed of one fold from the run's seed and the fold's name: independent of order, company and sharding."""
    return (seed * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(key))) % (2 ** 31)


def steps_per_epoch(n_samples, batch_size):
    """Steps in one epoch: the whole training pool (micro + macro) over the batch size, the same for every fold."""
    return max(1, math.ceil(n_samples / batch_size))


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
    """Learning rate of the heads and the discriminator at `epoch` (an int or a tensor): lr_heads halved every
    lr_step epochs."""
    return cfg.lr_heads * 0.5 ** (epoch // cfg.lr_step)


def optimiser(net, cfg, lr):
    """Adam with two groups, the trunk at lr[0] and the heads and discriminator at lr[1] (a tensor, which each step
    sets to its epoch's rate); fused: one kernel over all parameters."""
    groups = [{'params': [p for n, p in net.named_parameters() if n.startswith('trunk.')], 'lr': lr[0]},
              {'params': [p for n, p in net.named_parameters() if not n.startswith('trunk.')], 'lr': lr[1]}]
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay, fused=True)


# ----------------------------------------------------------------------------------------------- precision
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
    # cache_enabled=False: the weights are cast afresh at every step, never taken from an earlier step's copy.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16(cfg, device), cache_enabled=False)


# ----------------------------------------------------------------------------------------------- one fold
@dataclass
class Fold:
    """One fold's model, optimiser and every tensor its steps read or write."""
    key: str
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    batches: torch.Tensor     # (steps, B) long: sample indices of every step
    aug: torch.Tensor         # (steps, B, 5): augmentation parameters of every sample of every step
    test: torch.Tensor        # (n_test,) long: the held-out subject's samples
    t: torch.Tensor           # () long: the step counter
    lr: torch.Tensor          # (2,): trunk and heads learning rates, read by Adam
    sums: torch.Tensor        # (epochs, len(SUMS)): per epoch the loss terms, correct predictions, samples
    preds: torch.Tensor       # (epochs, n_test) long: test predictions after each epoch
    logits: torch.Tensor      # (n_test, classes): the joint classifier's test logits after the last epoch tested


def fold_data(x, meta, device):
    """(inputs, labels, domains 0 micro / 1 macro) of the samples in `meta`, as tensors on the device."""
    return (torch.as_tensor(x, device=device), torch.as_tensor([m.label for m in meta], device=device),
            torch.as_tensor([int(m.domain == 'macro') for m in meta], device=device))


def new_fold(key, train_idx, test_idx, cfg, n_samples, device, weights=None):
    """A fold ready to train: its net, its Adam, and its whole schedule drawn from fold_seed(cfg.seed, key)."""
    seed = fold_seed(cfg.seed, key)
    torch.manual_seed(seed)
    net = model.PartNet(parts=cfg.parts, hidden=cfg.hidden, weights=weights).to(device)
    net = net.to(memory_format=torch.channels_last)
    lr = torch.tensor([cfg.backbone_lr(), heads_lr(cfg, 0)], dtype=torch.float32, device=device)
    opt = optimiser(net, cfg, lr)
    gen = torch.Generator().manual_seed(seed)
    n_steps = steps_per_epoch(n_samples, cfg.batch_size) * cfg.epochs
    batches = batch_schedule(train_idx, n_steps, cfg.batch_size, gen)
    aug = augment_params(n_steps * cfg.batch_size, gen, cfg.rotate, cfg.zoom).view(n_steps, cfg.batch_size, 5)
    test = torch.as_tensor(np.asarray(test_idx), dtype=torch.long)
    return Fold(key, net, opt, batches.to(device), aug.to(device), test.to(device),
                torch.zeros((), dtype=torch.long, device=device), lr,
                torch.zeros(cfg.epochs, len(SUMS), device=device),
                torch.zeros(cfg.epochs, len(test), dtype=torch.long, device=device),
                # the joint classifier's last bias has one entry per class
                torch.zeros(len(test), list(net.joint.parameters())[-1].numel(), device=device))


def step(net, opt, x, y, domain, coeff, cfg, amp=contextlib.nullcontext()):
    """One optimisation step on a batch: L = Lt + Lb + Lc - lambda Ladv (§III.B), its gradient clipped to norm
    grad_clip, Adam. `domain` None leaves the adversarial term out; `coeff` is the reversal's strength; `amp` the
    precision (autocast). Returns the joint logits and the loss terms."""
    opt.zero_grad(set_to_none=True)
    with amp:
        out = net(x, coeff)
        total, parts = model.losses(out, y, domain, cfg.lambda_adv)
    total.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip, foreach=True)
    opt.step()
    return out['joint'], parts


def fold_step(fold, data, cfg):
    """Step t of the fold's schedule (t its step counter, which then advances): the scheduled batch, augmented;
    the heads' rate of its epoch; the DANN coefficient at progress p = t / T (§III.B); `step`; its losses and
    correct predictions added to the epoch's sums. Tensor operations only, indexed by the counter on the device."""
    x, y, dom = data
    n_steps = fold.batches.shape[0]
    t = fold.t
    idx = fold.batches.index_select(0, t.view(1))[0]
    xb = x.index_select(0, idx)
    if cfg.augment:
        xb = augment(xb, fold.aug.index_select(0, t.view(1))[0])
    xb = xb.contiguous(memory_format=torch.channels_last)
    yb = y.index_select(0, idx)
    epoch = torch.div(t, n_steps // cfg.epochs, rounding_mode='floor')
    coeff = model.dann_coeff(t.float() / n_steps, cfg.dann_gamma)
    fold.lr[1].copy_(heads_lr(cfg, epoch))
    joint, parts = step(fold.net, fold.opt, xb, yb, dom.index_select(0, idx) if cfg.adv else None, coeff, cfg,
                        autocast(cfg, x.device))
    zero = torch.zeros((), device=x.device)
    correct = (joint.argmax(-1) == yb).sum().float()
    row = torch.stack([parts.get(k, zero) for k in LOSSES] + [correct, torch.full((), float(len(idx)),
                                                                                   device=x.device)])
    fold.sums.index_add_(0, epoch.view(1), row.float()[None])
    t.add_(1)


@torch.no_grad()
def logits(net, x, amp=contextlib.nullcontext()):
    """The joint classifier's logits of x, in eval mode (BatchNorm's running statistics)."""
    net.eval()
    with amp:
        out = net(x.contiguous(memory_format=torch.channels_last), 0.0)
    net.train()
    return out['joint'].float()


def evaluate(fold, data, cfg, epoch):
    """Stores the fold's test predictions after `epoch`, and their logits (the last epoch's stay)."""
    x = data[0]
    z = logits(fold.net, x.index_select(0, fold.test), autocast(cfg, x.device))
    fold.preds[epoch].copy_(z.argmax(-1))
    fold.logits.copy_(z)


def train(fold, data, cfg):
    """The epoch loop (§IV): every epoch, each scheduled step of the fold (`fold_step`), then its test subject
    predicted (`evaluate`; a fold without one, the final model, is never evaluated). engine/graphs.py makes the same
    calls, in the same order, for several folds at once: replayed from CUDA graphs, checkpointed, stoppable."""
    steps = fold.batches.shape[0] // cfg.epochs
    for epoch in range(cfg.epochs):
        for _ in range(steps):
            fold_step(fold, data, cfg)
        if len(fold.test):
            evaluate(fold, data, cfg, epoch)


def results(fold, cfg):
    """(the fold's predictions after its last epoch: its result; its predictions after every epoch, (epochs,
    n_test); its per-epoch log: the mean of each loss term over the epoch's steps and the training accuracy; its
    logits after the last epoch, (n_test, classes))."""
    preds = fold.preds.cpu().numpy()
    sums = dict(zip(SUMS, fold.sums.cpu().numpy().astype(np.float64).T))
    steps = fold.batches.shape[0] // cfg.epochs
    acc = sums['correct'] / np.maximum(sums['samples'], 1)
    log = [dict({k: float(np.round(sums[k][e] / steps, 6)) for k in LOSSES}, acc=float(np.round(acc[e], 6)),
                epoch=e + 1) for e in range(cfg.epochs)]
    return preds[-1], preds, log, fold.logits.cpu().numpy().astype(np.float64)
