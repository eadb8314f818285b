"""MEGC's scores for spotting in long videos (MEGC 2020-2022) and for spot-then-recognise (STR, MEGC 2023-2025).

An interval is a dict with 'start' and 'end' frame numbers (both inclusive) and 'kind' ('micro' | 'macro'); a
true one may carry 'label' (0 negative, 1 positive, 2 surprise), a spotted one 'pred'.

Spotting (He et al., FG 2020, the MEGC 2020 baseline's evaluation): a spotted interval is a true positive when
its IoU with a true interval of the same video and kind is at least 0.5, frames counted inclusively
(|[a, b]| = b - a + 1). TP, FP and FN are summed over every video, per kind; the overall score sums the two kinds'
counts. F1 = 2TP / (2TP + FP + FN).

Matching is one-to-one (each true interval is hit by at most one spot and each spot hits at most one truth, the
pairs taken by IoU, highest first). The baseline's reference code instead counts a truth as found when any spot
reaches 0.5 and sets FP = spots - TP: a spot exactly covering two adjacent truths (IoU exactly 0.5 with each)
then counts as two true positives and FP comes out negative. One-to-one gives TP 1, FN 1, FP 0; on every other
case the two agree (tested).

STR: the recogniser is scored on the correctly spotted micro-expressions only (the spots matched above, with
their truth's label against the prediction), as UF1 and UAR (MEGC2019's, loso.uf1_uar); the STR score is the
micro spotting F1 times that UF1 (Liong et al. 2023, MEAN: F1_spot x F1_recog).

How far a figure could move on other videos like these (`drawn_f1`, `uncertainty`): the videos are resampled with
replacement within each group (a source, a dataset, a subject), as many as it has, and the pooled counts summed
again, with results/stats.py's draws (its resampling of MEGC2019's subjects within each dataset).
"""
import numpy as np

IOU_MIN = 0.5
KINDS = ('micro', 'macro')


def iou(a, b):
    """IoU of two intervals (start, end), frames counted inclusively."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


def match(spots, truths, iou_min=IOU_MIN):
    """[(spot index, truth index, IoU)]: one-to-one pairs with IoU >= iou_min, highest IoU first (ties: earlier
    spot, then earlier truth)."""
    pairs = sorted(((-iou((s['start'], s['end']), (t['start'], t['end'])), i, j)
                    for i, s in enumerate(spots) for j, t in enumerate(truths)))
    used_s, used_t, out = set(), set(), []
    for neg, i, j in pairs:
        if -neg < iou_min:
            break
        if i in used_s or j in used_t:
            continue
        used_s.add(i), used_t.add(j)
        out.append((i, j, -neg))
    return out


def f1(tp, fp, fn):
    """Precision, recall, F1 (0 where undefined)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * tp / (2 * tp + fp + fn) if tp else 0.0)


def score(videos, iou_min=IOU_MIN):
    """MEGC spotting scores of {video: (spots, truths)}: for 'micro', 'macro' and 'overall', a dict of tp, fp, fn,
    precision, recall, f1; and 'pairs': [(video, spot, truth)] of the true positives."""
    counts = {k: [0, 0, 0] for k in KINDS}
    pairs = []
    for video, (spots, truths) in videos.items():
        for k in KINDS:
            s = [x for x in spots if x['kind'] == k]
            t = [x for x in truths if x['kind'] == k]
            m = match(s, t, iou_min)
            counts[k][0] += len(m)
            counts[k][1] += len(s) - len(m)
            counts[k][2] += len(t) - len(m)
            pairs += [(video, s[i], t[j]) for i, j, _ in m]
    counts['overall'] = [sum(counts[k][i] for k in KINDS) for i in range(3)]
    out = {}
    for k, (tp, fp, fn) in counts.items():
        p, r, f = f1(tp, fp, fn)
        out[k] = dict(tp=tp, fp=fp, fn=fn, precision=p, recall=r, f1=f)
    out['pairs'] = pairs
    return out


def drawn_f1(counts, groups, n=1000, seed=0):
    """(n,) MEGC's pooled F1 in each of n bootstrap draws of the videos: counts (V, 3) each video's TP, FP, FN;
    groups (V,) each video's group, within which the videos are drawn with replacement, as many as it has.
    Several spotters scored on the same videos (counts (S, V, 3)) get the same draws: (S, n)."""
    from results import stats
    w = stats.draws([(str(g), i) for i, g in enumerate(groups)], n, seed)
    return pooled_f1(w @ np.asarray(counts, np.int64))


def pooled_f1(counts):
    """MEGC's F1 of pooled counts (..., 3): TP, FP, FN in the last axis."""
    tp, fp, fn = np.moveaxis(np.asarray(counts), -1, 0)
    return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def uncertainty(counts, groups, n=1000, seed=0, level=0.95):
    """{'f1': the pooled F1, 'interval': its [lo, hi] percentile interval over drawn_f1's draws}; for two spotters
    on the same videos (counts (2, V, 3)) also 'difference': the first's F1 less the second's, its interval on the
    same draws, and 'ahead': the share of draws in which the first scores higher."""
    from results import stats
    counts = np.asarray(counts, np.int64)
    point = pooled_f1(counts.sum(-2))
    drawn = drawn_f1(counts, groups, n, seed)
    if counts.ndim == 2:
        return dict(f1=round(float(point), 4), interval=stats.interval(drawn, level))
    out = dict(f1=np.round(point, 4).tolist(), interval=[stats.interval(d, level) for d in drawn])
    if len(counts) == 2:
        diff = drawn[0] - drawn[1]
        out.update(difference=round(float(point[0] - point[1]), 4), difference_interval=stats.interval(diff, level),
                   ahead=round(float(np.mean(diff > 1e-12)), 3))
    return out


def str_score(scores):
    """STR scores from `score`'s result, whose micro spots carry 'pred' and truths 'label': UF1 and UAR over the
    correctly spotted micro-expressions, and STR = micro spotting F1 x UF1 (None where no labelled micro spot is
    correct)."""
    import loso
    pairs = [(t['label'], s['pred']) for _, s, t in scores['pairs']
             if t['kind'] == 'micro' and t.get('label') is not None and s.get('pred') is not None]
    if not pairs:
        return dict(n=0, uf1=None, uar=None, str=None)
    labels, preds = np.array(pairs).T
    uf1, uar = loso.uf1_uar(labels, preds)
    return dict(n=len(pairs), uf1=uf1, uar=uar, str=scores['micro']['f1'] * uf1)
