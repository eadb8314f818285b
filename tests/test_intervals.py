"""The long-video spotter's rules (video/intervals.py), each on a curve or a face made to need it: expressions in a
row, talking, a turning head, the end of a clip, and every setting read where it is said to be."""
import numpy as np
import pytest
from test_spotting import curve_of

from data import synth
from video import intervals, longvideo, scoring


def spans(found, kinds=('micro', 'macro')):
    return [(r['start'], r['end'], r['kind']) for r in found if r['kind'] in kinds]


def with_held(face, k=60, n_eyes=None):
    """curve_of's curve with the departure from the face at rest (3 px per unit of face) and a rigid head."""
    n = len(face)
    c = curve_of(face, np.zeros(n) if n_eyes is None else n_eyes, k)
    c['held'] = np.abs(face) * 3 + 0.01 * np.random.default_rng(1).random(n)
    c['rigid'] = np.full(n, 0.3)
    return c


def test_two_expressions_with_a_partial_return_between_them_are_two():
    face = np.zeros(600)
    face[100:250] = 1.0                     # a first expression held for 5 s
    face[250:270] = 0.25                    # the face falls back three quarters of the way, not to rest
    face[270:450] = 1.0                     # and a second one, held for 6 s
    found, shown = intervals.spot(with_held(face))
    (a0, b0, k0), (a1, b1, k1) = spans(found)
    assert (a0, k0, b1, k1) == (100, 'macro', 449, 'macro') and 250 <= b0 < 270 and a1 == b0 + 1, found
    assert shown['held'][260] > shown['held_threshold'][260]            # the valley is above the threshold
    # Asked to split only where the face falls back below a tenth of the lower peak, it is one expression.
    found, _ = intervals.spot(with_held(face), dict(valley=0.1))
    assert spans(found) == [(100, 449, 'macro')]


def test_an_expression_in_the_last_window_is_reported_and_an_echo_there_is_not():
    face = np.zeros(300)
    face[150:200] = 1.0                     # ends 100 frames before the end: its echo reaches 200-259
    face[250:290] = 1.0                     # a second one, beginning in the last K (60) frames, inside the echo
    found, _ = intervals.spot(with_held(face))
    hits = [r for r in found if scoring.iou((r['start'], r['end']), (250, 289)) >= 0.5]
    assert len(hits) == 1 and len(found) == 2, found
    face[250:290] = 0.0                     # without it, the echo alone is not an expression
    found, _ = intervals.spot(with_held(face))
    assert spans(found) == [(150, 199, 'macro')], found


def test_the_threshold_is_k_robust_spreads_above_the_noise():
    rng = np.random.default_rng(3)
    face = np.zeros(600)
    face[300:312] = 1.0
    c = curve_of(face, np.zeros(600), 60, noise=0.0)
    c['p'] = c['p'] * 0.12 + rng.normal(0.3, 0.01, 600)       # a bump of 0.12 px (12 noise deviations)
    c['q'] = np.where(np.isnan(c['q']), np.nan, 0.0)
    # The lowest quarter's median is 1.3 deviations below the mean, its spread a third of one: 20 spreads lie
    # 5 deviations above the mean, clear of the noise and under the bump; 60 lie 17 deviations above, over it.
    assert spans(intervals.spot(c, dict(k=20.0, floor=0.0))[0]) == [(300, 311, 'micro')]
    assert spans(intervals.spot(c, dict(k=60.0, floor=0.0))[0]) == []


def test_micro_and_macro_count_video_frames_where_only_every_nth_is_analysed():
    # A 200-fps recording analysed at every 4th frame: 12 analysed frames are 48 video frames, 0.24 s: micro.
    face = np.zeros(400)
    face[200:212] = 1.0
    c = dict(curve_of(face, np.zeros(400), 100), step=4, fps=50.0, frames=1600, pos=np.arange(400) * 4)
    found, _ = intervals.spot(c)
    assert [(r['start'], r['end'], r['kind']) for r in found] == [(800, 847, 'micro')]


def talking_face(seconds_talk=(2.0, 6.0), fps=25.0, n=250, rate_hz=4.0, smile=None, smile_px=6.0, turn=None,
                 seed=7):
    """Frames of a real face (astronaut photo) whose jaw opens and closes at rate_hz within seconds_talk (the
    mouth alone moves); with smile=(onset, offset) frames it smiles then (AU12, smile_px at 224 px), with
    turn=(onset, offset, radians) the head turns about its vertical axis and back, the face's points moving in
    proportion to their depth (a generic face's, intervals.depth)."""
    import cv2

    import align
    rng = np.random.default_rng(seed)
    face, lm = synth.identity(synth.photos()[0], rng)
    h, w = face.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    eye = np.linalg.norm(align.anchor_points(lm)[1] - align.anchor_points(lm)[0])
    jaw = np.zeros((h, w), np.float32)
    for i in (5, 6, 7, 8, 9, 10, 11, 56, 57, 58, 65, 66, 67):
        x, y = lm[i]
        jaw = np.maximum(jaw, (1 - np.minimum(((gx - x) ** 2 + (gy - y) ** 2) / (0.35 * eye) ** 2, 1)) ** 2)
    t = np.arange(n) / fps
    talking = (t >= seconds_talk[0]) & (t < seconds_talk[1])
    opening = np.where(talking, 0.5 - 0.5 * np.cos(2 * np.pi * rate_hz * (t - seconds_talk[0])), 0.0)
    to_src = eye / synth.EYE_DIST_224
    smile_field = synth.deformation(lm, synth.POS, (h, w), smile_px * to_src)
    smile_prof = np.zeros(n) if smile is None else synth.hold_profile(n, smile[0], smile[0] + 8, smile[1] - 8,
                                                                      smile[1])
    # Depth of each frame pixel: the aligned face's generic depth carried back to the frame.
    size = 64
    m = align.similarity(align.anchor_points(lm), align.TEMPLATE * size)
    z = cv2.warpAffine(intervals.depth(size).astype(np.float32), cv2.invertAffineTransform(m), (w, h))
    z = z / np.hypot(m[0, 0], m[0, 1])                                   # pixels of the frame
    turn_prof = np.zeros(n) if turn is None else synth.hold_profile(n, turn[0], (turn[0] + turn[1]) // 2,
                                                                    (turn[0] + turn[1]) // 2, turn[1]) * turn[2]
    cv2.setRNGSeed(seed)
    buf = np.empty((h, w, 3), np.float32)
    frames = []
    for i in range(n):
        dx = smile_prof[i] * smile_field[..., 0] + turn_prof[i] * (z - z.max() / 2)
        dy = smile_prof[i] * smile_field[..., 1] + opening[i] * 6.0 * jaw
        f = cv2.remap(face, (gx - dx).astype(np.float32), (gy - dy).astype(np.float32), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.add(f, cv2.randn(buf, 0.0, 1.0), dtype=cv2.CV_8U))
    return frames, fps


@pytest.fixture(scope='module')
def talking():
    frames, fps = talking_face()
    return longvideo.spot_video(longvideo.memory_video(frames, fps), quiet=True)


@pytest.mark.slow
def test_a_mouth_opening_and_closing_at_syllable_rate_is_speech_not_an_expression(talking):
    found, shown, curve = talking
    assert spans(found) == [], found
    speech = [r for r in found if r['kind'] == 'speech']
    assert len(speech) == 1 and scoring.iou((speech[0]['start'], speech[0]['end']), (50, 149)) >= 0.7, speech
    # The same opening, once (a mouth that opens and stays open), is no speech.
    opened = dict(curve, mouth=np.where(curve['pos'] >= 50, 2.0, 0.0))
    assert not intervals.speech(opened, intervals.SPOTTING).any()


@pytest.mark.slow
def test_a_smile_while_talking_is_found_and_the_talking_is_not_an_expression():
    # A broad smile, as the real clip's (single_face.mp4: 3-4 px of the 64-px face): 12 px at 224 px.
    frames, fps = talking_face(seconds_talk=(1.0, 9.0), n=300, smile=(120, 200), smile_px=12.0)
    found, _, _ = longvideo.spot_video(longvideo.memory_video(frames, fps), quiet=True)
    assert [r['kind'] for r in found if r['kind'] == 'speech'] == ['speech']
    hits = [r for r in found if r['kind'] != 'speech' and scoring.iou((r['start'], r['end']), (120, 199)) >= 0.5]
    assert len(hits) == 1 and len(spans(found)) == 1, found


@pytest.mark.slow
def test_an_expression_while_the_head_turns_is_found_and_trusted():
    frames, fps = talking_face(seconds_talk=(0, 0), n=250, smile=(100, 170), turn=(80, 200, 0.25))
    found, shown, _ = longvideo.spot_video(longvideo.memory_video(frames, fps), quiet=True)
    hits = [r for r in found if scoring.iou((r['start'], r['end']), (100, 169)) >= 0.5]
    assert len(hits) == 1 and hits[0]['trusted'], found
    assert len(spans(found)) == 1, found


def rich_curve():
    """A 180-s curve (30 fps, K = 2 s) holding one of each thing a setting decides: a micro-expression, a blink, an
    expression held for 4 s with a short dip, two in a row with a partial return, talking with an expression in
    it, quiet talking that moves the face, and a stretch the curve cannot trust; at rest for most of it, as a
    recording is."""
    n, fps = 5400, 30.0
    face = np.zeros(n)
    face[95:116] = 0.6 * synth.profile(21, 0, 10, 20)     # micro
    face[300:420] = 1.0                                   # held 4 s ...
    face[350:360] = 0.1                                   # ... with a 0.3-s dip
    face[560:650], face[650:665], face[665:760] = 1.0, 0.2, 0.9      # two in a row
    eyes = np.zeros(n)
    eyes[200:206], face[200:206] = 2.0, 0.4               # a blink, spreading a little beyond the eyes
    face[4350:4380] = 1.0                                 # the face moved by quiet words (below)
    c = with_held(face, k=60, n_eyes=eyes)
    c['p'] = c['p'] + 0.05                                # the face at rest moves a little: v's noise
    c['held'] = c['held'] + 0.1
    t = np.arange(n) / fps
    talking = (t >= 30) & (t < 38)
    c['mouth'] = np.where(talking, 1.5 * np.sin(2 * np.pi * 4 * t), 0.0)
    c['held'] = c['held'] + np.where(talking, 0.8 + 0.3 * np.sin(2 * np.pi * 4 * t), 0.0)
    c['held'][1000:1060] += 4.0                           # an expression while talking
    c['rigid'][850:880] = 3.0                             # a hand over the face
    # The landmarks (intervals.SHAPE): the mouth's width, its corners' depth below the lips' middle, their opening,
    # the brows' height (eye distances); the head's pose, still; the lips' own height.
    c['shape'] = np.tile([0.9, 0.3, 0.05, 0.3, 0.0, 1.0, 40.0, 0.3], (n, 1))
    c['shape'][2000:2090, 0] += 0.4                       # a smile of 3 s
    c['shape'][2400:2480, 0] += 0.4                       # two in a row, falling back to 0.15 of 0.4 between
    c['shape'][2480:2500, 0] += 0.15
    c['shape'][2500:2580, 0] += 0.4
    c['shape'][3000:3090, 1] -= 0.4                       # a smile that lifts the corners and barely widens
    c['shape'][3300:3390, 2] += 0.4                       # a jaw dropped for 3 s
    c['shape'][3600:3660, 3] += 0.2                       # the brows raised for 2 s
    c['shape'][3700:3790, 0] += 0.4                       # the mouth wider as the head turns, the flow untrusted
    c['shape'][3700:3790, 4] = np.linspace(0.0, 0.5, 90)
    c['rigid'][3700:3790] = 3.0
    c['shape'][3900:3960, 7] -= 0.15                      # the lips pressed for 2 s
    c['shape'][4700:, 6] = 52.0                           # a jump cut to a closer shot, where the landmarks read
    c['shape'][4700:, 0] += 0.3                           # the mouth wider: no expression, another shot
    # The expression classifier's probabilities (video/emotion.py's seven): neutral, happy where the mouth is wider.
    c['emotion'] = np.tile(np.eye(7)[6], (n, 1))
    for a, b in ((2000, 2090), (2400, 2580), (3000, 3090), (3700, 3790), (4700, n)):
        c['emotion'][a:b] = np.eye(7)[3] * 0.9 + np.eye(7)[6] * 0.1
    c['emotion'][1::2] = np.nan                           # (read every other frame)
    quiet = (t >= 140) & (t < 150)                        # talking too quietly to be speech, moving the face
    c['mouth'] = c['mouth'] + np.where(quiet, 0.2 * np.sin(2 * np.pi * 4 * t), 0.0)
    return c


def output(found, shown):
    return repr(([(r['start'], r['end'], r['kind'], r['apex'], r['trusted']) for r in found],
                 np.round(shown['threshold'], 6), np.round(np.asarray(shown.get('held_threshold', 0)), 6).tolist(),
                 np.round(np.asarray(shown.get('held', 0)), 6).tolist(), shown.get('speech', np.zeros(0)).tolist(),
                 np.round(np.asarray(shown.get('face', 0)), 6).tolist(),
                 shown['untrusted'].tolist()))


SPOT_SETTINGS = dict(k=1000.0, floor=5.0, extend=0.95, min_s=5.0, micro_s=0.01, blink_ratio=100.0, rigid_px=0.01,
                     held_px=50.0, held_s=20.0, valley=0.01, merge_s=5.0, speech_px=50.0, speech_s=20.0,
                     speech_held=50.0, speech_q=95.0, speech_cap_px=0.01, speech_smooth_s=3.0, smile_rise=5.0,
                     open_rise=5.0, brow_rise=5.0, press_rise=5.0, face_valley=0.01, face_smooth_s=3.0, face_min_s=5.0,
                     smile_lift=0.0, head_still=0.0, turn_still=np.inf, smile_seen=0.95, murmur=1.0,
                     size_jump=np.inf)


@pytest.mark.parametrize('key', sorted(SPOT_SETTINGS))
def test_every_setting_of_the_spotter_changes_what_it_gives(key):
    assert set(SPOT_SETTINGS) | set(TRACK_SETTINGS) | {'method', 'baseline_s', 'baseline_p', 'warmup_s',
                                                       'detect_s', 'settle_s'} == set(intervals.SPOTTING)
    c = rich_curve()
    base = output(*intervals.spot(c))
    assert output(*intervals.spot(c, {key: SPOT_SETTINGS[key]})) != base
    assert output(*intervals.spot(c, {key: intervals.SPOTTING[key]})) == base


def test_the_baseline_s_settings_and_the_settling_ones_are_read():
    c = rich_curve()
    thr = [intervals.spot(c, dict(method='baseline', baseline_p=x))[1]['threshold'] for x in (0.3, 0.6)]
    assert thr[0] != thr[1]

    def when(settings):                                   # (the frame count at which each interval was given)
        out, at = [], {}

        def states():
            for state in stream(c):
                at['m'] = state['frames']
                yield state
        for r in intervals.online(states(), settings):
            out.append((r['start'], at['m']))
        return out
    assert when(dict(warmup_s=6.0)) != when(dict(warmup_s=30.0))
    assert when(dict(detect_s=0.5)) != when(dict(detect_s=3.0))


def stream(c):
    """The states track would give for the finished curve c, one a frame."""
    n = len(c['pos'])
    full = dict(c, ended=True, frames=n)
    for m in range(1, n + 1):
        s = {key: v[..., :m] if isinstance(v, np.ndarray) and v.shape[-1:] == (n,)
             else v[:m] if isinstance(v, np.ndarray) and len(v) == n else v for key, v in full.items()}
        s.update(frames=m, ended=m == n)
        yield s


def test_each_check_of_a_stream_spots_its_last_settle_s_seconds(monkeypatch):
    # A 3-min stream whose mouth is wider from 60 s on and stays so: against the face's usual of the stream so
    # far (10 min of it, the default) that is one expression to the end; against its last 20 s, the face's new
    # usual by the time it could be given.
    n = 5400
    c = with_held(np.zeros(n))
    c['shape'] = np.tile([0.9, 0.3, 0.05, 0.3, 0.0, 1.0, 40.0, 0.3], (n, 1))
    c['shape'][1800:, 0] += 0.3
    c['mouth'] = np.zeros(n)
    assert [(r['start'], r['end']) for r in intervals.online(stream(c))] == [(1796, 5399)]
    assert [(r['start'], r['end']) for r in intervals.online(stream(c), dict(settle_s=np.inf))] == [(1796, 5399)]
    spotted, spot = [], intervals.spot
    monkeypatch.setattr(intervals, 'spot',
                        lambda curve, s=None: spotted.append(curve['pos'][[0, -1]]) or spot(curve, s))
    assert list(intervals.online(stream(c), dict(settle_s=20.0))) == []
    assert max(b - a + 1 for a, b in spotted) == 600 and spotted[-1][1] == n - 1    # 20 s at 30 frames a second
    assert intervals.replay(dict(c, ended=True), dict(settle_s=20.0)) == []


TRACK_SETTINGS = dict(size=48, rate=5.0, cut=0.0, window_s=1.0, rois=16, ref_s=1.0, ref_every_s=0.04, ref_gate_px=0.0,
                      ref_stale_s=0.04)


@pytest.fixture(scope='module')
def short_talk():
    return talking_face(seconds_talk=(2.0, 5.0), n=175, smile=(40, 110))


@pytest.mark.slow
@pytest.mark.parametrize('key', sorted(TRACK_SETTINGS))
def test_every_setting_of_the_tracker_changes_its_curves(key, short_talk):
    frames, fps = short_talk

    def curves(settings):
        c = intervals.motion(iter(frames), fps, 'talk', settings)
        return repr([np.round(c[x], 5).tolist() for x in ('pos', 'seg', 'p', 'held', 'mouth', 'rigid')])
    assert curves({key: TRACK_SETTINGS[key]}) != curves({})
    assert set(TRACK_SETTINGS) | {'method', 'baseline_s', 'detect_s', 'rate'} == set(intervals.TRACKED)


@pytest.mark.slow
def test_the_tracker_asks_the_expression_classifier_where_it_reads_the_landmarks(short_talk):
    frames, fps = short_talk
    c = intervals.motion(iter(frames), fps, 'talk', {})
    read = ~np.isnan(c['shape'][:, 0])
    assert np.array_equal(~np.isnan(c['emotion'][:, 0]), read) and 0 < read.sum() < len(read)
    assert np.allclose(c['emotion'][read].sum(1), 1.0)
    assert np.median(c['emotion'][read, 3]) > 0.5               # the astronaut smiles in her photo


@pytest.mark.slow
def test_faces_are_looked_for_every_detect_s_and_the_baseline_s_windows_are_its_own(short_talk, monkeypatch):
    import align
    frames, fps = short_talk
    calls = []
    real = align.detect_faces
    monkeypatch.setattr(align, 'detect_faces', lambda *a, **k: calls.append(1) or real(*a, **k))
    for d in (0.5, 2.0):
        calls.clear()
        intervals.motion(iter(frames[:75]), fps, 'talk', dict(detect_s=d))
        assert len(calls) == int(np.ceil(75 / round(d * fps)))
    c = intervals.motion(iter(frames[:50]), fps, 'talk', dict(method='baseline', baseline_s=(0.2, 0.4)))
    assert c['windows'] == [5, 10]


@pytest.mark.parametrize('key,flag', [(k, f) for k, f, _ in intervals.FLAGS])
def test_each_flag_of_mer_py_spot_reaches_the_spotter(key, flag):
    from video import command
    value = intervals.SPOTTING[key] * 2 + 1
    a = command.parse_spot(['video.mp4', flag, str(value)])
    assert longvideo.settings_of(a)[key] == value
    assert flag in command.spot_parser().format_help()


def test_a_segment_shorter_than_the_smoothing_windows_is_read():
    # A face seen for 0.3 s at 50 analysed frames a second: shorter than talking's 0.4-s and 1-s windows.
    c = dict(curve_of(np.zeros(16), np.zeros(16), 4), fps=50.0, mouth=np.sin(np.arange(16)))
    assert intervals.speech(c, intervals.SPOTTING).shape == (16,)
    assert intervals.smooth(np.arange(5.0), 20).shape == (5,)


@pytest.mark.slow
def test_a_video_shorter_than_the_window_is_spotted():
    frames, fps = talking_face(seconds_talk=(0, 0), n=40, smile=(10, 36), smile_px=12.0)   # 1.6 s, K = 2 s
    found, shown, curve = longvideo.spot_video(longvideo.memory_video(frames, fps), quiet=True)
    assert len(curve['pos']) == 40 and shown['one_sided'].all()
    assert [r['kind'] for r in found] == ['macro']
    assert scoring.iou((found[0]['start'], found[0]['end']), (10, 35)) >= 0.5


def grace_landmarks():
    import align
    return align.detect_landmarks(synth.photos()[1], upsample=0)


def test_the_faces_shape_reads_a_smile_an_open_mouth_and_raised_brows_apart_and_ignores_the_faces_size_and_roll():
    lm = grace_landmarks()
    width, drop, opening, brows, across, down, eyes, lips = intervals.face_shape(lm)
    assert eyes == pytest.approx(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0))))
    smiling = lm.copy()
    smiling[48] += (-0.05 * eyes, -0.05 * eyes)             # the corners drawn out and up
    smiling[54] += (0.05 * eyes, -0.05 * eyes)
    w, d, o, b = intervals.face_shape(smiling)[:4]
    assert w - width == pytest.approx(0.1, abs=0.01) and drop - d == pytest.approx(0.05, abs=0.01)
    assert (o, b) == (opening, brows)
    pressed = lm.copy()
    pressed[49:54] += (0, 0.04 * eyes)                      # the upper lip rolled in, the lower lip up to it:
    pressed[55:60] -= (0, 0.04 * eyes)                      # the lips thin, the inner lips and corners stay
    assert intervals.face_shape(pressed)[7] - lips == pytest.approx(-0.08, abs=0.005)
    assert intervals.face_shape(pressed)[:7] == pytest.approx((width, drop, opening, brows, across, down, eyes))
    opened = lm.copy()
    opened[56:59] += (0, 0.3 * eyes)                        # the jaw dropped: no smile, the lips apart, the
    opened[65:68] += (0, 0.3 * eyes)                        # corners half way down with the lower lip
    opened[[48, 54, 60, 64]] += (0, 0.15 * eyes)
    assert intervals.face_shape(opened)[:2] == pytest.approx((width, drop), abs=1e-9)
    assert intervals.face_shape(opened)[2] - opening == pytest.approx(0.3, abs=0.01)
    assert intervals.face_shape(opened)[7] == pytest.approx(lips, abs=1e-9)     # the lips apart, no thinner
    raised = lm.copy()
    raised[17:27] -= (0, 0.1 * eyes)                        # the brows raised (image y grows downwards)
    assert intervals.face_shape(raised)[3] - brows == pytest.approx(0.1, abs=0.01)
    assert intervals.face_shape(raised)[:3] == pytest.approx((width, drop, opening), abs=1e-9)
    blink = lm.copy()
    blink[[37, 38, 43, 44]] += (0, 0.08 * eyes)             # the upper lids come down: the brows stay where they are
    assert intervals.face_shape(blink)[3] == pytest.approx(brows, abs=0.001)
    a = np.deg2rad(15)
    turned = 2.5 * (lm - lm.mean(0)) @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T + (40, -7)
    assert intervals.face_shape(turned)[:6] == pytest.approx((width, drop, opening, brows, across, down), abs=1e-9)
    assert intervals.face_shape(turned)[6] == pytest.approx(2.5 * eyes)
    nodded = lm.copy()
    nodded[27:36] += (0.1 * eyes, 0.1 * eyes)               # the nose moves against the eyes as the head turns
    assert intervals.face_shape(nodded)[4:6] == pytest.approx((across + 0.1, down + 0.1), abs=0.01)
    assert intervals.face_shape(nodded)[:4] == pytest.approx((width, drop, opening, brows), abs=1e-9)


def talking_smile_curve(smile_at=(600, 690)):
    """A 40-s curve (30 fps) of a face talking from 10 s to 30 s, its words moving it as far as an expression would
    (the motion's departure from rest swings with them), its mouth stretched by syllables; with a 3-s smile (the
    mouth 0.35 eye distances wider) at `smile_at` while it talks."""
    n, fps = 1200, 30.0
    c = with_held(np.zeros(n))
    t = np.arange(n) / fps
    talking = (t >= 10) & (t < 30)
    c['mouth'] = np.where(talking, 1.5 * np.sin(2 * np.pi * 4 * t), 0.0)
    c['held'] = c['held'] + 0.1 + np.where(talking, 1.5 + 1.2 * np.sin(2 * np.pi * 4 * t), 0.0)
    # Words stretch the mouth for a syllable (0.17 s in every 0.6 s, by more than a smile) and let it go.
    syllable = talking & (np.arange(n) % 18 < 5)
    c['shape'] = np.tile([1.0, 0.3, 0.05, 0.3, 0.0, 1.0, 40.0, 0.3], (n, 1))
    c['shape'][syllable, 0] += 0.6
    c['shape'][syllable, 2] += 0.4                          # the lips apart with each syllable
    if smile_at:
        c['shape'][smile_at[0]:smile_at[1], 0] += 0.35
    return c


def test_a_smile_while_talking_is_found_from_the_landmarks_and_the_words_are_not_a_smile():
    found, shown = intervals.spot(talking_smile_curve())
    assert [r['kind'] for r in found if r['kind'] == 'speech'] == ['speech']
    assert len(spans(found)) == 1 and scoring.iou(spans(found)[0][:2], (600, 689)) >= 0.8, found
    # The words alone (the mouth stretched for a syllable at a time) are no smile, and without the landmarks'
    # measure the motion, swinging with the words, does not find this smile.
    assert spans(intervals.spot(talking_smile_curve(None))[0]) == []
    no_landmarks = {k: v for k, v in talking_smile_curve().items() if k != 'shape'}
    assert not any(scoring.iou(x[:2], (600, 689)) >= 0.5 for x in spans(intervals.spot(no_landmarks)[0]))


def test_two_smiles_with_a_partial_return_between_them_are_two():
    c = talking_smile_curve(None)
    c['shape'][450:540, 0] += 0.35
    c['shape'][540:570, 0] += 0.1                           # back to under a third of the rise, not to rest
    c['shape'][570:690, 0] += 0.35
    (a0, b0, _), (a1, b1, _) = spans(intervals.spot(c)[0])
    assert abs(a0 - 450) <= 10 and 540 <= b0 < 570 and a1 == b0 + 1 and abs(b1 - 689) <= 10


def test_a_smile_that_begins_as_the_brows_come_down_is_a_second_expression():
    c = talking_smile_curve(None)
    c['shape'][960:1020, 3] += 0.15                         # surprise's brows raised 2 s, after the talking
    c['shape'][1020:1100, 0] += 0.35                        # a smile from where they come down
    (a0, b0, _), (a1, b1, _) = spans(intervals.spot(c)[0])
    assert abs(a0 - 960) <= 10 and abs(b0 - 1020) <= 5 and a1 == b0 + 1 and abs(b1 - 1099) <= 10
    # Their largest measure never falls back between them (the smile's rises as the brows' falls): no valley.
    d = intervals.expressions(c, dict(intervals.SPOTTING))[1]
    assert d[990:1060].min() > intervals.SPOTTING['face_valley'] * min(d[960:1020].max(), d[1020:1100].max())


def test_a_mouth_held_open_is_an_expression_and_a_talking_mouth_is_not():
    c = talking_smile_curve(None)
    c['shape'][900:960, 2] += 0.35                          # a jaw drop held 2 s, after the talking
    c['shape'][450:510, 2] += 0.35                          # the lips held as far apart for 2 s of words
    found = spans(intervals.spot(c)[0])
    assert len(found) == 1 and scoring.iou(found[0][:2], (900, 959)) >= 0.7, found
    assert spans(intervals.spot(c, dict(open_rise=np.inf))[0]) == []


def test_brows_raised_are_an_expression_where_the_face_does_not_talk_and_not_while_it_talks():
    c = talking_smile_curve(None)
    c['shape'][600:660, 3] += 0.15                          # raised for emphasis while talking, 2 s
    c['shape'][960:1020, 3] += 0.15                         # raised in surprise 2 s after it, 2 s
    found = spans(intervals.spot(c)[0])
    assert len(found) == 1 and scoring.iou(found[0][:2], (960, 1019)) >= 0.7, found
    assert spans(intervals.spot(c, dict(brow_rise=np.inf))[0]) == []


def test_lips_pressed_are_an_expression_where_the_face_does_not_talk_and_not_while_it_talks():
    c = talking_smile_curve(None)
    c['shape'][600:660, 7] -= 0.1                           # words close and stretch the lips for 2 s
    c['shape'][960:1020, 7] -= 0.1                          # pressed 2 s after the talking, 2 s
    found = spans(intervals.spot(c)[0])
    assert len(found) == 1 and scoring.iou(found[0][:2], (960, 1019)) >= 0.7, found
    assert spans(intervals.spot(c, dict(press_rise=np.inf))[0]) == []
    c['shape'][960:1020, 7] += 0.2                          # the lips fuller, not thinner: no press
    assert spans(intervals.spot(c)[0]) == []
    # The lips closing as the words end, for two thirds of a second, are no press either.
    c = talking_smile_curve(None)
    stop = np.flatnonzero(intervals.spot(c)[1]['speech']).max()
    c['shape'][stop - 5:stop + 15, 7] -= 0.1
    assert spans(intervals.spot(c)[0]) == []


def test_after_a_jump_in_the_faces_size_its_usual_is_read_afresh_and_a_face_coming_nearer_is_no_jump():
    # A jump cut 30 s in to a closer shot (the eye distance 40 to 52 px) where the landmarks read the mouth wider:
    # no expression; a smile 5 s after it is found. The landmarks are read at every other frame (NaN between).
    c = talking_smile_curve(None)
    c['shape'][900:, 6] = 52.0
    c['shape'][900:, 0] += 0.3
    c['shape'][1050:1110, 0] += 0.35
    c['shape'][1::2] = np.nan
    (a0, b0), (a1, b1) = intervals.stretches(c, intervals.SPOTTING)
    assert (a0, b1) == (0, 1199) and a1 == b0 + 1 and abs(a1 - 900) <= 2
    found = spans(intervals.spot(c)[0])
    assert len(found) == 1 and scoring.iou(found[0][:2], (1050, 1109)) >= 0.7, found
    # Read once over the whole segment, the closer shot's mouth is a smile from the cut to the end.
    found = spans(intervals.spot(c, dict(size_jump=np.inf))[0])
    assert any(scoring.iou(x[:2], (900, 1199)) >= 0.7 for x in found), found
    # A jump under the setting is none; nor is the face coming as near over 10 s (a lean, not a cut).
    assert len(intervals.stretches(c, dict(intervals.SPOTTING, size_jump=0.3))) == 1
    c['shape'][:, 6] = np.linspace(40.0, 52.0, 1200)
    c['shape'][1::2] = np.nan
    assert intervals.stretches(c, intervals.SPOTTING) == [(0, 1199)]


def test_a_motion_as_the_face_stops_talking_is_its_lips_settling_and_one_later_is_an_expression():
    def with_motion(*onsets, cut=None):
        c = talking_smile_curve(None)                       # talking from 10 s to 30 s, still after
        face = np.zeros(1200)
        for a in onsets:
            face[a:a + 30] = 1.0                            # the face moves for 1 s
        m = with_held(face)
        c['p'], c['q'], c['held'] = m['p'], m['q'], c['held'] + np.abs(face) * 3
        if cut:
            c['seg'] = np.where(np.arange(1200) < cut, 0, 1)
        return c
    found, shown = intervals.spot(with_motion(905, 1000))
    stop = np.flatnonzero(shown['speech']).max()
    assert abs(stop - 905) < 15                             # where the face stops talking
    assert spans(found) == [(1000, 1029, 'macro')], found
    assert spans(intervals.spot(with_motion(920))[0]) == []  # just after it, too
    assert spans(intervals.spot(with_motion(930))[0]) == [(930, 959, 'macro')]
    # Where the talking ends with its face segment (a cut to another face), the next face's motion is its own.
    assert spans(intervals.spot(with_motion(915, cut=905))[0]) == [(915, 944, 'macro')]


def test_the_motions_intervals_count_only_where_the_head_held_still():
    face = np.zeros(1200)
    face[600:660] = 1.0                                     # an expression, 2 s
    c = with_held(face)
    c['shape'] = np.tile([1.0, 0.3, 0.05, 0.3, 0.0, 1.0, 40.0, 0.3], (1200, 1))
    assert len(spans(intervals.spot(c)[0])) == 1
    turning = {k: (v.copy() if k == 'shape' else v) for k, v in c.items()}
    turning['shape'][590:670, 4] = np.linspace(0.0, 0.3, 80)      # the head turns meanwhile
    assert spans(intervals.spot(turning)[0]) == []
    assert len(spans(intervals.spot(turning, dict(head_still=np.inf))[0])) == 1
    assert spans(intervals.spot(c, dict(head_still=0.0))[0]) == []


def test_a_landmarks_expression_over_untrusted_frames_counts_only_where_the_head_held_still():
    # The landmarks read a smile; over it the flow fits no rigid head. With the head still (a hand near the face),
    # the smile counts; where the head turns meanwhile, the wider mouth is the turn as the landmarks read it.
    n = 1200
    c = with_held(np.zeros(n))
    c['shape'] = np.tile([1.0, 0.3, 0.05, 0.3, 0.0, 1.0, 40.0, 0.3], (n, 1))
    c['shape'][600:690, 0] += 0.4                               # a smile of 3 s
    c['rigid'][600:690] = 3.0                                   # the curve cannot be trusted over it
    assert spans(intervals.spot(c)[0]) == [(595, 694, 'macro')]            # (the measures smoothed over 0.5 s)
    turning = {k: (v.copy() if k == 'shape' else v) for k, v in c.items()}
    turning['shape'][600:690, 4] = np.linspace(0.0, 0.4, 90)    # the head turns meanwhile
    assert spans(intervals.spot(turning)[0]) == []
    assert spans(intervals.spot(turning, dict(turn_still=0.5))[0]) == [(595, 694, 'macro')]
    assert spans(intervals.spot(c, dict(turn_still=0.0))[0]) == []
    trusted = dict(turning, rigid=np.full(n, 0.3))              # a turn the rigid head follows: the smile is read
    assert spans(intervals.spot(trusted)[0]) == [(595, 694, 'macro')]


def test_a_wider_mouth_is_a_smile_only_where_the_classifier_sees_the_face_happy():
    # The landmarks read the mouth 0.4 eye distances wider for 3 s, twice. The classifier sees the face happy for
    # half a second in the second: that one is a smile, the first is not (words, a tense face widen the mouth
    # too); never happy, neither is; not read at all, the landmarks alone decide.
    n = 1200
    c = with_held(np.zeros(n))
    c['shape'] = np.tile([1.0, 0.3, 0.05, 0.3, 0.0, 1.0, 40.0, 0.3], (n, 1))
    c['shape'][300:390, 0] += 0.4
    c['shape'][600:690, 0] += 0.4
    neutral = np.tile(np.eye(7)[6] * 0.8 + np.eye(7)[0] * 0.2, (n, 1))
    neutral[1::2] = np.nan                                      # read every other frame, as track reads them
    happy = neutral.copy()
    happy[630:646:2] = np.eye(7)[3] * 0.7 + np.eye(7)[6] * 0.3
    first, second = (295, 394, 'macro'), (595, 694, 'macro')
    assert spans(intervals.spot(dict(c, emotion=happy))[0]) == [second]
    assert spans(intervals.spot(dict(c, emotion=neutral))[0]) == []
    assert spans(intervals.spot(dict(c, emotion=happy), dict(smile_seen=0.75))[0]) == []
    assert spans(intervals.spot(dict(c, emotion=neutral), dict(smile_seen=0.0))[0]) == [first, second]
    assert spans(intervals.spot(dict(c, emotion=np.full((n, 7), np.nan)))[0]) == [first, second]
    assert spans(intervals.spot(c)[0]) == [first, second]
    # Given as a stream, the same: what the classifier sees later does not make the first a smile.
    assert spans(intervals.replay(dict(c, emotion=happy, ended=True, frames=n), {})) == [second]


def test_the_expression_classifier_reads_a_smiling_face_and_a_neutral_one():
    import cv2
    import matplotlib.cbook
    import matplotlib.image
    from skimage import data
    import align
    from video import emotion
    smiling = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    plain = cv2.cvtColor(matplotlib.image.imread(matplotlib.cbook.get_sample_data('grace_hopper.jpg')),
                         cv2.COLOR_RGB2GRAY)
    faces = [emotion.crop(g, align.detect_faces(g, 0)[0][0]) for g in (smiling, plain)]
    p = emotion.probabilities(np.array(faces))
    assert p.shape == (2, 7) and np.allclose(p.sum(1), 1.0)
    assert emotion.LABELS[int(np.argmax(p[0]))] == 'happy' and p[0, 3] > 0.9, p
    assert emotion.LABELS[int(np.argmax(p[1]))] == 'neutral' and p[1, 3] < 0.1, p
    # And as the network gives them on these two photos (a smaller change to it moves them, not the classes).
    assert p[0, 3] > 0.999 and p[1, 6] == pytest.approx(0.920, abs=0.01) and p[1, 0] == pytest.approx(0.060, abs=0.01)
    assert emotion.crop(plain, (-50, -50, -10, -10)) is None


def test_without_the_classifiers_weights_the_spotter_says_which_file_and_what_to_do(tmp_path, monkeypatch):
    from video import emotion
    monkeypatch.setattr(emotion, 'WEIGHTS', tmp_path / 'emotion_fer2013.npz')
    emotion.weights.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match='emotion_fer2013.npz: .*install the package again'):
            emotion.probabilities(np.zeros((1, 64, 64)))
    finally:
        emotion.weights.cache_clear()


def test_the_motions_intervals_count_only_where_the_mouth_keeps_no_quiet_rhythm_of_words():
    face = np.zeros(1200)
    face[600:630] = 1.0                                     # the face moves for 1 s, the head still
    c = with_held(face)
    c['shape'] = np.tile([1.0, 0.3, 0.05, 0.3, 0.0, 1.0, 40.0, 0.3], (1200, 1))
    c['mouth'] = np.zeros(1200)
    assert spans(intervals.spot(c)[0]) == [(600, 629, 'macro')]
    t = np.arange(1200) / c['fps']
    # Meanwhile the mouth opens and closes at 4 Hz by 0.2 px, under talking's threshold (the band's RMS about
    # 0.11 px against --speech-px 0.15): quiet words, not reported as speech, and not an expression either.
    c['mouth'] = np.where((t >= 15) & (t < 25), 0.2 * np.sin(2 * np.pi * 4 * t), 0.0)
    found, shown = intervals.spot(c)
    assert not shown['speech'].any() and spans(found) == [], found
    assert spans(intervals.spot(c, dict(murmur=1.0))[0]) == [(600, 629, 'macro')]
    # The same rhythm at a tenth of that opening is no talking at all.
    c['mouth'] = c['mouth'] / 10
    assert spans(intervals.spot(c)[0]) == [(600, 629, 'macro')]
    # Talking aloud, speech's own rule decides: a departure from rest far beyond what the words move (15 px
    # against the 4 px that talking asks) is an expression made while talking.
    c['mouth'] = c['mouth'] * 75
    c['held'] = c['held'] * 5
    found, shown = intervals.spot(c)
    assert shown['speech'][450:750].all() and spans(found) == [(600, 629, 'macro')], found
