"""Leave-One-Subject-Out evaluation (paper §IV): folds, training, UF1/UAR, the run folder, resume and shards.

Speed (issue 7): the whole training set lives on the device as one tensor and augmentation is batched there.
Folds are trained in groups of `stack`: their parameters are stacked (torch.func.stack_module_state) and, for a
group of several folds, the step runs under torch.func.vmap, so G small models become one wide computation (for
a GPU). A group of one fold skips vmap and runs in channels_last: on CPU, vmap's batched-weight convolutions cost
2-3x per sample (BENCHMARKS.md), so the CPU default is one fold at a time. Groups can also train in `jobs`
processes at once, sharing the input tensor: on CPU, two processes of one thread beat one process of two threads.
Each fold keeps its own seed, sampling stream and optimiser state, so its result does not depend on which folds
share its group or its process.
"""
import copy
import csv
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

import model

log = logging.getLogger(__name__)

CLASSES = ('negative', 'positive', 'surprise')
DATASETS = ('smic', 'casme2', 'samm')          # Table I's column order
# Settings that may differ between the calls of one run (resume, shards, merge): none of them changes a result.
VOLATILE = ('folds', 'device', 'workers', 'jobs', 'out', 'quiet')


# ----------------------------------------------------------------------------------------------- metrics
def uf1_uar(labels, preds, n_classes=3):
    """(UF1, UAR) as MEGC2019 defines them: per-class TP/FP/FN over all folds pooled, averaged over classes."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    f1s, recalls = [], []
    for c in range(n_classes):
        n_c = np.sum(labels == c)
        if n_c == 0:      # a class absent from the ground truth has no recall; MEGC's sets have all three
            continue
        tp = np.sum((labels == c) & (preds == c))
        fp = np.sum((labels != c) & (preds == c))
        fn = n_c - tp
        f1s.append(2 * tp / (2 * tp + fp + fn))
        recalls.append(tp / n_c)
    if not f1s:
        raise ValueError('uf1_uar: no labels to score')
    return float(np.mean(f1s)), float(np.mean(recalls))


def confusion(labels, preds, n_classes=3):
    """(n_classes, n_classes) int counts, rows = ground truth, columns = prediction."""
    m = np.zeros((n_classes, n_classes), int)
    np.add.at(m, (np.asarray(labels), np.asarray(preds)), 1)
    return m


# ----------------------------------------------------------------------------------------------- augmentation
def augment(x, gen, rotate=10.0, scale=(0.9, 1.0), flip=True):
    """Batched flow-aware augmentation: small rotation, zoom-in crop and mirror, with the (u, v) vectors moved too.

    The content is transformed by T = (rotation . zoom . mirror) about the centre plus a shift; grid_sample needs
    the inverse map A = T^-1. A vector field follows the content, so (u, v) are multiplied by T's linear part: a
    mirror negates u, a rotation turns the vectors, a zoom by s stretches them by s. Strain is invariant.
    """
    b, dev = x.shape[0], x.device
    ang = (torch.rand(b, generator=gen, device=dev) * 2 - 1) * math.radians(rotate)
    s = scale[0] + torch.rand(b, generator=gen, device=dev) * (scale[1] - scale[0])     # sampled area side
    sign = torch.where(torch.rand(b, generator=gen, device=dev) < 0.5, -1.0, 1.0) if flip else torch.ones(b, device=dev)
    cos, sin = torch.cos(ang), torch.sin(ang)
    # A (input <- output, normalised coordinates): mirror . zoom(s) . rotate(-ang), shifted within the margin.
    a = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) * s[:, None, None]
    a = a * torch.stack([sign, torch.ones_like(sign)], -1)[:, :, None]
    shift = (torch.rand(b, 2, generator=gen, device=dev) * 2 - 1) * (1 - s)[:, None]
    theta = torch.cat([a, shift[:, :, None]], 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    t = torch.linalg.inv(a)                                        # T's linear part acts on the vectors
    uv = torch.einsum('bij,bjhw->bihw', t, out[:, :2])
    return torch.cat([uv, out[:, 2:]], 1)


# ----------------------------------------------------------------------------------------------- folds
def fold_key(dataset, subject):
    """File-safe fold name: subjects of different datasets never collide ('casme2_sub01', 'samm_6')."""
    return f'{dataset}_{subject}'


def plan(keys, stack, shard=(1, 1)):
    """Groups of fold indices trained together, for shard i of n (whole groups, so shards match a single run)."""
    groups = [list(range(i, min(i + stack, len(keys)))) for i in range(0, len(keys), stack)]
    i, n = shard
    return [g for j, g in enumerate(groups) if j % n == i - 1]


def fold_seed(seed, key):
    """Seed of one fold from the run's seed and the fold's name: independent of order, grouping and sharding."""
    return (seed * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(key))) % (2 ** 31)


# ----------------------------------------------------------------------------------------------- training
def _lr(cfg, group, epoch):
    # Authors' code: backbone fixed at 1e-5; heads (and discriminator) from 1e-3, halved every 10 epochs.
    if group == 'backbone':
        return cfg['lr_backbone']
    return cfg['lr_heads'] * 0.5 ** (epoch // cfg['lr_step'])


def train_group(x, y, dom, train_sets, test_sets, seeds, cfg, device, weights=None, progress=None):
    """Trains one stacked model per fold; returns per fold (honest predictions, test-selected predictions)."""
    g = len(train_sets)
    nets = []
    for s in seeds:
        torch.manual_seed(s)
        nets.append(model.PartNet(parts=cfg['parts'], weights=weights).to(device))
    params, buffers = stack_module_state(nets)
    if g == 1:
        # One fold: plain leaf tensors, 4-D weights in channels_last like the input. Views into a stacked tensor
        # would cost a zero-fill and a copy per parameter per step (select's backward), ~15% of a CPU step.
        params = {k: v[0].detach().contiguous(memory_format=torch.channels_last if v.dim() == 5 else
                                              torch.contiguous_format).requires_grad_() for k, v in params.items()}
        buffers = {k: v[0] for k, v in buffers.items()}
    base = copy.deepcopy(nets[0]).to('meta')
    del nets
    heads = [k for k in params if not k.startswith('trunk.')]
    groups = [{'params': [params[k] for k in params if k.startswith('trunk.')], 'name': 'backbone'},
              {'params': [params[k] for k in heads], 'name': 'heads'}]
    # Fused Adam: one kernel over all parameters instead of a dozen passes (opt.step 33 -> 11 ms on 2 CPU cores).
    opt = torch.optim.Adam(groups, lr=cfg['lr_heads'], weight_decay=cfg['weight_decay'], fused=True)

    def forward(p, b, xb, coeff):
        return functional_call(base, (p, b), (xb, coeff))

    def loss_fn(p, b, xb, yb, db, coeff):
        out = forward(p, b, xb, coeff)
        return model.losses(out, yb, db if cfg['adv'] else None, cfg['lambda_adv'])[0]

    if g > 1:
        batched_loss = vmap(loss_fn, in_dims=(0, 0, 0, 0, 0, None), randomness='different')
        batched_fwd = vmap(forward, in_dims=(0, 0, 0, None))
    else:   # the same functions with the group dimension of one taken off and put back
        def batched_loss(p, b, xb, yb, db, coeff):
            return loss_fn(p, b, xb[0].contiguous(memory_format=torch.channels_last), yb[0], db[0], coeff)[None]

        def batched_fwd(p, b, xb, coeff):
            return {k: v[None] for k, v in forward(p, b, xb[0].contiguous(memory_format=torch.channels_last),
                                                   coeff).items()}
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    train_t = [torch.as_tensor(t, device=device) for t in train_sets]
    # One "epoch" is the same number of steps for every fold (the whole pool over the batch size), so folds
    # of different sizes can step in lockstep while each draws batches from its own permutations.
    steps = max(1, math.ceil(cfg['pool'] / cfg['batch_size']))
    total = steps * cfg['epochs']
    queues = [torch.empty(0, dtype=torch.long, device=device) for _ in range(g)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg['bf16'])
    pad = max(len(t) for t in test_sets)
    test_idx = torch.stack([torch.as_tensor(np.resize(t, pad), device=device) for t in test_sets])
    best = [(-1.0, None)] * g
    step = 0
    for epoch in range(cfg['epochs']):
        for grp in opt.param_groups:
            grp['lr'] = _lr(cfg, grp['name'], epoch)
        base.train()
        for _ in range(steps):
            idx = []
            for k in range(g):
                if len(queues[k]) < cfg['batch_size']:
                    perm = train_t[k][torch.randperm(len(train_t[k]), generator=gens[k], device=device)]
                    queues[k] = torch.cat([queues[k], perm])
                idx.append(queues[k][:cfg['batch_size']])
                queues[k] = queues[k][cfg['batch_size']:]
            idx = torch.stack(idx)                                             # (G, B)
            xb = torch.stack([augment(x[idx[k]], gens[k]) for k in range(g)]) if cfg['augment'] else x[idx]
            coeff = model.dann_coeff(step / total)                             # DANN schedule, per fold
            with autocast:
                loss = batched_loss(params, buffers, xb, y[idx], dom[idx], coeff).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            _clip_per_fold(list(params.values()), cfg['grad_clip'], g)
            opt.step()
            step += 1
            if progress is not None:
                progress.update(g)
        if cfg['select_on_test'] or epoch == cfg['epochs'] - 1:
            preds = _predict(batched_fwd, params, buffers, x, test_idx, base, autocast)
            for k in range(g):
                p = preds[k, :len(test_sets[k])]
                acc = float((p == y[test_sets[k]].cpu().numpy()).mean())
                # Authors' selection: the epoch with the best accuracy on the test subject (the last on ties).
                if acc >= best[k][0]:
                    best[k] = (acc, p)
    last = preds
    return [(last[k, :len(test_sets[k])], best[k][1]) for k in range(g)]


def _clip_per_fold(tensors, max_norm, g):
    # clip_grad_norm_ per fold: each fold's gradient norm over all of its parameters, as if trained alone.
    if g == 1:      # unstacked parameters: torch's own foreach kernels
        torch.nn.utils.clip_grad_norm_(tensors, max_norm, foreach=True)
        return
    grads = [t.grad for t in tensors if t.grad is not None]
    sq = torch.stack([gr.reshape(g, -1).float().pow(2).sum(1) for gr in grads]).sum(0)
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for gr in grads:
        gr.mul_(scale.view(-1, *([1] * (gr.dim() - 1))).to(gr.dtype))


@torch.no_grad()
def _predict(batched_fwd, params, buffers, x, test_idx, base, autocast):
    base.eval()
    with autocast:
        out = batched_fwd(params, buffers, x[test_idx], 0.0)
    return out['joint'].argmax(-1).cpu().numpy()


_WORKER = {}


class _SharedCount:
    """A worker's stand-in for the progress bar: adds its steps to a counter the parent shows."""

    def __init__(self, counter):
        self.counter = counter

    def update(self, n):
        with self.counter.get_lock():
            self.counter.value += n


def _init_worker(data, cfg, device, weights, threads, counter):
    torch.set_num_threads(threads)
    _WORKER.update(data=data, cfg=cfg, device=device, weights=weights, progress=_SharedCount(counter))


def _train_task(task):
    w = _WORKER
    return train_group(*w['data'], *task, w['cfg'], w['device'], w['weights'], w['progress'])


def _train_in_processes(tasks, groups, data, cfg, device, weights, bar, jobs):
    """Yields (group, train_group's result) as groups finish, trained by `jobs` processes sharing the cores.

    On a 2-core CPU, two processes of one thread each train 1.3-2.3x more samples/s than one process of two
    threads (BENCHMARKS.md): a 64-px ResNet18 step is too small to keep two threads busy. The inputs are shared
    with the workers, not copied (torch.multiprocessing puts them in shared memory).
    """
    import torch.multiprocessing as tmp
    ctx = tmp.get_context('spawn')
    counter = ctx.Value('q', 0)
    threads = max(1, torch.get_num_threads() // jobs)
    data = tuple(t.share_memory_() if t.device.type == 'cpu' else t for t in data)
    with ctx.Pool(jobs, _init_worker, (data, cfg, device, weights, threads, counter)) as pool:
        pending = {i: pool.apply_async(_train_task, (task,)) for i, task in enumerate(tasks)}
        while pending:
            time.sleep(0.25)
            bar.update(counter.value - bar.n)
            for i in [i for i, r in pending.items() if r.ready()]:
                yield groups[i], pending.pop(i).get()       # a worker's exception is raised here
        bar.update(counter.value - bar.n)


# ----------------------------------------------------------------------------------------------- the run folder
def _atomic_write(path, text):
    tmp = path.with_name(path.name + f'.tmp{os.getpid()}')
    tmp.write_text(text)
    os.replace(tmp, path)


def write_fold(out, key, rows):
    """Writes folds/<key>.csv (dataset,subject,clip,label,pred,pred_selected) atomically."""
    lines = ['dataset,subject,clip,label,pred,pred_selected'] + [','.join(map(str, r)) for r in rows]
    _atomic_write(out / 'folds' / f'{key}.csv', '\n'.join(lines) + '\n')


def read_folds(out, keys):
    """Rows of every finished fold among `keys` (dicts with int label/pred), and the keys still missing."""
    rows, missing = [], []
    for k in keys:
        p = out / 'folds' / f'{k}.csv'
        if not p.is_file():
            missing.append(k)
            continue
        for r in csv.DictReader(open(p)):
            r['label'], r['pred'], r['pred_selected'] = int(r['label']), int(r['pred']), int(r['pred_selected'])
            rows.append(r)
    return rows, missing


def check_config(out, config):
    """Writes config.json, or checks that a run being resumed or merged used the same settings."""
    path = out / 'config.json'
    keep = {k: v for k, v in config.items() if k not in VOLATILE}
    if path.is_file():
        old = {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE}
        diff = sorted(k for k in set(old) | set(keep) if old.get(k) != keep.get(k))
        if diff:
            raise SystemExit(f'{path}: this run folder was made with other settings ({", ".join(diff)}); '
                             'pass the same flags to resume it, or a new --out')
    else:
        _atomic_write(path, json.dumps(config, indent=1, sort_keys=True))


def metrics(rows, column='pred'):
    """UF1/UAR overall and per dataset (Table I's columns) from fold rows, for one prediction column."""
    res = {}
    for ds in ('all',) + DATASETS:
        sel = [r for r in rows if ds == 'all' or r['dataset'] == ds]
        if sel:
            uf1, uar = uf1_uar([r['label'] for r in sel], [r[column] for r in sel])
            res[ds] = {'uf1': round(uf1, 4), 'uar': round(uar, 4), 'n': len(sel)}
    return res


def table(named_metrics):
    """Markdown rows in the layout of the paper's Table I: overall, SMIC, CASME II, SAMM; UF1 and UAR each."""
    head = ('| method | UF1 | UAR | SMIC UF1 | SMIC UAR | CASME II UF1 | CASME II UAR | SAMM UF1 | SAMM UAR |\n'
            '|---|---|---|---|---|---|---|---|---|')
    lines = [head]
    for name, m in named_metrics:
        cells = []
        for ds in ('all',) + DATASETS:
            cells += [f"{m[ds]['uf1']:.4f}", f"{m[ds]['uar']:.4f}"] if ds in m else ['–', '–']
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def megc_log(rows, column='pred'):
    """The MEGC2019 log: a 'dataset subject' header line per subject, then 'clip gt pred' lines."""
    out, current = [], None
    for r in rows:
        if (r['dataset'], r['subject']) != current:
            current = (r['dataset'], r['subject'])
            out.append(f"{r['dataset']} {r['subject']}")
        out.append(f"{r['clip']} {r['label']} {r[column]}")
    return '\n'.join(out) + '\n'


def save_confusions(out, rows):
    """confusion_<dataset>.png per dataset (and overall), counts in each cell."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    for ds in ('all',) + DATASETS:
        sel = [r for r in rows if ds == 'all' or r['dataset'] == ds]
        if not sel:
            continue
        m = confusion([r['label'] for r in sel], [r['pred'] for r in sel])
        fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=100)
        ax.imshow(m, cmap='Blues')
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha='center', va='center', color='white' if v > m.max() / 2 else 'black')
        ax.set_xticks(range(3), CLASSES, fontsize=8)
        ax.set_yticks(range(3), CLASSES, fontsize=8)
        ax.set_xlabel('predicted'), ax.set_ylabel('ground truth'), ax.set_title(ds)
        fig.tight_layout()
        fig.savefig(out / f'confusion_{ds}.png')
        plt.close(fig)


def run(x, meta, cfg, out, weights=None, shard=(1, 1)):
    """LOSO over the micro subjects in `meta`; writes the run folder; returns metrics, or None if folds remain."""
    from tqdm import tqdm
    out = Path(out)
    (out / 'folds').mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg['device'])
    micro = [i for i, m in enumerate(meta) if m.domain == 'micro']
    macro = [i for i, m in enumerate(meta) if m.domain == 'macro'] if cfg['ckplus'] else []
    keys = list(dict.fromkeys(fold_key(meta[i].dataset, meta[i].subject) for i in micro))
    by_key = {k: [i for i in micro if fold_key(meta[i].dataset, meta[i].subject) == k] for k in keys}
    done = {k for k in keys if (out / 'folds' / f'{k}.csv').is_file()}
    todo = [grp for grp in plan(keys, cfg['stack'], shard) if not all(keys[j] in done for j in grp)]
    xt = torch.as_tensor(x, device=device)
    yt = torch.as_tensor([m.label for m in meta], device=device)
    dt = torch.as_tensor([int(m.domain == 'macro') for m in meta], device=device)
    cfg = dict(cfg, pool=len(micro) + len(macro))
    log.info('LOSO: %d folds (%d done), %d micro + %d macro samples, %d group(s) of <= %d folds to train',
             len(keys), len(done), len(micro), len(macro), len(todo), cfg['stack'])
    steps = max(1, math.ceil(cfg['pool'] / cfg['batch_size'])) * cfg['epochs']
    tasks = []
    for grp in todo:
        test_sets = [by_key[keys[j]] for j in grp]
        train_sets = [np.array([i for i in micro if i not in held] + macro) for held in map(set, test_sets)]
        tasks.append((train_sets, test_sets, [fold_seed(cfg['seed'], keys[j]) for j in grp]))

    def finish(grp, res):
        for j, (pred, sel) in zip(grp, res):
            write_fold(out, keys[j], [(meta[i].dataset, meta[i].subject, meta[i].clip, meta[i].label, int(p), int(s))
                                      for i, p, s in zip(by_key[keys[j]], pred, sel)])

    t0 = time.time()
    jobs = max(1, min(cfg.get('jobs', 1), len(tasks)))
    with tqdm(total=steps * sum(len(grp) for grp in todo), unit='fold-step', disable=cfg.get('quiet')) as bar:
        if jobs == 1:
            for grp, task in zip(todo, tasks):
                finish(grp, train_group(xt, yt, dt, *task, cfg, device, weights, bar))
        else:
            for grp, res in _train_in_processes(tasks, todo, (xt, yt, dt), cfg, device, weights, bar, jobs):
                finish(grp, res)
    log.info('LOSO training: %.1f s (%d process%s)', time.time() - t0, jobs, 'es' * (jobs > 1))
    rows, missing = read_folds(out, keys)
    if missing:
        log.info('%d folds still missing (other shards?): %s', len(missing), ' '.join(missing[:10]))
        return None
    res = {'honest': metrics(rows, 'pred')}
    if cfg['select_on_test']:
        res['selected_on_test'] = metrics(rows, 'pred_selected')
    _atomic_write(out / 'metrics.json', json.dumps(res, indent=1))
    _atomic_write(out / 'megc_log.txt', megc_log(rows))
    save_confusions(out, rows)
    return res
