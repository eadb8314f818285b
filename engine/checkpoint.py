"""Pre-emption-safe runs: each fold's state kept on disk while it trains, and the signals that stop a run.

A fold's whole state is its net's weights and BatchNorm statistics, Adam's state, its step counter, its log summed
on the device and its test predictions (train.Fold). Everything else a step reads (its batches, its augmentation,
its rates) is drawn up front from the fold's seed or computed from the step counter, so a fold restored at step t
and trained on reaches exactly the predictions of a fold never interrupted. graphs.train_wave writes that state to
folds/<key>.ckpt (files.atomic_write) at epoch ends, at most every `checkpoint_every` minutes, and at the next step
when a stop signal arrives; it reads it back into the fold's existing tensors, copied in place, so that a CUDA
graph captured on them reads the restored values. engine/runfolder.py removes it once the fold file is written, and
experiment.save_final that of the final model (folds/all.ckpt) once model.pt is written. A checkpoint
that cannot be read, or that does not fit its fold, is ignored with a warning: the fold starts again.

SIGTERM and SIGUSR1 (what SLURM sends before it pre-empts a job, or the signal its --signal names) stop a run: the
folds in training save their checkpoints at the next step boundary, the training processes end, and mer.py prints
one line and exits with STOPPED, so that a job script can requeue on it. Outside training the signal ends the run
at once; whatever was finished (features in the cache, fold files) is on disk already.
"""
import contextlib
import io
import logging
import signal

from util.files import atomic_write

log = logging.getLogger(__name__)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ('SIGTERM', 'SIGUSR1') if hasattr(signal, name))
# 128 + SIGTERM: what a shell reports for a job ended by SIGTERM, so a requeue rule for terminated jobs fits it.
STOPPED = 143
# The key of the final model that --save-model trains on every sample (graphs.train_all): its checkpoint is
# folds/all.ckpt, and its seed train.fold_seed(seed, 'all').
FINAL = 'all'


class Stopped(BaseException):
    """A stop signal's request on its way up to mer.py. Not an Exception: no `except Exception` may swallow it, as
    none swallows KeyboardInterrupt. args: (signal name, [(fold key, steps taken, steps)] saved, run folder or
    None, finished folds or None)."""


# ----------------------------------------------------------------------------------------------- a fold's state
def path(folder, key):
    return folder / f'{key}.ckpt'


def fold_state(fold):
    """Every tensor of a fold that training changes, on the CPU, keyed by name."""
    state = {f'net.{k}': v for k, v in fold.net.state_dict().items()}
    params = [p for g in fold.opt.param_groups for p in g['params']]
    for i, p in enumerate(params):
        for k, v in fold.opt.state.get(p, {}).items():
            state[f'adam.{i}.{k}'] = v
    state.update(t=fold.t, lr=fold.lr, sums=fold.sums, preds=fold.preds, logits=fold.logits)
    return {k: v.detach().cpu() for k, v in state.items()}


def save(folder, fold):
    """Writes the fold's checkpoint; returns (key, steps taken, steps)."""
    import torch            # here, not above: mer.py imports this module before its flags are read
    buf = io.BytesIO()
    torch.save(dict(key=fold.key, steps=fold.batches.shape[0], state=fold_state(fold)), buf)
    atomic_write(path(folder, fold.key), buf.getvalue())
    return fold.key, int(fold.t), fold.batches.shape[0]


def _targets(fold, saved):
    """The fold's tensors that the saved state's names address, creating Adam's state where the optimiser has taken
    no step yet (eagerly, before its first step, nothing reads it: as Adam creates it, zeros beside each
    parameter)."""
    import torch
    targets = {f'net.{k}': v for k, v in fold.net.state_dict().items()}
    params = [p for g in fold.opt.param_groups for p in g['params']]
    for i, p in enumerate(params):
        names = [k for k in ('step', 'exp_avg', 'exp_avg_sq') if f'adam.{i}.{k}' in saved]
        if names and not fold.opt.state.get(p):
            fold.opt.state[p] = {k: torch.zeros((), dtype=saved[f'adam.{i}.{k}'].dtype, device=p.device)
                                 if k == 'step' else torch.zeros_like(p, memory_format=torch.preserve_format)
                                 for k in names}
        for k, v in fold.opt.state.get(p, {}).items():
            targets[f'adam.{i}.{k}'] = v
    targets.update(t=fold.t, lr=fold.lr, sums=fold.sums, preds=fold.preds)
    if 'logits' in saved:           # not in a checkpoint of code that kept no logits: they come at the next epoch
        targets['logits'] = fold.logits
    return targets


def restore(folder, fold):
    """The steps the fold has taken: its checkpoint's, copied into the fold's own tensors, or 0 when it has none
    (or one that cannot be used: warned, removed)."""
    import torch
    p = path(folder, fold.key)
    if not p.is_file():
        return 0
    try:
        ck = torch.load(io.BytesIO(p.read_bytes()), map_location='cpu', weights_only=True)
        saved = ck['state']
        if ck['key'] != fold.key or ck['steps'] != fold.batches.shape[0]:
            raise ValueError('another fold or schedule')
        targets = _targets(fold, saved)
        bad = sorted(k for k in set(targets) | set(saved)
                     if k not in targets or k not in saved or targets[k].shape != saved[k].shape
                     or targets[k].dtype != saved[k].dtype)
        if bad:
            raise ValueError(f'tensors that do not fit this fold: {", ".join(bad[:3])}')
    except Exception as e:   # a damaged file fails in many ways (zip, pickle, torch); none of them may stop the run
        log.warning('%s: unusable checkpoint (%s: %s); the fold starts again', p, type(e).__name__, e)
        fold.opt.state.clear()
        p.unlink(missing_ok=True)
        return 0
    with torch.no_grad():
        for k, v in targets.items():
            v.copy_(saved[k])
    log.info('%s: resumed at step %d of %d', fold.key, int(fold.t), fold.batches.shape[0])
    return int(fold.t)


def remove(folder, key):
    path(folder, key).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- stop signals
_stop = {'signal': None, 'defer': 0}


def _on_signal(signum, frame):
    _stop['signal'] = signal.Signals(signum).name
    if not _stop['defer']:
        raise Stopped(_stop['signal'], [], None, None)


def catch_stop_signals(at_once=True):
    """SIGTERM and SIGUSR1 raise Stopped (outside `deferred`), or only record the request for training to act on at
    its next step: inside `deferred`, and always in a training process (at_once False), whose every message to its
    parent must go out whole."""
    if not at_once:
        _stop['defer'] += 1
    for s in STOP_SIGNALS:
        signal.signal(s, _on_signal)


def ignore_signals():
    """Ctrl-C and the stop signals ignored: for the last moments of a run that is ending with its one line."""
    for s in STOP_SIGNALS + (signal.SIGINT,):
        signal.signal(s, signal.SIG_IGN)


def requested():
    """The name of the stop signal received, or None."""
    return _stop['signal']


@contextlib.contextmanager
def deferred():
    """A region where a stop signal only records its request: training checks it between steps, where a fold's
    state is whole. A request still pending when the region ends raises Stopped there."""
    _stop['defer'] += 1
    try:
        yield
    finally:
        _stop['defer'] -= 1
    if _stop['signal'] and not _stop['defer']:
        raise Stopped(_stop['signal'], [], None, None)


def stop(folder, folds):
    """Saves the checkpoint of every fold in training that has taken a step, then raises Stopped."""
    if folds and folds[0].t.is_cuda:
        import torch
        torch.cuda.synchronize()
    raise Stopped(_stop['signal'], [save(folder, f) for f in folds if int(f.t)], None, None)


def message(e):
    """The one line a stopped run ends with."""
    name, kept, out, finished = e.args
    what = [f'{finished} finished fold{"s" * (finished != 1)}'] if finished is not None else []
    final = [f"the final model's checkpoint at step {t} of {n}" for k, t, n in kept if k == FINAL]
    kept = [c for c in kept if c[0] != FINAL]
    if kept:
        what.append(f'checkpoints of {len(kept)} fold{"s" * (len(kept) > 1)} in training ('
                    + ', '.join(f'{k} at step {t} of {n}' for k, t, n in kept[:4]) + ', …' * (len(kept) > 4) + ')')
    what += final
    where = f' in {out}' if out is not None else ''
    return (f'mer.py: stopped by {name}; kept {" and ".join(what) or "the finished work"}{where}; run the same '
            f'command again to resume (exit status {STOPPED})')
