"""One LOSO fold's training (paper §III.B, §IV, with the authors' code's schedule): Adam on L = Lt + Lb + Lc -
lambda Ladv, heads at lr_heads halved every lr_step epochs, the trunk at its own rate, gradients clipped per fold,
batches of the fold's training pool (every other micro subject and every macro sample) augmented as flow.

To follow it: `step` is one optimisation step; `optimiser`, `heads_lr` and `model.dann_coeff` its rates;
`batch_schedule`, `augment_params` and `augment` what it is fed; `predict` the evaluation after the last epoch.
Every random choice of a fold (its batches, its augmentation) is drawn up front from the fold's own seed
(`fold_seed`), so a fold's result depends on its seed and settings alone. engine.py runs the steps: eagerly on CPU,
captured once per fold as a CUDA graph and replayed on GPU, reading the schedule from device tensors.
"""
import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

import model

# The terms of the loss, as the paper names them: top (eyes), bottom (mouth), joint classifier, adversarial.
LOSSES = ('lt', 'lb', 'lc', 'ladv')


def step(net, opt, x, y, domain, coeff, cfg, amp=contextlib.nullcontext()):
    """One optimisation step on a batch: L = Lt + Lb + Lc - lambda Ladv (§III.B), its gradient clipped to norm
    grad_clip, Adam. `domain` None leaves the adversarial term out; `coeff` is the reversal's strength; `amp` the
    precision (engine.autocast). Returns the joint logits and the loss terms."""
    opt.zero_grad(set_to_none=True)
    with amp:
        out = net(x, coeff)
        total, parts = model.losses(out, y, domain, cfg.lambda_adv)
    total.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip, foreach=True)
    opt.step()
    return out['joint'], parts


@torch.no_grad()
def predict(net, x, amp=contextlib.nullcontext()):
    """Predicted classes of x by the joint classifier, in eval mode (BatchNorm's running statistics)."""
    net.eval()
    with amp:
        out = net(x.contiguous(memory_format=torch.channels_last), 0.0)
    net.train()
    return out['joint'].argmax(-1)


def optimiser(net, cfg, lr, capturable=False):
    """Adam with two groups, the trunk at lr[0] and the heads and discriminator at lr[1] (a tensor, so that a
    captured step reads the rate of its epoch); fused: one kernel over all parameters."""
    groups = [{'params': [p for n, p in net.named_parameters() if n.startswith('trunk.')], 'lr': lr[0]},
              {'params': [p for n, p in net.named_parameters() if not n.startswith('trunk.')], 'lr': lr[1]}]
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay, fused=True, capturable=capturable)


def heads_lr(cfg, epoch):
    """Learning rate of the heads and the discriminator at `epoch` (an int, or a device tensor inside a captured
    step): lr_heads halved every lr_step epochs."""
    if torch.is_tensor(epoch):
        return cfg.lr_heads * torch.pow(0.5, torch.div(epoch, cfg.lr_step, rounding_mode='floor').float())
    return cfg.lr_heads * 0.5 ** (epoch // cfg.lr_step)


def steps_per_epoch(n_samples, batch_size):
    """Steps in one epoch: the whole training pool (micro + macro) over the batch size, the same for every fold."""
    return max(1, math.ceil(n_samples / batch_size))


def fold_seed(seed, key):
    """Seed of one fold from the run's seed and the fold's name: independent of order, company and sharding."""
    return (seed * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(key))) % (2 ** 31)


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
