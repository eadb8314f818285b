"""What a run writes and prints: Table I with intervals, the paired comparisons of rows, the protocol audit, the
MEGC log, confusion matrices, training curves, the --figure picture. The scores themselves are loso.metrics and
results/stats.py."""
import csv
import io
import logging

import numpy as np

import loso
from config import CLASSES, DATASETS
from util.files import atomic_write
from results import stats

log = logging.getLogger(__name__)


def table(named_metrics):
    """Markdown rows in the layout of the paper's Table I: overall, SMIC, CASME II, SAMM; UF1 and UAR each, with
    their intervals (and the spread over seeds) where the metrics have them."""
    head = ('| method | UF1 | UAR | SMIC UF1 | SMIC UAR | CASME II UF1 | CASME II UAR | SAMM UF1 | SAMM UAR |\n'
            '|---|---|---|---|---|---|---|---|---|')
    lines = [head]
    for name, m in named_metrics:
        cells = []
        for ds in ('all',) + DATASETS:
            cells += [cell(m[ds], 'uf1'), cell(m[ds], 'uar')] if ds in m else ['–', '–']
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
        m = loso.confusion([r['label'] for r in sel], [r['pred'] for r in sel])
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


def scored(runs, n_boot):
    """Table I's metrics of a row (loso.metrics; the mean over its runs, one per seed, with the standard deviation
    over them as uf1_sd, uar_sd) with stats.bootstrap's 95 % intervals as uf1_ci, uar_ci."""
    each = [loso.metrics(rows) for rows in runs]
    ci = stats.bootstrap(runs, n_boot)
    res = {}
    for ds, m in each[0].items():
        res[ds] = {'n': m['n']}
        for k in ('uf1', 'uar'):
            v = [e[ds][k] for e in each]
            res[ds][k] = round(float(np.mean(v)), 4)
            if len(runs) > 1:
                res[ds][k + '_sd'] = round(float(np.std(v, ddof=1)), 4)
            res[ds][k + '_ci'] = ci[ds][k]
    return res


def write_run(out, rows, logs, protocol='loso', n_boot=1000):
    """metrics.json (scores with intervals, and the protocol audit), megc_log.txt, train_log.csv, curves.png and
    the confusion matrices of a finished run; returns what metrics.json holds."""
    import json

    res = {'honest': scored([rows], n_boot), 'audit': stats.audit(rows, loso.fold_of(protocol))}
    keys = [f'logit_{c}' for c in CLASSES]
    if rows and all(k in r for r in rows for k in keys):     # a network's run (a baseline has no logits)
        from results import calibration
        fold = loso.fold_of(protocol)
        cal = calibration.calibrate([[r[k] for k in keys] for r in rows], [r['label'] for r in rows],
                                    [fold(r) for r in rows])
        res['calibration'] = cal
        atomic_write(out / 'reliability.png', calibration.reliability_png(cal))
        log.info('calibration of the out-of-fold probabilities by temperature %.2f: %s (metrics.json, '
                 'reliability.png)', cal['temperature'], calibration.verdict(cal))
    atomic_write(out / 'metrics.json', json.dumps(res, indent=1))
    atomic_write(out / 'megc_log.txt', megc_log(rows))
    if any(rows for _, rows in logs):
        atomic_write(out / 'train_log.csv', train_log_csv(logs))
        save_curves(out, logs)
    save_confusions(out, rows)
    return res


def cell(m, k):
    """'0.7885 [0.741, 0.832]', with '± sd' after the mean of several seeds."""
    sd = f" ± {m[k + '_sd']:.3f}" if k + '_sd' in m else ''
    ci = f" [{m[k + '_ci'][0]:.3f}, {m[k + '_ci'][1]:.3f}]" if k + '_ci' in m else ''
    return f'{m[k]:.4f}{sd}{ci}'


def paired_table(comparisons):
    """Markdown: per (name, stats.paired result) the difference UF1 and UAR with the paired bootstrap's 95 %
    interval, overall and per dataset, and the share of draws in which the first row is ahead (and tied)."""
    def share(p):
        return f'{p[2]:.0%}' + (f' ({p[3]:.0%} tied)' if p[3] else '')

    lines = ['| comparison | ΔUF1 [95 % CI] | first ahead | ΔUAR [95 % CI] | first ahead | SMIC ΔUF1 | CASME II ΔUF1 '
             '| SAMM ΔUF1 |', '|---|---|---|---|---|---|---|---|']
    for name, p in comparisons:
        def d(ds, k):
            if ds not in p:
                return '–'
            diff, (lo, hi), _, _ = p[ds][k]
            return f'{diff:+.4f} [{lo:+.3f}, {hi:+.3f}]'
        lines.append(f"| {name} | {d('all', 'uf1')} | {share(p['all']['uf1'])} | {d('all', 'uar')} | "
                     f"{share(p['all']['uar'])} | " + ' | '.join(d(ds, 'uf1') for ds in DATASETS) + ' |')
    return '\n'.join(lines)


def audit_table(named_audits):
    """Markdown: a row's UF1 (and UAR, accuracy where the variant defines them) under each evaluation of
    stats.AUDIT, one line per row of Table I, and what each evaluation does and whose code does it."""
    lines = ['| method | ' + ' | '.join(name for _, name, _, _ in stats.AUDIT) + ' |',
             '|---' * (len(stats.AUDIT) + 1) + '|']
    for name, a in named_audits:
        cells = []
        for key, _, _, _ in stats.AUDIT:
            v = a[key]
            cells.append(f"UF1 {v['uf1']:.4f}" + (f", UAR {v['uar']:.4f}" if 'uar' in v else '') +
                         (f", acc {v['acc']:.4f}" if 'acc' in v else ''))
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += [''] + [f'- {name}: {what} ({who})' for _, name, what, who in stats.AUDIT]
    return '\n'.join(lines)


def figure(samples, cfg, path):
    """Saves, per class, onset | apex | magnified apex | flow (raw) | flow (magnified) of one sample as one PNG,
    through the pipeline's own steps, and logs the mean flow magnitudes."""
    import dataclasses
    from pathlib import Path

    import cv2

    import flow
    import pipeline
    from data.frames import read_frames
    path = Path(path)
    if path.suffix.lower() not in ('.png', '.jpg', '.jpeg'):
        raise SystemExit(f'mer.py: error: --figure {path}: give a .png or .jpg file name')
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, emr=True)
    tiles = []
    for label in range(len(CLASSES)):
        s = next((s for s in samples if s.label == label), None)
        if s is None:
            continue
        st = pipeline.run(s, cfg, read_frames)
        onset, apex = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (st.onset, st.apex))
        raw = flow.optical_flow(onset, apex, method=cfg.flow)
        tiles.append(np.hstack([st.onset, st.apex, st.flow_to, flow.to_image(raw), flow.to_image(st.flow)]))
        log.info('figure: %s %s label %d: mean |flow| raw %.3f px, magnified %.3f px', s.dataset, s.clip, label,
                 np.linalg.norm(raw, axis=2).mean(), np.linalg.norm(st.flow, axis=2).mean())
    ok, data = cv2.imencode(path.suffix, np.vstack(tiles))
    if not ok:
        raise SystemExit(f'mer.py: error: --figure {path}: could not write the file')
    atomic_write(path, data.tobytes())
    log.info('figure saved to %s (columns: onset, apex, magnified apex, flow, flow of magnified)', path)
