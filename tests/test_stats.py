"""Intervals, paired comparisons, the protocol audit and the held-out-database folds, against hand computations."""
import numpy as np
import pytest

import loso
from config import Sample
from results import stats


def _rows(spec):
    """Prediction rows from {(dataset, subject): [(label, pred[, pred_selected]), ...]}."""
    rows = []
    for (ds, subject), pairs in spec.items():
        for i, p in enumerate(pairs):
            rows.append(dict(dataset=ds, subject=subject, clip=f'c{i}', label=p[0], pred=p[1],
                             pred_selected=p[2] if len(p) > 2 else p[1]))
    return rows


def _fixed_accuracy(n_subjects, seed=0):
    """Subjects of 6 clips (2 of each class) with 4 right: 2/3 accuracy in every subject."""
    rng = np.random.default_rng(seed)
    spec = {}
    for s in range(n_subjects):
        labels = [0, 0, 1, 1, 2, 2]
        wrong = rng.choice(6, 2, replace=False)
        spec['casme2' if s % 2 else 'samm', f's{s}'] = [(y, (y + 1) % 3 if i in wrong else y)
                                                          for i, y in enumerate(labels)]
    return _rows(spec)


def test_scores_from_counts_equal_megc_scores():
    rows = _fixed_accuracy(7)
    _, counts = stats.subject_counts(rows)
    uf1, uar = loso.scores(counts.sum(0))
    assert (uf1, uar) == pytest.approx(loso.uf1_uar([r['label'] for r in rows], [r['pred'] for r in rows]))


def test_the_interval_of_a_perfect_prediction_is_one_one():
    rows = _rows({('smic', f's{i}'): [(y, y) for y in (0, 1, 2, i % 3)] for i in range(5)})
    ci = stats.bootstrap([rows], 500)
    assert ci['all'] == {'uf1': [1.0, 1.0], 'uar': [1.0, 1.0]} and ci['smic']['uf1'] == [1.0, 1.0]


def test_an_interval_holds_the_estimate_and_narrows_with_more_subjects():
    widths = []
    for n in (6, 24, 96):
        rows = _fixed_accuracy(n)
        point = loso.metrics(rows)['all']['uf1']
        lo, hi = stats.bootstrap([rows], 1000)['all']['uf1']
        assert lo < point < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2] > 0


def test_draws_resample_subjects_within_their_dataset():
    keys = [('smic', 'a'), ('smic', 'b'), ('samm', 'c'), ('samm', 'd'), ('samm', 'e')]
    w = stats.draws(keys, 200, seed=1)
    assert (w[:, :2].sum(1) == 2).all() and (w[:, 2:].sum(1) == 3).all()       # each dataset keeps its size
    assert (w == 0).any() and (w > 1).any()                                    # with replacement
    assert np.array_equal(w, stats.draws(keys, 200, seed=1))                   # seeded


def test_a_row_against_itself_differs_by_zero():
    rows = _fixed_accuracy(12)
    p = stats.paired([rows], [rows], 500)
    assert p['all']['uf1'] == (0.0, [0.0, 0.0], 0.0, 1.0) and p['samm']['uar'] == (0.0, [0.0, 0.0], 0.0, 1.0)


def test_a_better_row_is_ahead_in_most_draws():
    worse = _fixed_accuracy(30)
    better = [dict(r, pred=r['label']) if i % 3 else r for i, r in enumerate(worse)]
    p = stats.paired([better], [worse], 500)
    diff, (lo, hi), ahead, _ = p['all']['uf1']
    assert diff == pytest.approx(loso.metrics(better)['all']['uf1'] - loso.metrics(worse)['all']['uf1'], abs=1e-4)
    assert 0 < lo <= diff <= hi and ahead > 0.95


def test_seeds_are_averaged_under_the_same_draws():
    a, b = _fixed_accuracy(10, seed=0), _fixed_accuracy(10, seed=1)
    ci = stats.bootstrap([a, b], 300)
    mean = (loso.metrics(a)['all']['uf1'] + loso.metrics(b)['all']['uf1']) / 2
    assert ci['all']['uf1'][0] <= mean <= ci['all']['uf1'][1]
    with pytest.raises(ValueError, match='different subjects'):
        stats.bootstrap([a, _fixed_accuracy(11)], 100)


def test_the_audit_against_a_hand_computation():
    rows = _rows({
        # subject A: classes 0 and 1 only (2 absent from its fold); one error; the test-chosen epoch is perfect
        ('casme2', 'A'): [(0, 0, 0), (0, 1, 0), (1, 1, 1)],
        # subject B: all three classes; two errors, predictions of the chosen epoch unchanged
        ('samm', 'B'): [(0, 0), (1, 2), (2, 2), (2, 0)],
    })
    a = stats.audit(rows)
    # pooled last epoch: confusion rows truth [[2,1,0],[0,1,1],[1,0,1]]
    f1 = [2 * 2 / (3 + 3), 2 * 1 / (2 + 2), 2 * 1 / (2 + 2)]
    rec = [2 / 3, 1 / 2, 1 / 2]
    assert a['megc'] == pytest.approx({'uf1': round(np.mean(f1), 4), 'uar': round(np.mean(rec), 4),
                                       'acc': round(4 / 7, 4)})
    # epoch chosen on test: subject A all right -> [[3,0,0],[0,1,1],[1,0,1]]
    f1s = [2 * 3 / (3 + 4), 2 * 1 / (2 + 1), 2 * 1 / (2 + 2)]
    assert a['epoch_on_test']['uf1'] == pytest.approx(round(np.mean(f1s), 4))
    assert a['epoch_on_test']['acc'] == pytest.approx(round(5 / 7, 4))
    # per subject: A scores classes 0, 1 (F1 2/3 and 2/3; recall 1/2 and 1); B all three
    uf1_a, uar_a = np.mean([2 / 3, 2 / 3]), np.mean([1 / 2, 1])
    uf1_b, uar_b = np.mean([2 / 3, 0, 1 / 2]), np.mean([1, 0, 1 / 2])
    assert a['per_subject'] == pytest.approx({'uf1': round((uf1_a + uf1_b) / 2, 4),
                                              'uar': round((uar_a + uar_b) / 2, 4),
                                              'acc': round((2 / 3 + 2 / 4) / 2, 4)})
    # per fold, absent class = 1: A (2/3 + 2/3 + 1) / 3; B (2/3 + 0 + 1/2) / 3; mean over the two folds
    assert a['fold_f1'] == pytest.approx({'uf1': round(((4 / 3 + 1) / 3 + (2 / 3 + 1 / 2) / 3) / 2, 4)})


def test_the_authors_epoch_is_the_best_fold_f1_last_on_ties():
    labels = np.array([0, 0, 1])
    preds = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 1], [0, 0, 1], [2, 2, 2]])
    assert stats.epoch_on_test(preds, labels) == 3
    assert stats.fold_f1([0, 1], [0, 1]) == 1.0 and stats.fold_f1([0, 0], [1, 1]) == pytest.approx(1 / 3)


def _sample(ds, subject, domain='micro'):
    return Sample(ds, subject, f'{ds}{subject}', ('a', 'b'), 0, 1, 0, 200.0, domain)


def test_no_held_out_fold_trains_on_its_test_database():
    meta = ([_sample(ds, s) for ds in ('samm', 'smic', 'casme2') for s in ('1', '2', '3')] +
            [_sample('ck+', 'S1', 'macro'), _sample('ck+', 'S2', 'macro')])
    specs = loso.plan_heldout(meta)
    assert [k for k, _, _ in specs] == ['heldout_smic', 'heldout_casme2', 'heldout_samm']
    for key, train, test in specs:
        held = key.split('_', 1)[1]
        assert {meta[i].dataset for i in test} == {held} and len(test) == 3
        assert held not in {meta[i].dataset for i in train} and len(train) == 6 + 2    # others' micro and CK+
        assert {meta[i].domain for i in test} == {'micro'}
    assert loso.fold_of('hde')(dict(dataset='samm', subject='1')) == 'samm'


def test_table_summaries_with_seeds_average_and_pair_every_seed():
    import argparse

    from engine import experiment
    from results import report
    def res(rows):
        return {'honest': report.scored([rows], 200), 'audit': stats.audit(rows), 'rows': rows}
    base = _fixed_accuracy(8, seed=0)
    better = [dict(r, pred=r['label'], pred_selected=r['label']) for r in base]
    a = argparse.Namespace(seed_list=[0, 5], bootstrap=200)
    results = [('LBP-TOP', [res(base)]), ('Full', [res(better), res(base)]), ('Ablation', [res(base), res(base)])]
    lines, paired, audits = experiment.summaries(a, results)
    assert [n for n, _ in lines] == ['LBP-TOP', 'Full, seed 0', 'Full, seed 5', 'Full, mean of 2 seeds',
                                     'Ablation, seed 0', 'Ablation, seed 5', 'Ablation, mean of 2 seeds']
    full_mean = dict(lines)['Full, mean of 2 seeds']['all']
    assert full_mean['uf1'] == pytest.approx((1 + loso.metrics(base)['all']['uf1']) / 2, abs=1e-4)
    assert full_mean['uf1_sd'] > 0 and full_mean['uf1_ci'][0] <= full_mean['uf1'] <= full_mean['uf1_ci'][1]
    assert [n for n, _ in paired] == ['Full − LBP-TOP', 'Full − Ablation']
    diff = dict(paired)['Full − Ablation']['all']['uf1'][0]
    assert diff == pytest.approx(full_mean['uf1'] - loso.metrics(base)['all']['uf1'], abs=1e-4)
    assert dict(audits)['Full']['megc']['uf1'] == pytest.approx(full_mean['uf1'], abs=1e-4)
