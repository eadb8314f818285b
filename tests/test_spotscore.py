"""MEGC spotting and STR scores against hand-made cases and the baseline's reference counting."""
import json

import numpy as np
import pytest

from video import scoring


def iv(start, end, kind='micro', **kw):
    return dict(start=start, end=end, kind=kind, **kw)


def reference_counts(spots, truths):
    """The MEGC 2020 baseline's evaluation: a truth is found when any spot reaches IoU 0.5; FP = spots - TP."""
    tp = sum(any(scoring.iou((s['start'], s['end']), (t['start'], t['end'])) >= 0.5 for s in spots)
             for t in truths)
    return tp, len(spots) - tp, len(truths) - tp


def test_iou_counts_frames_inclusively_and_exactly_half_is_a_hit():
    assert scoring.iou((0, 9), (0, 9)) == 1.0
    assert scoring.iou((0, 9), (10, 19)) == 0.0
    assert scoring.iou((0, 0), (0, 0)) == 1.0                  # one frame is one frame, not zero
    assert scoring.iou((0, 9), (5, 14)) == 5 / 15
    assert scoring.iou((0, 9), (0, 19)) == 0.5                 # 10 of 20 frames: exactly 0.5
    r = scoring.score({'v': ([iv(0, 19)], [iv(0, 9)])})
    assert (r['micro']['tp'], r['micro']['fp'], r['micro']['fn']) == (1, 0, 0)
    r = scoring.score({'v': ([iv(0, 20)], [iv(0, 9)])})        # 10 of 21: below 0.5
    assert (r['micro']['tp'], r['micro']['fp'], r['micro']['fn']) == (0, 1, 1)


def test_one_spot_covering_two_truths_is_one_true_positive():
    spots, truths = [iv(0, 19)], [iv(0, 9), iv(10, 19)]          # IoU exactly 0.5 with each
    r = scoring.score({'v': (spots, truths)})
    assert (r['micro']['tp'], r['micro']['fp'], r['micro']['fn']) == (1, 0, 1)
    assert reference_counts(spots, truths) == (2, -1, 0)           # the reference counts it twice


def test_one_truth_is_matched_by_one_spot_only():
    spots, truths = [iv(0, 9), iv(1, 9)], [iv(0, 9)]              # both reach IoU 0.5 with the one truth
    r = scoring.score({'v': (spots, truths)})
    assert (r['micro']['tp'], r['micro']['fp'], r['micro']['fn']) == (1, 1, 0)
    assert [(s['start'], t['start']) for _, s, t in r['pairs']] == [(0, 0)]   # the better of the two


def test_matches_the_reference_counting_where_no_spot_can_serve_two_truths():
    rng = np.random.default_rng(0)
    for _ in range(300):
        truths, t = [], 0
        for _ in range(rng.integers(0, 5)):                        # disjoint truths, as annotations are
            t += int(rng.integers(0, 30))
            truths.append(iv(t, t + int(rng.integers(3, 25))))
            t = truths[-1]['end'] + 1
        spots = [iv(int(a), int(a + rng.integers(3, 25))) for a in rng.integers(0, max(t, 1), rng.integers(0, 5))]
        r = scoring.score({'v': (spots, truths)})
        ref = reference_counts(spots, truths)
        ambiguous = any(sum(scoring.iou((s['start'], s['end']), (u['start'], u['end'])) >= 0.5 for u in truths) > 1
                        or sum(scoring.iou((u['start'], u['end']), (s['start'], s['end'])) >= 0.5 for u in spots) > 1
                        for s in spots + truths)
        if not ambiguous:
            assert (r['micro']['tp'], r['micro']['fp'], r['micro']['fn']) == ref


def test_counts_sum_over_videos_and_never_match_across_them():
    # The end of video a and the start of video b both hold a truth; a spot in a at b's frames finds nothing.
    videos = {'a': ([iv(90, 99), iv(0, 9)], [iv(90, 99)]),
              'b': ([], [iv(0, 9)])}
    r = scoring.score(videos)
    assert (r['micro']['tp'], r['micro']['fp'], r['micro']['fn']) == (1, 1, 1)
    assert [v for v, _, _ in r['pairs']] == ['a']


def test_kinds_are_scored_apart_and_overall_sums_their_counts():
    videos = {'a': ([iv(0, 9), iv(100, 160, 'macro'), iv(300, 305)], [iv(0, 9), iv(100, 150, 'macro')]),
              'b': ([iv(10, 80, 'micro')], [iv(10, 80, 'macro')])}     # the right frames, the wrong kind
    r = scoring.score(videos)
    assert (r['micro']['tp'], r['micro']['fp'], r['micro']['fn']) == (1, 2, 0)
    assert (r['macro']['tp'], r['macro']['fp'], r['macro']['fn']) == (1, 0, 1)
    assert (r['overall']['tp'], r['overall']['fp'], r['overall']['fn']) == (2, 2, 1)
    assert r['overall']['f1'] == pytest.approx(4 / 7)
    assert scoring.f1(0, 0, 0) == (0.0, 0.0, 0.0)


def test_str_scores_the_correctly_spotted_micro_expressions_only():
    videos = {'a': ([iv(0, 9, pred=1), iv(20, 29, pred=0), iv(50, 59, pred=2), iv(70, 130, 'macro', pred=0)],
                    [iv(0, 9, label=1), iv(20, 29, label=2), iv(80, 90, label=0), iv(70, 130, 'macro')])}
    r = scoring.score(videos)
    s = scoring.str_score(r)
    # two correct micro spots: positive right, surprise called negative; the FP spot's prediction does not count
    assert s['n'] == 2
    assert s['uf1'] == pytest.approx(np.mean([1.0, 0.0]))       # classes present in the truth: positive, surprise
    assert s['uar'] == pytest.approx(0.5)
    assert r['micro']['f1'] == pytest.approx(2 / 3)              # TP 2, FP 1, FN 1
    assert s['str'] == pytest.approx(2 / 3 * 0.5)
    assert scoring.str_score(scoring.score({'a': ([], [iv(0, 9, label=1)])}))['str'] is None


def test_the_f1_interval_draws_videos_within_their_group_and_pools_their_counts():
    # Group a: 20 videos, each one truth found; group b: one video whose 20 spots are all false. Drawn within
    # their group, every draw holds b's video once: F1 2*20 / (2*20 + 20) = 0.667 at most ...
    counts = [[1, 0, 0]] * 20 + [[0, 20, 0]]
    groups = ['a'] * 20 + ['b']
    u = scoring.uncertainty(counts, groups)
    assert u['f1'] == pytest.approx(40 / 60, abs=1e-4)
    assert u['interval'] == pytest.approx([40 / 60, 40 / 60], abs=1e-4)
    # ... drawn from all 21 alike, some draws would miss it or take it twice.
    lo, hi = scoring.uncertainty(counts, ['all'] * 21)['interval']
    assert lo < 0.6 and hi > 0.75
    # Counts pooled, not F1 averaged: one video with 9 found and 1 missed, one with 1 false: 18 / 20.
    assert scoring.drawn_f1([[9, 0, 1], [0, 1, 0]], ['x', 'y'], n=3) == pytest.approx([0.9] * 3)


def test_two_spotters_on_the_same_videos_are_compared_on_the_same_draws():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (30, 3))
    groups = np.repeat(['p', 'q', 'r'], 10)
    u = scoring.uncertainty([a, a], groups)
    assert u['difference'] == 0 and u['difference_interval'] == [0, 0] and u['ahead'] == 0
    better = a + [[1, 0, 0]] * 30                         # one more truth found in every video: ahead in every draw
    u = scoring.uncertainty([better, a], groups)
    assert u['ahead'] == 1.0 and u['difference_interval'][0] > 0
    assert u['interval'][0] == pytest.approx(scoring.uncertainty(better, groups)['interval'])


def test_the_scores_printed_carry_the_interval_over_videos_drawn_within_each_dataset(capsys):
    from video import longvideo
    truths = [iv(10 * i, 10 * i + 5, 'macro') for i in range(4)]
    results = {'a1': (truths, truths), 'a2': (truths, truths),            # all found ...
               'b': ([iv(500, 505, 'macro')], [])}                       # ... and one false spot
    longvideo.print_scores(results, False, True, {'a1': 'casme_sq', 'a2': 'casme_sq', 'b': 'samm_lv'})
    overall = json.loads(capsys.readouterr().out)['scores']['overall']
    assert overall['f1'] == pytest.approx(16 / 17) and overall['interval'] == pytest.approx([16 / 17] * 2, abs=1e-4)
    longvideo.print_scores(results, False, False, dict.fromkeys(results, 'casme_sq'))
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith('overall F1 0.9412, 95 % interval [') and '[0.9412, 0.9412]' not in line
    # One video in each dataset: drawing again would change nothing, so no interval is claimed.
    longvideo.print_scores(results, False, False, {'a1': 'casme_sq', 'a2': 'samm_lv', 'b': 'smic'})
    assert capsys.readouterr().out.splitlines()[-1] == 'overall F1 0.9412, no interval: one video in each dataset'
