"""Leave-One-Subject-Out over the MEGC2019 composite and its scores (paper §IV, MEGC2019's protocol), and
MEGC2018's held-out-database protocol beside it.

Each micro-expression subject (of each dataset) is held out once: its fold trains on every other micro subject
and on every macro sample (CK+), which enters training only, never a test set (`plan_folds`). The predictions of
every fold are pooled and scored as MEGC2019 defines it (`uf1_uar`): per class TP, FP and FN summed over all
folds, F1 and recall per class, averaged over the classes; overall and per dataset, Table I's columns (`metrics`).
`plan_heldout` (--protocol hde) holds out a whole dataset instead. results/stats.py says how uncertain the scores are.
engine/runfolder.py trains the folds and keeps the run folder.
"""
import numpy as np

from config import DATASETS


def fold_key(dataset, subject):
    """File-safe fold name: subjects of different datasets never collide ('casme2_sub01', 'samm_6')."""
    return f'{dataset}_{subject}'


def plan_folds(meta):
    """[(key, train indices, test indices)] of every micro subject; macro samples only ever train."""
    micro = [i for i, m in enumerate(meta) if m.domain == 'micro']
    macro = [i for i, m in enumerate(meta) if m.domain == 'macro']
    by_key = {}
    for i in micro:
        by_key.setdefault(fold_key(meta[i].dataset, meta[i].subject), []).append(i)
    specs = []
    for k, test in by_key.items():
        held = set(test)
        specs.append((k, np.array([i for i in micro if i not in held] + macro), np.array(test)))
    return specs


def plan_heldout(meta):
    """[(key, train indices, test indices)] of the held-out-database protocol (MEGC2018's HDE): one fold per micro
    dataset, tested on all of its samples and trained on the other datasets' micro samples and every macro one."""
    micro = [i for i, m in enumerate(meta) if m.domain == 'micro']
    macro = [i for i, m in enumerate(meta) if m.domain == 'macro']
    present = {meta[i].dataset for i in micro}
    names = [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))
    return [(f'heldout_{ds}', np.array([i for i in micro if meta[i].dataset != ds] + macro),
             np.array([i for i in micro if meta[i].dataset == ds])) for ds in names]


# --protocol: how the micro samples are split into folds.
PROTOCOLS = {'loso': plan_folds, 'hde': plan_heldout}


def fold_of(protocol):
    """The fold a prediction row belongs to under `protocol`: its subject (LOSO) or its dataset (HDE)."""
    return (lambda r: r['dataset']) if protocol == 'hde' else (lambda r: (r['dataset'], r['subject']))


def confusion(labels, preds, n_classes=3):
    """(n_classes, n_classes) int counts, rows = ground truth, columns = prediction."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(labels, int), np.asarray(preds, int)), 1)
    return m


def scores(conf):
    """(UF1, UAR) of confusion counts (..., C, C) as MEGC2019 defines them: per class of the ground truth
    F1 = 2 TP / (2 TP + FP + FN) and recall TP / (TP + FN), each averaged over the classes present in it (MEGC's
    sets have all three). Batched: any leading shape (results/stats.py scores thousands of resampled tables at once)."""
    conf = np.asarray(conf, np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    truth, predicted = conf.sum(-1), conf.sum(-2)      # TP + FN, TP + FP
    present = truth > 0
    with np.errstate(invalid='ignore', divide='ignore'):
        f1 = np.where(present, 2 * tp / (truth + predicted), 0)
        recall = np.where(present, tp / truth, 0)
    n = present.sum(-1)
    return f1.sum(-1) / n, recall.sum(-1) / n


def uf1_uar(labels, preds, n_classes=3):
    """(UF1, UAR) of predictions pooled over every fold: the per-class TP, FP and FN of all folds summed, then
    `scores`."""
    if not len(labels):
        raise ValueError('uf1_uar: no labels to score')
    uf1, uar = scores(confusion(labels, preds, n_classes))
    return float(uf1), float(uar)


def metrics(rows, column='pred'):
    """UF1/UAR overall and per dataset (Table I's columns) from prediction rows (dicts with 'dataset', 'label' and
    the prediction `column`)."""
    res = {}
    for ds in ('all',) + DATASETS:
        sel = [r for r in rows if ds == 'all' or r['dataset'] == ds]
        if sel:
            uf1, uar = uf1_uar([r['label'] for r in sel], [r[column] for r in sel])
            res[ds] = {'uf1': round(uf1, 4), 'uar': round(uar, 4), 'n': len(sel)}
    return res
