"""How far a run's class probabilities can be trusted, and one number that makes them trustworthier.

Each fold file keeps the joint classifier's logits for its test clips after the last epoch: predictions made by
a network that never saw the clip's subject. Over all of them (the run's out-of-fold predictions):

  ECE         expected calibration error: the clips binned by their top probability (15 equal bins), the
              clip-weighted mean of |accuracy - mean confidence| per bin (Guo et al., ICML 2017)
  NLL         the mean negative log-likelihood of the true class
  temperature one number T > 0 that divides the logits before the softmax, chosen to minimise the NLL of the
              out-of-fold predictions (temperature scaling, Guo et al. 2017): it changes no prediction (the argmax
              of logits / T is the argmax of the logits), only how sure they sound

A network trained to near-zero training loss on a few hundred clips is overconfident on a new subject (its
probabilities near 1 are right far less often than that); T > 1 softens them. The temperature is fitted on every
out-of-fold prediction of the run, so the ECE after it is measured on the predictions it was fitted to: it says
how well one number can correct the network, not how well it will do on new data. What a user reads the ECE as,
how sure the model's probabilities are on a subject it never saw, is measured by cross-fitting: each fold's clips
are scaled by the temperature fitted on the other folds' clips only, and the ECE is taken over those ('crossfit').
Where that is no better than the network's own ECE, the temperature does not help ('helps' False): the model of
--save-model, trained with the same settings on every subject, carries T either way, and `mer.py predict` and
`mer.py spot` apply it only where it helps.
"""
import numpy as np

BINS = 15


def softmax(logits, temperature=1.0):
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(logits, labels, temperature=1.0):
    """Mean negative log-likelihood of the labels under softmax(logits / T)."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def ece(probs, labels, bins=BINS):
    """Expected calibration error of (n, classes) probabilities against the labels, `bins` equal-width bins of the
    top probability; (ECE, per bin [(low, high, clips, accuracy, confidence)])."""
    probs = np.asarray(probs, np.float64)
    conf, pred = probs.max(1), probs.argmax(1)
    right = pred == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side='left') - 1, 0, bins - 1)
    table, total = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(right[m].mean() - conf[m].mean())
            table.append([float(edges[b]), float(edges[b + 1]), int(m.sum()), float(right[m].mean()),
                          float(conf[m].mean())])
    return float(total / max(len(conf), 1)), table


def fit_temperature(logits, labels):
    """The T in [0.05, 20] minimising the NLL of softmax(logits / T) (a bounded search over log T: the NLL is
    convex in 1 / T)."""
    from scipy.optimize import minimize_scalar
    labels = np.asarray(labels)
    r = minimize_scalar(lambda lt: nll(logits, labels, np.exp(lt)), bounds=(np.log(0.05), np.log(20.0)),
                        method='bounded', options=dict(xatol=1e-5))
    return float(np.exp(r.x))


def cross_fitted(logits, labels, folds):
    """(n, classes) probabilities of every clip under the temperature fitted on the other folds' clips only."""
    folds = np.asarray([str(f) for f in folds])
    probs = np.empty_like(logits)
    for f in np.unique(folds):
        mine = folds == f
        probs[mine] = softmax(logits[mine], fit_temperature(logits[~mine], labels[~mine]))
    return probs


def calibrate(logits, labels, folds=None):
    """The temperature of out-of-fold logits and the calibration before and after it: a dict for metrics.json and
    model.pt, with the reliability tables; with `folds` (each clip's fold, two or more) also the ECE and NLL of
    the cross-fitted probabilities and whether the temperature helps on folds it was not fitted to."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    t = fit_temperature(logits, labels)
    before, table_before = ece(softmax(logits), labels)
    after, table_after = ece(softmax(logits, t), labels)
    out = dict(temperature=round(t, 6), n=int(len(labels)), ece_before=round(before, 6), ece_after=round(after, 6),
               nll_before=round(nll(logits, labels), 6), nll_after=round(nll(logits, labels, t), 6),
               bins_before=table_before, bins_after=table_after,
               fitted_on='the out-of-fold logits of this run (each fold\'s test clips after its last epoch)')
    if folds is not None and len(set(map(str, folds))) > 1:
        p = cross_fitted(logits, labels, folds)
        cross = ece(p, labels)[0]
        logp = np.log(np.clip(p[np.arange(len(labels)), labels], 1e-300, None))
        out.update(ece_crossfit=round(cross, 6), nll_crossfit=round(float(-logp.mean()), 6), helps=bool(cross < before))
    return out


def verdict(cal):
    """One sentence of what the temperature does to predictions it was not fitted to."""
    if 'ece_crossfit' not in cal:
        return (f'ECE {cal["ece_before"]:.3f} -> {cal["ece_after"]:.3f} on the predictions the temperature was '
                'fitted to (no folds to cross-fit)')
    return (f'on folds it was not fitted to (each fold scaled by the temperature of the others) ECE '
            f'{cal["ece_before"]:.3f} -> {cal["ece_crossfit"]:.3f}: ' +
            ('it helps' if cal['helps'] else 'it does not help, and predict and spot leave the probabilities as '
             'the network gives them'))


def reliability_png(cal):
    """PNG bytes: the reliability diagram before and after temperature scaling (accuracy against confidence per
    bin, bar width the bin, the diagonal a calibrated network)."""
    import io

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for ax, key, title in ((axes[0], 'before', 'the network'), (axes[1], 'after',
                                                                  f'temperature {cal["temperature"]:.2f}')):
        rows = cal[f'bins_{key}']
        ax.bar([(lo + hi) / 2 for lo, hi, *_ in rows], [acc for *_, acc, _ in rows],
               width=[hi - lo for lo, hi, *_ in rows], edgecolor='k', alpha=0.7, label='accuracy')
        ax.plot([r[4] for r in rows], [r[3] for r in rows], 'o', color='tab:red', ms=3, label='(confidence, accuracy)')
        ax.plot([0, 1], [0, 1], 'k--', lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel('confidence (top probability)')
        ax.set_title(f'{title}: ECE {cal[f"ece_{key}"]:.3f}', fontsize=9)
    axes[0].set_ylabel('accuracy')
    axes[0].legend(loc='upper left', fontsize=7)
    fig.suptitle(f'out-of-fold predictions of {cal["n"]} clips; the right panel is fitted on them' +
                 (f' (on folds it was not fitted to: ECE {cal["ece_crossfit"]:.3f})' if 'ece_crossfit' in cal else ''),
                 fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90)
    plt.close(fig)
    return buf.getvalue()
