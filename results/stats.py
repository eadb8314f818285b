"""How uncertain a Table I number is, and what the other evaluations in the literature would have made of it.

Beside loso.py (which scores a run as MEGC2019 defines it, `loso.scores`), from the same predictions, without retraining:
  - `bootstrap`: a 95 % interval of UF1/UAR over subjects. A draw resamples the subjects of each dataset with
    replacement (so the composite keeps its make-up of SMIC, CASME II and SAMM subjects) and recomputes MEGC's
    pooled counts; the draws multiply per-subject confusion counts (`subject_counts`), so 1000 draws take
    milliseconds. A row run under several seeds is scored as the mean over its seeds, each draw applied to all.
  - `paired`: the difference of two rows on the same subjects, with the same draws for both (a paired
    bootstrap), and the share of draws in which the first is ahead.
  - `audit`: the row's score under each evaluation that published code uses (README: "What the numbers mean").
"""
import numpy as np

from config import DATASETS
from loso import scores

LEVEL = 0.95
AUDIT = (  # (key, column name, what it does, whose code does it)
    ('megc', 'MEGC pooled', "MEGC2019's TP/FP/FN per class pooled over folds, after the last epoch",
     'the challenge; this project'),
    ('epoch_on_test', 'epoch chosen on test', "each fold's epoch with the best F1 on its own test subject, then "
     'pooled', "the authors' code; HTNet and CausalNet choose by accuracy"),
    ('per_subject', 'mean per subject', 'UF1/UAR of each subject alone, averaged over subjects', 'CapsuleNet'),
    ('fold_f1', 'per-fold F1, absent = 1', 'F1 of each fold, a class absent from its truth and predictions '
     'scoring 1, averaged over folds', "the authors' metric code"),
)


def subject_counts(rows, column='pred', n_classes=3):
    """(keys [(dataset, subject)] in first-seen order, counts (S, C, C) ints: rows truth, columns prediction)."""
    keys, index = [], {}
    for r in rows:
        k = (r['dataset'], r['subject'])
        if k not in index:
            index[k] = len(keys)
            keys.append(k)
    counts = np.zeros((len(keys), n_classes, n_classes), np.int64)
    np.add.at(counts, ([index[r['dataset'], r['subject']] for r in rows], [r['label'] for r in rows],
                       [r[column] for r in rows]), 1)
    return keys, counts


def draws(keys, n, seed=0):
    """(n, S) how often each subject is drawn in each of n bootstrap draws: the subjects of each dataset resampled
    with replacement among themselves, as many as it has."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n, len(keys)), np.int64)
    for ds in sorted({d for d, _ in keys}):
        cols = [i for i, (d, _) in enumerate(keys) if d == ds]
        w[:, cols] = rng.multinomial(len(cols), np.full(len(cols), 1 / len(cols)), size=n)
    return w


def _aligned(runs):
    """(keys, counts (R, S, C, C)) of several runs of the same subjects; a run of other subjects is an error."""
    keys, first = subject_counts(runs[0])
    counts = [first]
    for rows in runs[1:]:
        k, c = subject_counts(rows)
        if set(k) != set(keys):
            raise ValueError('runs of different subjects cannot be compared or averaged (other data or --index?)')
        order = {key: i for i, key in enumerate(k)}
        counts.append(c[[order[key] for key in keys]])
    return keys, np.stack(counts)


def _drawn_scores(keys, counts, w, ds):
    """UF1 and UAR (n,) of each draw w (n, S) for dataset ds ('all': every subject), averaged over the runs."""
    cols = np.array([ds == 'all' or d == ds for d, _ in keys])
    conf = np.einsum('ns,rsij->rnij', w[:, cols], counts[:, cols])
    uf1, uar = scores(conf)
    return uf1.mean(0), uar.mean(0)


def interval(values, level=LEVEL):
    """The percentile interval [lo, hi] of bootstrap values."""
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return [round(float(lo), 4), round(float(hi), 4)]


def _scopes(keys):
    """'all', then each dataset among the subjects `keys`: the columns of Table I they fill."""
    return ['all'] + [ds for ds in DATASETS if any(d == ds for d, _ in keys)]


def bootstrap(runs, n=1000, seed=0):
    """{'all' and each dataset: {'uf1': [lo, hi], 'uar': [lo, hi]}}: the 95 % interval of a row's UF1/UAR (the
    mean over its runs, one per seed: lists of prediction rows) over subjects resampled within each dataset."""
    keys, counts = _aligned(runs)
    w = draws(keys, n, seed)
    out = {}
    for ds in _scopes(keys):
        uf1, uar = _drawn_scores(keys, counts, w, ds)
        out[ds] = {'uf1': interval(uf1), 'uar': interval(uar)}
    return out


def paired(runs_a, runs_b, n=1000, seed=0):
    """{'all' and each dataset: {'uf1': (a - b, [lo, hi], share of draws with a ahead, share tied), 'uar': ...}}:
    the difference of two rows scored on the same resampled subjects in every draw."""
    keys, counts = _aligned(list(runs_a) + list(runs_b))
    w = draws(keys, n, seed)
    out = {}
    for ds in _scopes(keys):
        point = [_drawn_scores(keys, counts[part], np.ones((1, len(keys)), np.int64), ds)
                 for part in (slice(0, len(runs_a)), slice(len(runs_a), None))]
        drawn = [_drawn_scores(keys, counts[part], w, ds)
                 for part in (slice(0, len(runs_a)), slice(len(runs_a), None))]
        out[ds] = {}
        for j, m in enumerate(('uf1', 'uar')):
            diff = drawn[0][j] - drawn[1][j]
            tied = np.isclose(diff, 0, rtol=0, atol=1e-12)
            out[ds][m] = (round(float(point[0][j][0] - point[1][j][0]), 4), interval(diff),
                          round(float(np.mean((diff > 0) & ~tied)), 3), round(float(np.mean(tied)), 3))
    return out


def fold_f1(labels, preds, n_classes=3):
    """The authors' per-fold F1: per class 2TP / (2TP + FP + FN), 1 where the class is neither in the fold's
    ground truth nor among its predictions, averaged over all classes."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    f1 = []
    for c in range(n_classes):
        tp = np.sum((labels == c) & (preds == c))
        denom = np.sum(labels == c) + np.sum(preds == c)
        f1.append(2 * tp / denom if denom else 1.0)
    return float(np.mean(f1))


def epoch_on_test(preds, labels):
    """Index of the epoch the authors' code keeps for a fold: the best fold_f1 on the test subject's own labels,
    the last one on ties. preds (epochs, n_test)."""
    f1 = [fold_f1(labels, p) for p in preds]
    return len(f1) - 1 - int(np.argmax(f1[::-1]))


def audit(rows, fold=lambda r: (r['dataset'], r['subject'])):
    """{variant: {'uf1', 'uar', 'acc'} (those it defines)} of a run's prediction rows, for every variant of AUDIT.
    `fold` names the fold of a row (LOSO: its subject; the held-out-database protocol: its dataset)."""
    out = {}
    counts = {column: subject_counts(rows, column)[1] for column in ('pred', 'pred_selected')}
    for key, column in (('megc', 'pred'), ('epoch_on_test', 'pred_selected')):
        pooled = counts[column].sum(0)
        uf1, uar = scores(pooled)
        out[key] = {'uf1': uf1, 'uar': uar, 'acc': np.trace(pooled) / pooled.sum()}
    counts = counts['pred']
    uf1, uar = scores(counts)
    acc = np.trace(counts, axis1=1, axis2=2) / counts.sum((1, 2))
    out['per_subject'] = {'uf1': uf1.mean(), 'uar': uar.mean(), 'acc': acc.mean()}
    folds = {}
    for r in rows:
        folds.setdefault(fold(r), []).append(r)
    out['fold_f1'] = {'uf1': float(np.mean([fold_f1([r['label'] for r in f], [r['pred'] for r in f])
                                            for f in folds.values()]))}
    return {k: {m: round(float(v), 4) for m, v in d.items()} for k, d in out.items()}
