"""How folds train fast on the device: train.py's epoch loop run eagerly on CPU, or on a GPU with each fold's step
captured once as a CUDA graph and replayed, the graphs of several folds on their own CUDA streams, in waves;
checkpoints at epoch ends and stop signals between steps.

A 32-sample ResNet18 step is launch-bound on a GPU: replaying a captured step removes the launches, and folds on
streams fill the GPU. train.fold_step reads everything from tensors indexed by the fold's step counter, so one
capture serves every step. A fold's result depends on its seed and settings alone, not on which folds train beside
it, nor on whether it was captured. A capture that fails (a driver or an operation that graphs do not support)
is not an error: the wave starts again eagerly, with one warning line; `--no-graphs` asks for that from the start.
"""
import contextlib
import logging
import time

import torch

import train
from engine import checkpoint
from results import stats

log = logging.getLogger(__name__)
# Folds replayed at once on CUDA, each on its own stream (BENCHMARKS.md: measured on one H100).
CUDA_STREAMS = 17


def resolve_device(name):
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; a CUDA device that is not there is one clear line."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit(f'mer.py: error: --device {name}: no CUDA device is visible to torch; use --device cpu')
    device, count = torch.device(name), torch.cuda.device_count() if name.startswith('cuda') else 0
    if device.type == 'cuda' and device.index is not None and device.index >= count:
        raise SystemExit(f'mer.py: error: --device {name}: torch sees {count} CUDA device{"s" * (count != 1)} '
                         f'(cuda:0{f"-{count - 1}" * (count > 1)}); give one of them, or cuda')
    return device


def capture(fold, data, cfg, warmup=3):
    """fold's train.fold_step captured as a CUDA graph, the fold left exactly as it was before (step 0)."""
    for group in fold.opt.param_groups:        # Adam keeps its step count on the device, where the graph reads it
        group['capturable'] = True
    state = {k: v.clone() for k, v in fold.net.state_dict().items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):       # warm-up off the capture stream: cuDNN choices, Adam's state, allocations
        for _ in range(warmup):
            train.fold_step(fold, data, cfg)
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():               # undo the warm-up: weights, BatchNorm statistics, Adam's state, counters
        fold.net.load_state_dict(state)
        for s in fold.opt.state.values():
            for v in s.values():
                v.zero_()
        fold.t.zero_(), fold.sums.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        train.fold_step(fold, data, cfg)
    return graph


def train_wave(folds, data, cfg, graphs=None, progress=None, keep=None):
    """Trains `folds` to their last step, together: train.train's epoch loop, its calls made for every fold in
    turn, each step of each fold taken eagerly (train.fold_step) or, given their captured `graphs` {key: CUDA
    graph}, replayed on the fold's own stream, and each fold's test subject predicted (train.evaluate) on it after
    every epoch. Each fold goes on from its checkpoint in the folder `keep`, if any, saves it at epoch ends at most
    every cfg.checkpoint_every minutes, and on a stop signal saves it before the next step and raises
    checkpoint.Stopped. Each step of the wave is counted once on `progress`."""
    streams = {fold.key: torch.cuda.Stream() for fold in folds} if graphs else {}
    taken = [checkpoint.restore(keep, fold) if keep else 0 for fold in folds]    # after capture: in place
    if graphs:
        torch.cuda.synchronize()
    if progress is not None and any(taken):
        progress.update(sum(taken))
    steps = folds[0].batches.shape[0] // cfg.epochs
    saved = time.monotonic()

    def on(fold):
        return torch.cuda.stream(streams[fold.key]) if streams else contextlib.nullcontext()

    for epoch in range(cfg.epochs):
        for k in range(epoch * steps, (epoch + 1) * steps):
            if keep and k and k % steps == 0 and time.monotonic() - saved >= cfg.checkpoint_every * 60:
                if graphs:
                    torch.cuda.synchronize()
                for fold in folds:
                    checkpoint.save(keep, fold)
                saved = time.monotonic()
            if keep and checkpoint.requested():
                checkpoint.stop(keep, folds)
            live = [fold for fold, n in zip(folds, taken) if n <= k]     # a restored fold waits for its step
            for fold in live:
                with on(fold):
                    if graphs:
                        graphs[fold.key].replay()
                    else:
                        train.fold_step(fold, data, cfg)
            if live and progress is not None:
                progress.update(len(live))
        for fold, n in zip(folds, taken):
            # Restored from after this epoch (its predictions with it), or no one to test: the final model.
            if n < (epoch + 1) * steps and len(fold.test):
                with on(fold):
                    train.evaluate(fold, data, cfg, epoch)
    if graphs:
        torch.cuda.synchronize()


def results(fold, data, cfg):
    """(honest predictions after the last epoch, the predictions of the epoch the authors' code would keep, per-epoch
    log, logits after the last epoch): train.results with the second added. The second (stats.epoch_on_test: the
    epoch of the best F1 on the test subject) is optimistic; it is kept only for the protocol audit (stats.audit)."""
    last, preds, log_, z = train.results(fold, cfg)
    truth = data[1].index_select(0, fold.test).cpu().numpy()
    return last, preds[stats.epoch_on_test(preds, truth)] if len(truth) else last, log_, z


def wave(specs, data, n_samples, cfg, device, weights, use_graphs, progress, keep):
    """(the folds of `specs` [(key, train_idx, test_idx)], trained; whether graphs were used): each fold's step
    captured as a CUDA graph if asked. A capture that fails is not an error: the wave (and, through the returned
    flag, every later one) trains eagerly from new folds, with one warning."""
    folds = [train.new_fold(key, tr, te, cfg, n_samples, device, weights) for key, tr, te in specs]
    graphs = {}
    if use_graphs:
        try:
            graphs = {fold.key: capture(fold, data, cfg) for fold in folds}
        except Exception as e:        # the graphs are an optimisation: never a reason to stop the run
            log.warning('CUDA graphs: capturing a training step failed (%s: %s); training eagerly instead '
                        '(--no-graphs skips the attempt)', type(e).__name__, str(e).splitlines()[0] if str(e) else '')
            folds = [train.new_fold(key, tr, te, cfg, n_samples, device, weights) for key, tr, te in specs]
            graphs = {}
    train_wave(folds, data, cfg, graphs, progress, keep)
    return folds, bool(graphs)


def train_all(train_idx, data, n_samples, cfg, device, weights=None, progress=None, keep=None):
    """(the PartNet trained on every sample of train_idx, in eval mode, its per-epoch log): the final model, with a
    fold's schedule and step but no held-out subject, so nothing is evaluated (seed: fold_seed(cfg.seed, 'all')).
    `keep`: the folder of its checkpoint, as train_wave's."""
    use_graphs = device.type == 'cuda' and cfg.graphs
    (fold,), _ = wave([(checkpoint.FINAL, train_idx, [])], data, n_samples, cfg, device, weights, use_graphs,
                      progress, keep)
    return fold.net.eval(), train.results(fold, cfg)[2]


def train_folds(specs, data, n_samples, cfg, device, weights=None, streams=1, use_graphs=None, progress=None,
                claim=None, keep=None):
    """Trains every fold of `specs` [(key, train_idx, test_idx)]; yields (key, honest, selected, log, logits) per fold
    (`results`).

    `data` is (x, y, domain) on the device; `n_samples` the number of micro + macro samples, which sets the epoch.
    `claim(key)`, asked just before a fold would train, may say False: then another process has it, and it is
    skipped here. `keep`, a folder, holds the folds' checkpoints (engine/checkpoint.py; train_wave).

    On CUDA (use_graphs None: cfg.graphs) folds go in waves of `streams`: each fold's step is captured as a CUDA
    graph and the graphs of a wave are replayed on their own streams, step by step. Elsewhere folds train eagerly,
    one by one.
    """
    use_graphs = device.type == 'cuda' and cfg.graphs if use_graphs is None else use_graphs
    queue = list(specs)
    while queue:
        mine = []
        while queue and len(mine) < (max(1, streams) if use_graphs else 1):
            spec = queue.pop(0)
            if claim is None or claim(spec[0]):
                mine.append(spec)
        if not mine:
            return
        folds, use_graphs = wave(mine, data, n_samples, cfg, device, weights, use_graphs, progress, keep)
        for fold in folds:
            yield (fold.key,) + results(fold, data, cfg)
        del folds
