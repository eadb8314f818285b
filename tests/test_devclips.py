"""tools.devclips, the development set's scorer: what its cached curves depend on."""
from tools import devclips
from video import intervals


def test_a_cached_curve_is_tracked_again_for_the_trackers_settings_and_not_for_the_spotters():
    # Spotting under another setting reads the same curve: the grid and a new rule of `spot` reuse the cache.
    assert devclips.track_key({'murmur': 1.0, 'smile_rise': 0.1}) == devclips.track_key({})
    for key in intervals.TRACKED:
        value = {'method': 'baseline', 'baseline_s': (0.3, 0.9)}.get(key) or 2 * intervals.SPOTTING[key]
        assert devclips.track_key({key: value}) != devclips.track_key({}), key


def test_a_cached_curve_is_tracked_again_for_other_classifier_weights(tmp_path, monkeypatch):
    # The curve holds the expression classifier's probabilities: other weights, another curve.
    import numpy as np
    from video import emotion
    with np.load(emotion.WEIGHTS) as z:
        w = {k: z[k] for k in z.files}
    w['head_bias'] = w['head_bias'] + 1.0
    np.savez(tmp_path / 'other.npz', **w)
    before = devclips.track_key({})
    monkeypatch.setattr(emotion, 'WEIGHTS', tmp_path / 'other.npz')
    assert devclips.track_key({}) != before


def test_a_clip_whose_file_states_the_wrong_rate_is_tracked_at_the_annotated_one(tmp_path, monkeypatch):
    # LIA's vox_driving1.mp4 holds 25-fps frames in a file that says 10 fps: its annotation's spot_fps is what
    # `mer.py spot --fps 25` would be given, and its curve is cached apart from one at the file's rate.
    import cv2
    import numpy as np
    clip = tmp_path / 'src' / 'clip.avi'
    clip.parent.mkdir()
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (32, 32))
    for i in range(4):
        w.write(np.full((32, 32, 3), 40 * i, np.uint8))
    w.release()
    seen = []
    monkeypatch.setattr(intervals, 'motion', lambda frames, fps, name, settings: seen.append(fps) or {'fps': fps})
    assert devclips.curve_of(clip, {}, tmp_path / 'cache', 25.0) == {'fps': 25.0}
    assert devclips.curve_of(clip, {}, tmp_path / 'cache') == {'fps': 10.0}
    assert seen == [25.0, 10.0]
    assert devclips.curve_of(clip, {}, tmp_path / 'cache', 25.0) == {'fps': 25.0} and len(seen) == 2


def test_against_the_sure_truths_a_spot_on_an_uncertain_one_is_neither_true_nor_false_and_missing_it_is_no_miss():
    clip = dict(intervals=[
        dict(onset=0, offset=50, kind='macro'),
        dict(onset=100, offset=150, kind='macro', uncertain=True),
        dict(onset=300, offset=350, kind='macro', uncertain=True),       # missed: no miss
        dict(onset=400, offset=410, kind='micro'),                       # missed: a miss
        dict(onset=0, offset=500, kind='speech')])
    spots = [dict(start=0, end=48, kind='macro'),                        # the sure truth: found
             dict(start=102, end=150, kind='macro'),                     # the uncertain one: excused
             dict(start=105, end=150, kind='macro'),                     # matching is one to one: a false one
             dict(start=100, end=110, kind='micro'),                     # another kind: a false one
             dict(start=200, end=260, kind='macro')]                     # nothing there: a false one
    assert devclips.sure_counts(spots, clip).tolist() == [1, 3, 1]
    assert devclips.truths(clip, sure=True) == [dict(start=0, end=50, kind='macro'),
                                                dict(start=400, end=410, kind='micro')]
    assert len(devclips.truths(clip)) == 4


def _annotation():
    return dict(source='x', repo='o/x', commit='0' * 40, licence='MIT', origin='a webcam', clips={'a.mp4': dict(
        path='a.mp4', sha256='f' * 64, fps=25.0, frames=100, person='p', untrusted=[[90, 99, 'a hand']],
        intervals=[dict(onset=10, apex=15, offset=30, kind='macro', label='positive'),
                   dict(onset=40, apex=41, offset=45, kind='micro', label='other'),
                   dict(onset=0, offset=99, kind='speech')])})


def test_every_shipped_annotation_keeps_the_rules_and_a_broken_one_is_named():
    assert {src: devclips.problems(a) for src, a in devclips.sources().items()} == \
        {src: [] for src in devclips.sources()}
    assert devclips.problems(_annotation()) == []
    for mend, says in [(lambda c: c['intervals'][0].update(offset=100), 'not within the clip'),
                       (lambda c: c['intervals'][0].update(offset=18), 'is a micro-expression'),
                       (lambda c: c['intervals'][1].update(offset=60), 'is a macro-expression'),
                       (lambda c: c.update(spot_fps=10.0), 'is a macro-expression'),
                       (lambda c: c['intervals'][0].update(apex=35), 'the apex 35 lies outside it'),
                       (lambda c: c['intervals'][0].update(label='happy'), 'the label is'),
                       (lambda c: c['intervals'][2].update(kind='talking'), 'the kind is'),
                       (lambda c: c['untrusted'][0].__setitem__(1, 100), 'untrusted 90-100'),
                       (lambda c: c.update(sha256='abc'), 'sha256'),
                       (lambda c: c.pop('person'), 'no "person"')]:
        a = _annotation()
        mend(a['clips']['a.mp4'])
        wrong = devclips.problems(a)
        assert len(wrong) == 1 and says in wrong[0] and wrong[0].startswith('a.mp4'), (says, wrong)


def test_a_broken_annotation_file_stops_the_tool_naming_it(tmp_path, monkeypatch):
    import json
    import pytest
    a = _annotation()
    a['clips']['a.mp4']['intervals'][0]['offset'] = 5
    (tmp_path / 'x.json').write_text(json.dumps(a))
    monkeypatch.setattr(devclips, 'ANNOTATIONS', tmp_path)
    with pytest.raises(SystemExit, match=r'x\.json: a\.mp4: macro 10-5: not within'):
        devclips.sources()


def test_the_baseline_is_scored_on_curves_tracked_for_it_and_not_in_the_stretches_that_cannot_be_judged(monkeypatch):
    # MEGC 2020's baseline reads its own curve (its windows K, `mer.py spot --method baseline`): each peak of it is
    # spotted as [peak - K, peak + K]; one lying in a stretch the annotation marks unjudged is not scored.
    import numpy as np
    n, k = 300, 10
    p = np.full(n, 0.1)
    p[100] = p[200] = 5.0
    curve = dict(pos=np.arange(n), seg=np.zeros(n, int), p=p[None], windows=[k], fps=25.0, step=1, frames=n)
    seen = []
    monkeypatch.setattr(devclips, 'curve_of', lambda path, settings, cache, fps=None: seen.append(settings) or curve)
    clip = dict(intervals=[dict(onset=92, offset=108, kind='micro'), dict(onset=250, offset=255, kind='micro'),
                           dict(onset=0, offset=299, kind='speech')])
    todo = [('src', 'a.mp4', None, clip)]
    found = devclips.baseline_counts(todo, None, {})
    assert list(found) == ['src'] and found['src'].tolist() == [1, 1, 1]
    assert seen == [{'method': 'baseline'}]
    found = devclips.baseline_counts(todo, None, {('src', 'a.mp4'): [[185, 215, 'a hand over the face']]})
    assert found['src'].tolist() == [1, 0, 1]


def test_a_second_annotation_is_scored_against_the_first_one_to_one_and_nothing_is_scored_where_none_can_judge():
    first = dict(fps=25.0, frames=100, untrusted=[[90, 99, 'a hand']], intervals=[
        dict(onset=10, apex=20, offset=30, kind='macro', label='positive'),
        dict(onset=40, apex=42, offset=45, kind='micro', label='other'),
        dict(onset=60, apex=70, offset=80, kind='macro', label='negative', uncertain=True),
        dict(onset=0, offset=99, kind='speech')])
    second = dict(fps=25.0, frames=100, untrusted=[], intervals=[
        dict(onset=12, apex=20, offset=30, kind='macro', label='positive'),     # the first's 10-30: found
        dict(onset=14, apex=20, offset=30, kind='macro', label='positive'),     # one to one: a false one
        dict(onset=50, apex=52, offset=55, kind='micro', label='other'),        # nothing there: a false one
        dict(onset=91, apex=95, offset=99, kind='macro', label='other'),        # where none can judge: not scored
        dict(onset=0, offset=99, kind='speech')])                               # speech: not an expression
    spots = [dict(start=60, end=80, kind='macro'), dict(start=92, end=99, kind='macro'),
             dict(start=0, end=99, kind='speech')]
    (against_first, spots_first, spots_second), (second_sure, spots_sure) = devclips.agreement(spots, first, second)
    assert against_first.tolist() == [1, 2, 2]
    assert spots_first.tolist() == [1, 0, 2]
    assert spots_second.tolist() == [0, 1, 3]
    # Against the truths the first was sure of, the uncertain 60-80 is neither found nor missed.
    assert second_sure.tolist() == [1, 2, 1] and spots_sure.tolist() == [0, 0, 2]


def test_a_second_annotation_of_a_clip_the_first_lacks_or_of_another_length_stops_the_tool_naming_it(
        tmp_path, monkeypatch):
    import json
    import pytest
    first = {'x': _annotation()}
    monkeypatch.setattr(devclips, 'SECOND', tmp_path)
    clip = dict(fps=25.0, frames=100, untrusted=[], intervals=[dict(onset=10, apex=15, offset=30, kind='macro',
                                                                    label='positive')])
    (tmp_path / 'x.json').write_text(json.dumps(dict(source='x', clips={'a.mp4': clip})))
    assert devclips.seconds(first)['x']['clips']['a.mp4'] == clip
    (tmp_path / 'x.json').write_text(json.dumps(dict(source='x', clips={'a.mp4': dict(clip, fps=25.0001)})))
    assert devclips.seconds(first)['x']['clips']['a.mp4']['fps'] == 25.0001      # the same rate, fewer digits
    for mend, says in [(lambda a: a['clips'].update({'b.mp4': a['clips'].pop('a.mp4')}), 'b.mp4: no clip of that'),
                       (lambda a: a['clips']['a.mp4'].update(frames=120), 'a.mp4: its rate and length differ'),
                       (lambda a: a['clips']['a.mp4'].update(fps=30.0), 'a.mp4: its rate and length differ'),
                       (lambda a: a.pop('clips'), 'no "clips"'),
                       (lambda a: a['clips']['a.mp4']['intervals'][0].update(offset=16), r'a.mp4: macro 10-16: 0.28 s is a micro')]:
        a = dict(source='x', clips={'a.mp4': json.loads(json.dumps(clip))})
        mend(a)
        (tmp_path / 'x.json').write_text(json.dumps(a))
        with pytest.raises(SystemExit, match=r'x\.json: ' + says):
            devclips.seconds(first)
    (tmp_path / 'x.json').rename(tmp_path / 'y.json')
    with pytest.raises(SystemExit, match=r'y\.json: no source of that name'):
        devclips.seconds(first)


def test_every_shipped_second_annotation_is_of_a_clip_the_first_holds_and_keeps_the_rules():
    shipped = devclips.seconds(devclips.sources())
    assert sorted(shipped) == sorted(p.stem for p in devclips.SECOND.glob('*.json'))


def test_a_sources_setting_is_chosen_without_its_clips_nor_another_sources_clips_of_the_same_person():
    annotated = {('a', '1.mp4'): dict(person='ann'), ('a', '2.mp4'): dict(person='bob'),
                 ('b', '1.mp4'): dict(person='ann'), ('b', '2.mp4'): dict(person='cat'), ('c', '1.mp4'): dict(person='dan')}
    assert devclips.choosers(annotated, 'a') == [('b', '2.mp4'), ('c', '1.mp4')]
    assert devclips.choosers(annotated, 'c') == [('a', '1.mp4'), ('a', '2.mp4'), ('b', '1.mp4'), ('b', '2.mp4')]


def test_the_setting_chosen_for_a_source_is_the_one_its_choosers_score_best_on_the_first_of_equals():
    import numpy as np
    annotated = {('a', '1.mp4'): dict(person='ann'), ('b', '1.mp4'): dict(person='ann'), ('c', '1.mp4'): dict(person='dan')}
    per = np.array([[[0, 5, 5], [9, 0, 0], [1, 1, 1]],         # per setting, a's, b's and c's clip
                    [[5, 0, 0], [0, 9, 9], [2, 0, 0]],
                    [[5, 0, 0], [0, 9, 9], [2, 0, 0]]])
    everything = [(['x'], np.arange(len(per)))]            # every setting at once
    assert devclips.choose(per, annotated, 'a', everything) == 1   # b's clip of ann, who favours the first, left out
    assert devclips.choose(per, annotated, 'c', everything) == 0   # a and b together favour the first


def test_a_fold_tunes_a_setting_only_where_tuning_it_wins_its_own_leave_one_source_out(monkeypatch):
    import numpy as np
    monkeypatch.setattr(devclips, 'GRID', dict(smile_rise=(0.1, intervals.SPOTTING['smile_rise'])))
    grid = [dict(smile_rise=0.1), dict(smile_rise=intervals.SPOTTING['smile_rise'])]
    subs = devclips.subgrids(grid)
    assert [(names, rows.tolist()) for names, rows in subs] == [([], [1]), (['smile_rise'], [0, 1])]
    annotated = {(s, '1.mp4'): dict(person=s) for s in 'abcd'}
    # Each array below: per setting, the counts of a's, b's, c's and d's clip.
    # Tuned, d's gain carries the pooled choice, but c and d left out lose with it, more than b gains (their
    # leave-one-source-out [9, 0, 15] against the defaults' [11, 0, 13]): the fold keeps the defaults.
    lucky = np.array([[[0, 0, 1], [4, 0, 1], [0, 0, 5], [14, 0, 0]], [[0, 0, 1], [3, 0, 2], [3, 0, 2], [5, 0, 9]]])
    assert devclips.choose(lucky, annotated, 'a', [(['smile_rise'], np.arange(2))]) == 0     # the whole grid at once
    assert devclips.choose(lucky, annotated, 'a', subs) == 1
    # Tuned, every source gains: the fold tunes it.
    steady = np.array([[[0, 0, 1], [3, 0, 2], [3, 0, 2], [5, 0, 5]], [[0, 0, 1], [1, 0, 4], [1, 0, 4], [2, 0, 8]]])
    assert devclips.choose(steady, annotated, 'a', subs) == 0
    # Tuned or not, the same everywhere: the fewest tuned, the defaults.
    same = np.array([[[0, 0, 1], [3, 0, 2], [1, 0, 4], [2, 0, 8]]] * 2)
    assert devclips.choose(same, annotated, 'a', subs) == 1


def test_speech_stretches_are_matched_one_to_one_at_half_their_union():
    found = [dict(start=0, end=100, kind='speech'), dict(start=10, end=100, kind='speech'),
             dict(start=300, end=320, kind='speech')]
    truth = [dict(start=5, end=100, kind='speech'), dict(start=250, end=400, kind='speech')]
    assert devclips.speech_counts(found, truth).tolist() == [1, 2, 1]


def test_the_adjudicated_truth_replaces_the_first_annotation_of_the_clips_reconciled_and_only_those(
        tmp_path, monkeypatch):
    import json
    first = _annotation()
    first['clips']['b.mp4'] = dict(first['clips']['a.mp4'], path='b.mp4', person='q')
    (tmp_path / 'x.json').write_text(json.dumps(first))
    (tmp_path / 'adjudicated').mkdir()
    monkeypatch.setattr(devclips, 'ANNOTATIONS', tmp_path)
    monkeypatch.setattr(devclips, 'ADJUDICATED', tmp_path / 'adjudicated')
    reconciled = [dict(onset=12, apex=15, offset=35, kind='macro', label='positive', uncertain=False,
                       **{'from': 'both'})]
    (tmp_path / 'adjudicated' / 'x.json').write_text(json.dumps(dict(source='x', annotator='adjudicated', clips={
        'a.mp4': dict(fps=25.0, frames=100, intervals=reconciled, untrusted=[[0, 5, 'out of frame']])})))
    got = {name: c for _, name, _, c in devclips.clips(tmp_path, 'adjudicated')}
    assert got['a.mp4']['intervals'] == reconciled and got['a.mp4']['untrusted'] == [[0, 5, 'out of frame']]
    assert got['a.mp4']['person'] == 'p' and got['a.mp4']['sha256'] == 'f' * 64        # the clip is the first's
    assert got['b.mp4'] == first['clips']['b.mp4']                                     # not reconciled: the first's
    assert {name: c for _, name, _, c in devclips.clips(tmp_path)} == first['clips']    # the default: the first's


def test_every_shipped_adjudicated_annotation_reconciles_a_clip_annotated_twice_and_keeps_the_rules():
    first = devclips.sources()
    shipped, second = devclips.seconds(first, devclips.ADJUDICATED), devclips.seconds(first)
    assert shipped and sorted(shipped) == sorted(p.stem for p in devclips.ADJUDICATED.glob('*.json'))
    for src, a in shipped.items():
        assert set(a['clips']) <= set(second[src]['clips']), src
        for name, c in a['clips'].items():
            assert all(t.get('from') in ('both', 'first', 'second', 'neither') for t in c['intervals']), (src, name)


def test_agree_scores_the_first_the_second_and_the_spotter_each_against_the_adjudicated_truth(tmp_path, monkeypatch):
    import json
    first = _annotation()           # macro 10-30, micro 40-45; 90-99 cannot be judged
    (tmp_path / 'x.json').write_text(json.dumps(first))
    for folder in ('second', 'adjudicated'):
        (tmp_path / folder).mkdir()
    monkeypatch.setattr(devclips, 'ANNOTATIONS', tmp_path)
    monkeypatch.setattr(devclips, 'SECOND', tmp_path / 'second')
    monkeypatch.setattr(devclips, 'ADJUDICATED', tmp_path / 'adjudicated')

    def clip(*spans):
        return dict(fps=25.0, frames=100, untrusted=[], intervals=[
            dict(onset=a, apex=a, offset=b, kind='macro' if (b - a + 1) / 25 > 0.5 else 'micro', label='other',
                 **{'from': 'both'}) for a, b in spans])
    (tmp_path / 'second' / 'x.json').write_text(json.dumps(dict(source='x', clips={
        'a.mp4': clip((10, 30), (60, 80), (50, 52))})))
    (tmp_path / 'adjudicated' / 'x.json').write_text(json.dumps(dict(source='x', clips={'a.mp4': clip(
        (10, 30), (60, 80), (40, 45), (50, 75))})))
    (tmp_path / 'clips' / 'x').mkdir(parents=True)
    (tmp_path / 'clips' / 'x' / 'a.mp4').write_bytes(b'')
    monkeypatch.setattr(devclips, 'curve_of', lambda *a, **k: None)
    monkeypatch.setattr(intervals, 'replay', lambda curve, settings: [dict(start=10, end=30, kind='macro')])
    devclips.agree(tmp_path / 'clips', tmp_path / 'out.json')
    got = json.loads((tmp_path / 'out.json').read_text())['adjudicated']['x']
    # first: 10-30 and 40-45 of the four; second: 10-30 and 60-80, and a micro 50-52 that is none; the spotter:
    # 10-30 alone
    assert got == dict(clips=1, first=[2, 0, 2], second=[2, 1, 2], spotter=[1, 0, 3])


def test_score_takes_the_reconciled_truth_unless_told_the_first(monkeypatch):
    import sys
    seen = []
    monkeypatch.setattr(devclips, 'score', lambda folder, figures, out_json, baseline, truth: seen.append(truth) or 0)
    for argv in (['score'], ['score', '--truth', 'first']):
        monkeypatch.setattr(sys, 'argv', ['devclips'] + argv)
        assert devclips.main() == 0
    assert seen == ['adjudicated', 'first']


def test_where_the_figure_is_lost_counts_each_truth_by_its_condition_and_each_miss_and_false_spot_by_its_cause():
    clip = dict(intervals=[
        dict(onset=0, offset=99, kind='macro', label='positive'),             # found, while talking
        dict(onset=200, offset=219, kind='micro', label='other', uncertain=True),    # a spot over it, IoU < 0.5
        dict(onset=300, offset=399, kind='macro', label='negative'),          # a micro spot covers it: kind
        dict(onset=500, offset=599, kind='macro', label='positive'),          # nothing over it
        dict(onset=0, offset=260, kind='speech'),
        dict(onset=390, offset=420, kind='speech')])        # a tenth of the negative one: it was made in silence
    spots = [dict(start=0, end=95, kind='macro'),
             dict(start=205, end=280, kind='micro'),         # IoU 15/81 with the micro truth: boundaries
             dict(start=300, end=390, kind='micro'),         # the macro truth's frames, the other kind
             dict(start=700, end=720, kind='macro')]         # over nothing
    lost = devclips.losses({('src', 'clip'): (spots, [])}, {('src', 'clip'): clip})
    assert lost['truths'] == dict(talking={'while talking': [1, 2], 'silent': [0, 2]},
                                  kind={'macro': [1, 3], 'micro': [0, 1]},
                                  label={'positive': [1, 2], 'other': [0, 1], 'negative': [0, 1]},
                                  sure={'sure': [1, 3], 'uncertain': [0, 1]})
    assert lost['missed'] == {'nothing over it': 1, 'boundaries': 1, 'kind or taken': 1}
    assert lost['false'] == {'over nothing': 1, 'boundaries': 1, 'kind or taken': 1}


def test_tools_emotionnet_makes_the_shipped_classifier_weights_again_from_the_authors_file():
    # The weights in video/ are the authors' Keras file in PyTorch's layout, number for number.
    import numpy as np
    import pytest
    pytest.importorskip('h5py', reason='tools.emotionnet reads the Keras file with h5py (pip install h5py)')
    from tools import emotionnet
    from video import emotion
    git = devclips.git_dir(emotionnet.REPOS, emotionnet.REPO)
    if git is None:
        pytest.skip(f'no clone of {emotionnet.REPO} under ../repos (git clone --bare '
                    f'https://github.com/{emotionnet.REPO} ../repos/oarriaga+face_classification)')
    made = emotionnet.convert(emotionnet.keras_file(emotionnet.REPOS))
    with np.load(emotion.WEIGHTS) as shipped:
        assert sorted(made) == sorted(shipped.files)
        for k in made:
            assert np.array_equal(made[k], shipped[k]), k
