"""results/report.py: Table I's layout, the MEGC log and the training log, as a run folder holds them."""
import csv
import io

import numpy as np
import pytest

from results import report


def test_table_one_has_the_papers_columns_with_intervals_and_dashes_where_a_dataset_is_absent():
    m = {'all': {'uf1': 0.78851, 'uar': 0.8, 'uf1_ci': (0.7412, 0.8321), 'uar_ci': (0.7, 0.9), 'n': 9},
         'casme2': {'uf1': 0.5, 'uar': 0.25, 'n': 9}}
    head, rule, row = report.table([('Part + Adversarial + EMR', m)]).splitlines()
    assert head.split(' | ')[1:3] == ['UF1', 'UAR'] and head.endswith('SAMM UF1 | SAMM UAR |')
    assert row == ('| Part + Adversarial + EMR | 0.7885 [0.741, 0.832] | 0.8000 [0.700, 0.900] | – | – | '
                   '0.5000 | 0.2500 | – | – |')
    assert rule.count('---') == head.count('|') - 1


def test_a_cell_gives_the_spread_over_seeds_before_the_interval():
    assert report.cell({'uf1': 0.5, 'uf1_sd': 0.0123, 'uf1_ci': (0.4, 0.6)}, 'uf1') == '0.5000 ± 0.012 [0.400, 0.600]'


def test_the_megc_log_has_a_header_per_subject_then_clip_truth_prediction():
    rows = [dict(dataset='casme2', subject='sub01', clip='a', label=0, pred=1, pred_selected=0),
            dict(dataset='casme2', subject='sub01', clip='b', label=2, pred=2, pred_selected=2),
            dict(dataset='samm', subject='006', clip='c', label=1, pred=0, pred_selected=1)]
    assert report.megc_log(rows) == 'casme2 sub01\na 0 1\nb 2 2\nsamm 006\nc 1 0\n'
    assert report.megc_log(rows, 'pred_selected').splitlines()[1] == 'a 0 0'


def test_the_training_log_has_a_line_per_fold_and_epoch_and_its_means_over_folds():
    logs = [(k, [dict(epoch=e + 1, lt=1.0 * i, lb=0.5, lc=0.25 + e, ladv=0.0, acc=0.5) for e in range(2)])
            for i, k in enumerate(('casme2_sub01', 'samm_006'))]
    text = report.train_log_csv(logs)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == ','.join(report.LOG_COLUMNS)
    assert [(r['fold'], r['epoch']) for r in rows] == [('casme2_sub01', '1'), ('casme2_sub01', '2'),
                                                        ('samm_006', '1'), ('samm_006', '2')]
    m = report.epoch_means(logs)
    assert m['lt'] == pytest.approx([0.5, 0.5]) and np.allclose(m['lc'], [0.25, 1.25])
