"""What a LOSO run reports (paper §IV, MEGC2019): UF1/UAR, Table I, the MEGC log, confusion matrices, curves."""
import csv
import io

import numpy as np

from config import CLASSES, DATASETS, atomic_write


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


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_confusions(out, rows):
    """confusion_<dataset>.png per dataset (and overall), counts in each cell."""
    plt = _pyplot()
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


LOG_COLUMNS = ('fold', 'epoch', 'lt', 'lb', 'lc', 'ladv', 'acc')


def train_log_csv(logs):
    """train_log.csv text: per fold and epoch the mean Lt, Lb, Lc, Ladv of its steps and the training accuracy."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_COLUMNS, lineterminator='\n')
    w.writeheader()
    for key, rows in logs:
        for r in rows:
            w.writerow(dict(r, fold=key))
    return buf.getvalue()


def epoch_means(logs):
    """{column: per-epoch mean over folds} of the training log (what curves.png draws)."""
    cols = LOG_COLUMNS[2:]
    arr = np.array([[[r[c] for c in cols] for r in rows] for _, rows in logs], dtype=np.float64)
    return {c: arr[:, :, i].mean(0) for i, c in enumerate(cols)}


def save_curves(out, logs):
    """curves.png: the losses (left) and the training accuracy (right) per epoch, mean over folds."""
    plt = _pyplot()
    m = epoch_means(logs)
    epochs = np.arange(1, len(m['lc']) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    for c, name in (('lt', 'Lt (top)'), ('lb', 'Lb (bottom)'), ('lc', 'Lc (joint)'), ('ladv', 'Ladv')):
        if np.any(m[c]):
            a.plot(epochs, m[c], label=name)
    a.set_xlabel('epoch'), a.set_ylabel(f'mean loss over {len(logs)} folds'), a.legend(fontsize=8)
    b.plot(epochs, m['acc'])
    b.set_xlabel('epoch'), b.set_ylabel('training accuracy'), b.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(out / 'curves.png')
    plt.close(fig)


def write_run(out, rows, logs, select_on_test):
    """metrics.json, megc_log.txt, train_log.csv, curves.png and the confusion matrices of a finished run."""
    import json
    res = {'honest': metrics(rows, 'pred')}
    if select_on_test:
        res['selected_on_test'] = metrics(rows, 'pred_selected')
    atomic_write(out / 'metrics.json', json.dumps(res, indent=1))
    atomic_write(out / 'megc_log.txt', megc_log(rows))
    if any(rows for _, rows in logs):
        atomic_write(out / 'train_log.csv', train_log_csv(logs))
        save_curves(out, logs)
    save_confusions(out, rows)
    return res
