"""How folds train fast: the device, precision, the fold's schedule as device tensors, CUDA-graph capture and
replay, folds on streams, waves. The method's step is train.step; this file feeds it and runs it.

A fold is a plain PartNet with its own Adam, its own gradient clipping and its own BatchNorm statistics. Its step
(`scheduled_step`) reads its batch, its augmentation, its learning rate and the DANN coefficient from device
tensors indexed by a step counter that the step itself advances, and accumulates its log on the device. So it
never synchronises with the host and never changes shape, and:
  - on CPU it runs eagerly, one fold after another in each of `jobs` processes (runs.py);
  - on CUDA it is captured once per fold as a CUDA graph and replayed (a 32-sample ResNet18 step is launch-bound:
    replay removes the launches), with the graphs of several folds replayed on their own CUDA streams at once.
A fold's result therefore depends on its seed and settings alone, not on which folds train beside it, and a fold
stopped after any step and restored from its checkpoint (checkpoint.py) goes on exactly as if never stopped.
"""
import time
from dataclasses import dataclass

import numpy as np
import torch

import checkpoint
import model
import stats
import train

# Folds replayed at once on CUDA, each on its own stream (BENCHMARKS.md: measured on one H100).
CUDA_STREAMS = 17


def resolve_device(name):
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; a CUDA device that is not there is one clear line."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit(f'--device {name}: no CUDA device is visible to torch; use --device cpu')
    return torch.device(name)


def device_data(x, meta, device):
    """(inputs, labels, domains 0 micro / 1 macro) of the samples in `meta`, as tensors on the device."""
    return (torch.as_tensor(x, device=device), torch.as_tensor([m.label for m in meta], device=device),
            torch.as_tensor([int(m.domain == 'macro') for m in meta], device=device))


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
    sums: torch.Tensor        # (epochs, 6): per epoch train.LOSSES, correct predictions, samples
    preds: torch.Tensor       # (epochs, n_test) long: test predictions after the epochs evaluated
    graph: object = None      # its CUDA graph, once captured


def make_fold(key, train_idx, test_idx, cfg, n_samples, device, weights=None):
    """A fold ready to train: its net, its Adam, and its whole schedule drawn from train.fold_seed(cfg.seed, key)."""
    seed = train.fold_seed(cfg.seed, key)
    torch.manual_seed(seed)
    net = model.PartNet(parts=cfg.parts, hidden=cfg.hidden, weights=weights).to(device)
    net = net.to(memory_format=torch.channels_last)
    lr = torch.tensor([cfg.backbone_lr(), train.heads_lr(cfg, 0)], dtype=torch.float32, device=device)
    # capturable keeps Adam's step count on the device, for the graph.
    opt = train.optimiser(net, cfg, lr, capturable=device.type == 'cuda')
    gen = torch.Generator().manual_seed(seed)
    n_steps = train.steps_per_epoch(n_samples, cfg.batch_size) * cfg.epochs
    batches = train.batch_schedule(train_idx, n_steps, cfg.batch_size, gen)
    aug = train.augment_params(n_steps * cfg.batch_size, gen, cfg.rotate, cfg.zoom).view(n_steps, cfg.batch_size, 5)
    test = torch.as_tensor(np.asarray(test_idx), dtype=torch.long)
    return Fold(key, net, opt, batches.to(device), aug.to(device), test.to(device),
                torch.zeros((), dtype=torch.long, device=device), lr,
                torch.zeros(cfg.epochs, 2 + len(train.LOSSES), device=device),
                torch.zeros(cfg.epochs, len(test), dtype=torch.long, device=device))


def scheduled_step(fold, data, cfg):
    """train.step on fold f's scheduled batch, at its step counter's rates; the counter advances and the step's
    losses and correct predictions are added to its epoch's sums. Only tensor operations: no host
    synchronisation and fixed shapes, so the same code runs eagerly or captured."""
    x, y, dom = data
    n_steps = fold.batches.shape[0]
    t = fold.t
    idx = fold.batches.index_select(0, t.view(1))[0]
    xb = x.index_select(0, idx)
    if cfg.augment:
        xb = train.augment(xb, fold.aug.index_select(0, t.view(1))[0])
    xb = xb.contiguous(memory_format=torch.channels_last)
    yb = y.index_select(0, idx)
    epoch = torch.div(t, n_steps // cfg.epochs, rounding_mode='floor')
    coeff = model.dann_coeff(t.float() / n_steps, cfg.dann_gamma)
    fold.lr[1].copy_(train.heads_lr(cfg, epoch))
    joint, parts = train.step(fold.net, fold.opt, xb, yb, dom.index_select(0, idx) if cfg.adv else None, coeff, cfg,
                              autocast(cfg, x.device))
    zero = torch.zeros((), device=x.device)
    correct = (joint.argmax(-1) == yb).sum().float()
    row = torch.stack([parts.get(k, zero) for k in train.LOSSES] +
                      [correct, torch.full((), float(len(idx)), device=x.device)])
    fold.sums.index_add_(0, epoch.view(1), row.float()[None])
    t.add_(1)


def evaluate(fold, data, cfg, epoch):
    """Stores the fold's test predictions after `epoch`."""
    x = data[0]
    fold.preds[epoch].copy_(train.predict(fold.net, x.index_select(0, fold.test), autocast(cfg, x.device)))


def capture(fold, data, cfg, warmup=3):
    """Captures fold f's scheduled_step as a CUDA graph, leaving the fold exactly as it was before (step 0)."""
    state = {k: v.clone() for k, v in fold.net.state_dict().items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):       # warm-up off the capture stream: cuDNN choices, Adam's state, allocations
        for _ in range(warmup):
            scheduled_step(fold, data, cfg)
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():               # undo the warm-up: weights, BatchNorm statistics, Adam's state, counters
        fold.net.load_state_dict(state)
        for s in fold.opt.state.values():
            for v in s.values():
                v.zero_()
        fold.t.zero_(), fold.sums.zero_()
    fold.graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(fold.graph):
        scheduled_step(fold, data, cfg)
    return fold


def results(fold, y, cfg):
    """(honest predictions after the last epoch, the predictions of the epoch the authors' code would keep, per-epoch
    log).

    The second (stats.epoch_on_test: the epoch of the best F1 on the test subject) is optimistic; it is kept only
    for the protocol audit (stats.audit). The log has train.LOSSES and the training accuracy.
    """
    preds = fold.preds.cpu().numpy()
    sums = fold.sums.cpu().numpy().astype(np.float64)
    truth = y.index_select(0, fold.test).cpu().numpy()
    best = preds[stats.epoch_on_test(preds, truth)] if len(truth) else preds[-1]
    n = np.maximum(sums[:, -1:], 1)
    steps = fold.batches.shape[0] // cfg.epochs
    log = [dict(zip(train.LOSSES + ('acc',), np.r_[sums[e, :4] / steps, sums[e, 4] / n[e, 0]].round(6).tolist()),
                epoch=e + 1) for e in range(cfg.epochs)]
    return preds[-1], best, log


def step_all(folds, data, cfg, streams=None):
    """One training step of every fold: its captured graph replayed on its own CUDA stream, or (streams None) the
    eager scheduled_step."""
    for j, fold in enumerate(folds):
        if streams:
            with torch.cuda.stream(streams[j]):
                fold.graph.replay()
        else:
            scheduled_step(fold, data, cfg)


def train_all(train_idx, data, n_samples, cfg, device, weights=None, progress=None, keep=None):
    """(the PartNet trained on every sample of train_idx, in eval mode, its per-epoch log): the final model, with a
    fold's schedule and step but no held-out subject, so nothing is evaluated (seed: fold_seed(cfg.seed, 'all')).
    `keep`: the folder of its checkpoint, as train_wave's."""
    fold = make_fold(checkpoint.FINAL, train_idx, [], cfg, n_samples, device, weights)
    train_wave([fold], data, cfg, device.type == 'cuda', progress, keep)
    return fold.net.eval(), results(fold, data[1], cfg)[2]


def train_folds(specs, data, n_samples, cfg, device, weights=None, streams=1, graphs=None, progress=None,
                claim=None, keep=None):
    """Trains every fold of `specs` [(key, train_idx, test_idx)]; yields (key, honest, selected, log) per fold.

    `data` is (x, y, domain) on the device; `n_samples` the number of micro + macro samples, which sets the epoch.
    `claim(key)`, asked just before a fold would train, may say False: then another process has it, and it is
    skipped here. `keep`, a folder, holds the folds' checkpoints (checkpoint.py; train_wave).

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
        folds = [make_fold(key, tr, te, cfg, n_samples, device, weights) for key, tr, te in mine]
        train_wave(folds, data, cfg, graphs, progress, keep)
        for fold in folds:
            yield (fold.key,) + results(fold, data[1], cfg)
        del folds


def train_wave(folds, data, cfg, graphs, progress=None, keep=None):
    """Trains `folds` to their last step, together: eagerly one step of each in turn, or (graphs) each captured as
    a CUDA graph and replayed on its own stream. Each goes on from its checkpoint in the folder `keep`, if any,
    saves it at epoch ends at most every cfg.checkpoint_every minutes, and on a stop signal saves it at the next
    step and raises checkpoint.Stopped. The test subject, if the fold has one, is evaluated after every epoch."""
    steps = folds[0].batches.shape[0] // cfg.epochs
    if graphs:
        ss = [torch.cuda.Stream() for _ in folds]
        for fold in folds:
            capture(fold, data, cfg)
    taken = [checkpoint.restore(keep, fold) if keep else 0 for fold in folds]    # after capture: in place
    if graphs:
        torch.cuda.synchronize()
    if progress is not None and any(taken):
        progress.update(sum(taken))
    saved = time.monotonic()
    for epoch in range(cfg.epochs):
        for k in range(epoch * steps, (epoch + 1) * steps):
            if keep and checkpoint.requested():
                checkpoint.stop(keep, folds)
            live = [j for j, n in enumerate(taken) if n <= k]      # a resumed fold waits for its step
            if not live:
                continue
            step_all([folds[j] for j in live], data, cfg, [ss[j] for j in live] if graphs else None)
            if progress is not None:
                progress.update(len(live))
        for j, fold in enumerate(folds):       # every epoch, for the protocol audit's epoch chosen on test
            # Restored from after this epoch (its predictions too), or no one to test: the final model.
            if taken[j] >= (epoch + 1) * steps or not len(fold.test):
                continue
            if graphs:
                with torch.cuda.stream(ss[j]):
                    evaluate(fold, data, cfg, epoch)
            else:
                evaluate(fold, data, cfg, epoch)
        if keep and epoch < cfg.epochs - 1 and time.monotonic() - saved >= cfg.checkpoint_every * 60:
            if graphs:
                torch.cuda.synchronize()
            for fold in folds:
                checkpoint.save(keep, fold)
            saved = time.monotonic()
    if graphs:
        torch.cuda.synchronize()
