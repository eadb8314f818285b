"""`mer.py spot`: every expression interval in long videos (intervals.py), recognised by a saved model where one is
given, scored as MEGC scores it where the truth is known (scoring.py), drawn as a timeline, written with --out.

    python mer.py spot video.mp4 [--model model.pt] [--out spots.csv] [--figure timeline.png]
    python mer.py spot --camera 0 --model model.pt   # live: each interval a few seconds after it ends
    python mer.py spot --demo            # the long-video demo (synth.build_long), spotted and scored
    python mer.py spot --data ./long     # CAS(ME)^2 and/or SAMM Long Videos as they unpack (long_releases.py)

A video (a folder of numbered frames, a camera, a stream) is read once, as a stream: the spotter keeps a few
numbers a frame and a few seconds of small faces; recognising keeps the last --buffer-s seconds of frames, from
which each interval is cut when it settles (intervals.online).
"""
import collections
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

import config
from data.releases import DatasetError, frame_number, list_frames
from util.files import atomic_write
from video import intervals, outputs, predict, scoring

log = logging.getLogger(__name__)

# Seconds of frames a live source may queue while the work catches up; beyond it, frames are dropped (counted).
QUEUE_S = 10.0
COLUMNS = ['video', 'onset', 'offset', 'kind', 'apex', 'onset_s', 'apex_s', 'offset_s', 'score', 'trusted', 'label',
           *(f'p_{c}' for c in config.CLASSES), 'delay_s', 'path']


# ----------------------------------------------------------------------------------------------- reading
def open_video(path, fps=None):
    """A video dict (path, name, files (a folder's, else None), fps, truths []) of a video file or a folder of
    numbered frames, checked without reading it; what cannot be opened is a DatasetError naming the file and what
    to do."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f'{p}: no such file or folder; give a video file (mp4, avi, mov) or a folder of numbered '
                           'frames')
    files, rate = None, 0.0
    if p.is_dir():
        try:
            files = list_frames(p)
        except DatasetError:
            raise DatasetError(f'{p}: no numbered image frames in this folder (names ending in the frame number, '
                               'e.g. img046.jpg)') from None
        if fps is None:
            raise DatasetError(f'{p}: a folder of frames gives no frame rate, and micro- and macro-expressions are '
                               'told apart by their length in seconds; pass --fps N')
    else:
        cap = cv2.VideoCapture(str(p))
        ok = cap.isOpened()
        rate = cap.get(cv2.CAP_PROP_FPS) if ok else 0.0
        cap.release()
        if not ok:
            raise predict.no_frames(p)
        rate = rate if rate and rate > 0 and np.isfinite(rate) else 0.0
        if fps is None and not rate:
            raise DatasetError(f'{p}: the video\'s header gives a frame rate of 0 (none usable), and micro- and '
                               'macro-expressions are told apart by their length in seconds; pass --fps N (its real '
                               'rate)')
    return dict(path=str(p), name=p.name, files=files, fps=float(fps or rate), truths=[], live=None)


def memory_video(frames, fps, name='frames'):
    """A video dict of frames held in memory (a list or an iterator of BGR frames): spotted as a file is."""
    return dict(path=name, name=name, files=None, fps=float(fps), truths=[], live=None, frames=frames)


def open_live(source, fps=None, paced=False):
    """A video dict of a live source: a camera's index, a stream's URL, or (paced) a file read at its own frame rate
    as a camera delivers it; one that OpenCV cannot open is a DatasetError naming it."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)   # its [ WARN ] lines say what we say below
    try:
        cap = cv2.VideoCapture(source)
        ok = cap.isOpened()
        rate = cap.get(cv2.CAP_PROP_FPS) if ok else 0.0
        cap.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
    name = f'camera {source}' if isinstance(source, int) else str(source)
    if not ok:
        what = 'finds no camera at that index (none attached, or another program holds it); give another --camera ' \
            'N or a video file' if isinstance(source, int) else 'cannot open it; check the address, or give a video ' \
            'file'
        raise DatasetError(f'{name}: OpenCV {what}')
    rate = fps or (rate if rate and rate > 0 and np.isfinite(rate) else 0.0)
    if not rate:
        log.info('%s: no frame rate given by the source; taking 30 fps (pass --fps to change it)', name)
    return dict(path=name, name=Path(name).name if not isinstance(source, int) else name, files=None,
                fps=float(rate or 30.0), truths=[], live=dict(source=source, paced=paced, dropped=0, clock=None))


def frames(video, every=1):
    """Yields every frame of a video in order, one pass, decoded only at positions that are multiples of `every`
    (None at the others); a file that gives no frame at all is a DatasetError naming it."""
    from data.frames import read_frames
    if video.get('live') is not None:
        yield from live_frames(video)
        return
    if video.get('frames') is not None:     # held in memory (video/api.py)
        yield from video['frames']
        return
    if video['files'] is not None:
        for i, f in enumerate(video['files']):
            yield read_frames([f])[0] if i % every == 0 else None
        return
    cap = cv2.VideoCapture(video['path'])
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    clock = video['clock'] = dict(times=[], off=0.0, ok=True)     # the container's time of each frame (s)
    i = 0
    try:
        while True:
            ok, img = (cap.grab(), None) if i % every else cap.read()
            if not ok:
                break
            keep_time(clock, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000, i, video['fps'])
            yield img
            i += 1
    finally:
        cap.release()
    if i == 0:
        raise predict.no_frames(video['path'])
    if clock['ok'] and clock['off'] > 0.5 / video['fps']:
        log.warning('%s: a variable frame rate: the frames\' own timestamps depart from frame / %g fps by up to %.2f '
                    's; the seconds columns are the timestamps, but the spotter\'s windows and the micro/macro split '
                    'count frames at %g fps; re-encode it at a constant rate for exact lengths (ffmpeg -i IN '
                    '-fps_mode cfr OUT.mp4)', video['path'], video['fps'], clock['off'], video['fps'])
    if header > i + 1:
        log.warning('%s: the stream ended after %d frames, the header says %d; the rest cannot be decoded (re-encode '
                    'the video to read them)', video['path'], i, header)


def keep_time(clock, t, i, fps):
    """Keeps frame i's timestamp t (seconds from the container) and how far the timestamps so far depart from
    i / fps; timestamps that do not increase (a backend that gives none) are not used."""
    times = clock['times']
    clock['ok'] = clock['ok'] and (not times or t > times[-1])
    times.append(t)
    clock['off'] = max(clock['off'], abs(t - times[0] - i / fps))


def seconds(video, i):
    """The time of position i from the video's first frame: its container timestamp where the video's frame rate
    varies (timestamps departing from i / fps by more than half a frame), else i / fps."""
    clock = video.get('clock')
    if clock and clock['ok'] and i < len(clock['times']) and clock['off'] > 0.5 / video['fps']:
        return clock['times'][i] - clock['times'][0]
    return i / video['fps']


def live_frames(video):
    """Yields a live source's frames as they arrive, None for each one dropped because the work fell QUEUE_S seconds
    behind (counted in video['live']['dropped']); video['live']['clock'] holds (position, arrival time) of the
    newest. Ctrl-C ends the stream (a second one interrupts): what was queued is still spotted."""
    import queue
    live = video['live']
    cap = cv2.VideoCapture(live['source'])
    q = queue.Queue(maxsize=max(2, int(video['fps'] * QUEUE_S)))
    done = threading.Event()

    def reader():
        i, t0 = 0, time.monotonic()
        while not done.is_set():
            if live['paced']:
                time.sleep(max(0.0, t0 + i / video['fps'] - time.monotonic()))
            ok, img = cap.read()
            if not ok:
                break
            try:
                q.put_nowait((i, img, time.monotonic()))
            except queue.Full:
                live['dropped'] += 1
            i += 1
        while not done.is_set():              # the end marker, once there is room
            try:
                q.put((None, None, None), timeout=0.1)
                break
            except queue.Full:
                pass

    def on_ctrl_c(signum, frame):
        log.warning('%s: stopping (Ctrl-C); spotting what has arrived (press it again to interrupt)', video['path'])
        done.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    old = signal.signal(signal.SIGINT, on_ctrl_c) if threading.current_thread() is threading.main_thread() else None
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    expected = 0
    try:
        while True:
            try:
                i, img, t = q.get(timeout=0.1)
            except queue.Empty:
                if done.is_set() or not thread.is_alive():
                    break
                continue
            if i is None:
                break
            for _ in range(i - expected):           # dropped: their positions keep the stream's time
                yield None
            live['clock'] = (i, t)
            expected = i + 1
            yield img
    finally:
        done.set()
        thread.join(timeout=5)
        if not thread.is_alive():
            cap.release()
        if old is not None:
            signal.signal(signal.SIGINT, old)
    if live['dropped']:
        log.warning('%s: %d frames dropped: the work fell %g s behind the source', video['path'], live['dropped'],
                    QUEUE_S)


def frame_count(video):
    """The frames a video says it holds, for the progress bar only (a header's count is not reliable, a live source
    has none: None)."""
    if video['files'] is not None:
        return len(video['files'])
    if video.get('live') is not None or video.get('frames') is not None:
        return None
    cap = cv2.VideoCapture(video['path'])
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    return n or None


def number(video, i):
    """The frame number of position i: a folder's file number, a video's position."""
    return frame_number(video['files'][i]) if video['files'] is not None else i


# ----------------------------------------------------------------------------------------------- one video
def spot_video(video, settings=None, quiet=False, model=None, buffer_s=8.0, on_interval=None):
    """(intervals, the curve the threshold was applied to and its threshold, motion's curve) of one video, read
    once; each interval recognised by `model` (predict.load's) where given, from the last buffer_s seconds of
    analysed frames, and passed to on_interval as it settles. Each interval holds a thumbnail of its apex
    ('thumb')."""
    from tqdm import tqdm
    every = intervals.step(video['fps'], settings)
    afps = video['fps'] / every
    kept = collections.deque(maxlen=max(2, int(round(buffer_s * afps))))      # (position, frame) analysed
    latest = {}

    def keeping(stream):
        for i, img in enumerate(stream):
            if img is not None and i % every == 0:
                kept.append((i, img if model is not None else thumbnail(img)))
            yield img

    def watched(states):
        for c in states:
            latest['c'] = c
            yield c

    found = []
    with tqdm(total=frame_count(video), unit='frame',
              desc=Path(video['path']).name[:24], disable=quiet, leave=False) as bar:
        states = intervals.track(keeping(frames(video, every)), video['fps'], video['path'], settings,
                                 progress=bar.update)
        for r in intervals.online(watched(states), settings):
            if model is not None and r['kind'] != 'speech':
                recognise(video, r, kept, every, model)
            apex = dict(kept).get(r['apex'])
            r['thumb'] = None if apex is None else thumbnail(apex) if model is not None else apex
            if video.get('live') and video['live']['clock'] is not None:
                i, t = video['live']['clock']
                r['delay_s'] = round(time.monotonic() - (t - (i - r['end']) / video['fps']), 3)
            found.append(r)
            if on_interval is not None:
                on_interval(r)
    curve = intervals.arrays(latest['c'])
    _, shown = intervals.spot(curve, settings)
    say_untrusted(video, curve, shown['untrusted'])
    shortest = dict(intervals.SPOTTING, **(settings or {}))['min_s']
    if curve['frames'] < shortest * video['fps']:
        log.warning('%s: %d frame%s (%.3f s at %g fps): shorter than the shortest interval the spotter reports '
                    '(--min-s %g s), so it can report none; give a video of the face over seconds', video['path'],
                    curve['frames'], 's' * (curve['frames'] != 1), curve['frames'] / video['fps'], video['fps'],
                    shortest)
    if curve['several']:
        log.info('%s: %d analysed frames showed more than one face; the largest was followed', video['path'],
                 curve['several'])
    return found, shown, curve


def say_untrusted(video, curve, bad, min_s=0.5):
    """One warning naming the stretches (at least min_s long) where the curve cannot be trusted."""
    runs = [(a, b) for a, b in intervals.runs(bad) if (b - a + 1) / curve['fps'] >= min_s]
    if runs:
        said = ', '.join(f'{number(video, int(curve["pos"][a]))}-{number(video, int(curve["pos"][b]))}'
                         for a, b in runs[:5]) + (' ...' if len(runs) > 5 else '')
        log.warning('%s: the motion curve cannot be trusted in frames %s: the face there does not move as one rigid '
                    'head (turned out of plane, or covered by a hand); intervals there are marked untrusted',
                    video['path'], said)


def thumbnail(img, h=60):
    """A frame shrunk to h pixels high, for the timeline."""
    return cv2.resize(img, (max(1, img.shape[1] * h // img.shape[0]), h), interpolation=cv2.INTER_AREA)


def recognise(video, r, kept, every, model):
    """Adds the saved model's label and probabilities to an interval, cut from the kept frames from its start to its
    apex (a micro interval as a micro-expression, a macro one with EMR's macro rule); a face the model's pipeline
    cannot use leaves it unlabelled, with a warning."""
    from align import FaceNotFound
    frames = [(i, img) for i, img in kept if r['start'] <= i <= max(r['apex'], r['start'] + 1)]
    if frames and frames[0][0] > r['start']:
        log.warning('%s: interval %d-%d began more than --buffer-s before it settled; recognised from frame %d',
                    video['path'], number(video, r['start']), number(video, r['end']), number(video, frames[0][0]))
    if len(frames) < 2:
        log.warning('%s: interval %d-%d not recognised: fewer than 2 of its frames are kept', video['path'],
                    number(video, r['start']), number(video, r['end']))
        return
    clip = predict.memory_clip([img for _, img in frames], video['fps'] / every, video['path'])
    clip['numbers'] = [number(video, i) for i, _ in frames]
    try:
        p = predict.predict_clip(clip, model, config.CLASSES, onset=clip['numbers'][0],
                                 apex=clip['numbers'][-1], no_face='error', max_frames=len(frames), domain=r['kind'])
    except (FaceNotFound, DatasetError) as e:
        log.warning('%s: interval %d-%d not recognised: %s', video['path'], number(video, r['start']),
                    number(video, r['end']), e)
        return
    r['label'] = p['label']
    r.update({f'p_{c}': p[f'p_{c}'] for c in config.CLASSES})


def record(video, r):
    """The output dict of one interval: MEGC's submission columns (video, onset, offset, kind) in frame numbers,
    the apex, the same in seconds, the score, and label and probabilities where recognised."""
    out = dict(video=video['name'], **{k: number(video, r[j]) for k, j in
                                       (('onset', 'start'), ('offset', 'end'), ('apex', 'apex'))},
               kind=r['kind'], **{f'{k}_s': round(seconds(video, r[j]), 3) for k, j in
                                  (('onset', 'start'), ('apex', 'apex'), ('offset', 'end'))},
               score=round(r['score'], 4))
    out['trusted'] = r.get('trusted', True)
    out.update({k: v for k, v in r.items() if k in ('label', 'delay_s') or k.startswith('p_')})
    out['path'] = video['path']
    return out


def line(rec):
    """'path onset apex offset onset_s apex_s offset_s kind [label p_negative p_positive p_surprise]'."""
    parts = [rec['path'], str(rec['onset']), str(rec['apex']), str(rec['offset']), f'{rec["onset_s"]:.3f}',
             f'{rec["apex_s"]:.3f}', f'{rec["offset_s"]:.3f}', rec['kind']]
    if 'label' in rec:
        parts += [rec['label'], *(f'{rec[f"p_{c}"]:.4f}' for c in config.CLASSES)]
    if not rec['trusted']:
        parts.append('untrusted')
    return ' '.join(parts)


# ----------------------------------------------------------------------------------------------- the figure
KIND_COLOURS = dict(micro='tab:orange', macro='tab:blue', speech='tab:green')


def label_level(placed, x, span, near=0.07):
    """The lowest row (0, 1, 2) for a timeline label at x whose neighbours within `near` of the span already hold
    the rows below; records it in `placed`."""
    taken = {level for at, level in placed if abs(at - x) < near * span}
    level = next((k for k in range(3) if k not in taken), 2)
    placed.append((x, level))
    return level


def save_figure(path, rows, max_rows=8):
    """The timeline of each video (at most max_rows): the curve the threshold was applied to, the threshold, each
    spotted interval shaded (micro orange, macro blue) and labelled, its apex frame above it, and the true
    intervals (grey bars) when known; written atomically."""
    import io

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    rows = rows[:max_rows]
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 3.2 * len(rows)), squeeze=False)
    for ax, (video, found, shown, curve) in zip(axes[:, 0], rows):
        t = curve['pos'] / video['fps']
        v = shown['v']
        top = max(float(np.max(v)) if len(v) else 1.0, shown['threshold'] if np.isfinite(shown['threshold']) else 0,
                  1e-3)
        if 'held' in shown:
            top = max(top, float(np.max(shown['held'], initial=0)))
            ax.plot(t, shown['held'], lw=0.8, color='tab:purple', alpha=0.7, label='held: from the face at rest')
            ax.plot(t, np.broadcast_to(shown['held_threshold'], t.shape), color='tab:purple', lw=0.8, ls=':',
                    label='held threshold (higher while talking)')
        ax.plot(t, v, lw=0.8, color='k', label='motion')
        if np.isfinite(shown['threshold']):
            ax.axhline(shown['threshold'], color='r', lw=0.8, ls='--', label='threshold')
        gone = curve['seg'] < 0
        if gone.any():
            ax.fill_between(t, 0, top * 1.6, where=gone, color='0.9', step='mid', label='no face')
        if 'one_sided' in shown and shown['one_sided'].any():
            ax.fill_between(t, 0, top * 1.6, where=shown['one_sided'] & (curve['seg'] >= 0), color='tab:olive',
                            alpha=0.08, step='mid', label='one-sided (the next K s unknown: the curve is p)')
        if shown['untrusted'].any():
            ax.fill_between(t, 0, top * 1.6, where=shown['untrusted'], facecolor='none', edgecolor='0.6', hatch='//',
                            lw=0, step='mid', label='untrusted (head turned, face covered)')
        for tr in video['truths']:
            ax.plot([tr['start'] / video['fps'], tr['end'] / video['fps']], [-0.06 * top] * 2, lw=5,
                    color=KIND_COLOURS[tr['kind']], alpha=0.5, solid_capstyle='butt')
        placed = []
        for r in found:
            colour = KIND_COLOURS[r['kind']]
            if r['kind'] == 'speech':         # a band along the foot of the axes: talking, not an expression
                ax.fill_between([r['start'] / video['fps'], (r['end'] + 1) / video['fps']], -0.12 * top, 0,
                                color=colour, alpha=0.35, lw=0)
                continue
            ax.axvspan(r['start'] / video['fps'], (r['end'] + 1) / video['fps'], color=colour, alpha=0.3)
            text = r['kind'] + (f' {r["label"]}' if 'label' in r else '')
            level = label_level(placed, r['apex'] / video['fps'], curve['frames'] / video['fps'])
            ax.text(r['apex'] / video['fps'], top * (1.03 + 0.09 * level), text, ha='center', fontsize=8)
            if r.get('thumb') is not None:
                thumb = cv2.cvtColor(r['thumb'], cv2.COLOR_BGR2RGB)
                ax.add_artist(AnnotationBbox(OffsetImage(thumb, zoom=0.6), (r['apex'] / video['fps'], top * 1.35),
                                             frameon=False))
        ax.set_ylim(-0.12 * top, top * 1.6)
        ax.set_xlim(0, curve['frames'] / video['fps'])
        ax.set_xlabel('seconds')
        ax.set_ylabel('motion (px)')
        truth = ' (bars below: true intervals)' if video['truths'] else ''
        ax.set_title(f'{Path(video["path"]).name}: {len(found)} interval{"s" * (len(found) != 1)}{truth}', fontsize=9)
        handles, labels = ax.get_legend_handles_labels()
        if 'face' in shown:
            # The landmarks' departure is in units of each measure's rise, not pixels: its own axis, on the right.
            right = ax.twinx()
            right.plot(t, shown['face'], lw=1.0, color='tab:orange', label='landmarks (in rises, right)')
            right.axhline(1.0, color='tab:orange', lw=0.8, ls=':', label='landmarks\' threshold')
            right.set_ylabel('landmarks: departure / rise', fontsize=8)
            h, lab = right.get_legend_handles_labels()
            handles, labels = handles + h, labels + lab
        ax.legend(handles, labels, loc='upper left', bbox_to_anchor=(1.06, 1.0), borderaxespad=0, fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip('.').lower().replace('jpg', 'jpeg'), dpi=90)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------- the command
def score_table(scores, strs=None):
    """The MEGC table: TP FP FN precision recall F1 for micro, macro, overall; STR when given."""
    out = ['| | TP | FP | FN | precision | recall | F1 |', '|---|---|---|---|---|---|---|']
    for k in ('micro', 'macro', 'overall'):
        s = scores[k]
        out.append(f'| {k} | {s["tp"]} | {s["fp"]} | {s["fn"]} | {s["precision"]:.4f} | {s["recall"]:.4f} | '
                   f'{s["f1"]:.4f} |')
    if strs is not None:
        out.append(f'STR over {strs["n"]} correctly spotted micro-expressions: ' + (
            'none labelled' if strs['uf1'] is None else
            f'UF1 {strs["uf1"]:.4f}, UAR {strs["uar"]:.4f}, STR (micro F1 x UF1) {strs["str"]:.4f}'))
    return '\n'.join(out)


def settings_of(a):
    """The spotter's settings of the parsed flags (each SPOTTING key that is a flag)."""
    return {k: getattr(a, k) for k in intervals.SPOTTING if getattr(a, k, None) is not None}


def sources(a):
    """The videos of the parsed flags, every one checked before any long work."""
    from data import long_releases
    if a.demo:
        from data import synth
        videos = long_releases.load_long(synth.build_long(a.demo_root))
    elif a.data:
        videos = long_releases.load_long(a.data)
    elif a.camera is not None:
        return [open_live(a.camera, a.fps)]
    else:
        return [open_live(p, a.fps, paced=a.live) if a.live or '://' in p else open_video(p, a.fps) for p in a.paths]
    i, n = a.part
    return videos[i - 1::n]


def run(a):
    """`mer.py spot`: spots every video, prints a line (or JSON) per interval as it settles, writes --out after every
    video (and every interval of a live source), scores and draws where asked."""
    if a.merge:
        return merge(a)
    fig = predict.figure_path(a.figure)
    out = outputs.out_path(a.out)
    settings = settings_of(a)
    videos = sources(a)                     # every video checked before the model is loaded
    if a.model and not Path(a.model).exists():
        raise DatasetError(f'--model {a.model}: no such model file; give the model.pt that mer.py --save-model '
                           'wrote (README: "Run it on your own clip")')
    model = predict.load(a.model, stabilise=True, quiet=a.quiet) if a.model else None
    info = outputs.meta(a.argv, a.model, model and model['record'], dict(intervals.SPOTTING, **settings))
    t0, n_frames, rows, results, records = time.time(), 0, [], {}, []

    def given(video, r):
        rec = record(video, r)
        records.append(rec)
        print(json.dumps(rec) if a.json else line(rec), flush=True)
        if out is not None and video.get('live') is not None:
            outputs.write(out, records, COLUMNS, info)

    from engine import checkpoint
    for n, video in enumerate(videos):
        try:
            found, shown, curve = spot_video(video, settings, a.quiet, model, a.buffer_s,
                                             on_interval=lambda r, v=video: given(v, r))
        except (KeyboardInterrupt, checkpoint.Stopped) as e:
            stopped(e, video, n, len(videos), out, records, info)
        n_frames += curve['frames']
        rows.append((video, found, shown, curve))
        results[video['path']] = (found, video['truths'])
        if out is not None:
            outputs.write(out, records, COLUMNS, info)
    if out is not None:
        outputs.write(out, records, COLUMNS, info)      # also when there was no video to spot (an empty part)
    took = time.time() - t0
    log.info('%d video%s, %d frames, spotted in %.1f s (%.1f frames/s)', len(videos), 's' * (len(videos) > 1),
             n_frames, took, n_frames / max(took, 1e-9))
    if out is not None:
        log.info('%d intervals written to %s', len(records), out)
    if any(v['truths'] for v in videos):
        print_scores(results, model is not None, a.json, {v['path']: v.get('dataset') for v in videos})
    if fig is not None:
        save_figure(fig, rows)
        log.info('timeline saved to %s', fig)
    return 0


def stopped(e, video, n, total, out, records, info):
    """Ctrl-C or a stop signal while spotting the n-th of `total` videos: --out gets every interval printed, those
    of the video in progress too (its file says where it stopped), and the run ends with one line. Spot keeps no
    state to resume from: a video is spotted from its first frame."""
    from engine import checkpoint
    name = 'Ctrl-C' if isinstance(e, KeyboardInterrupt) else e.args[0]
    mine = sum(r['path'] == video['path'] for r in records)
    if out is not None:
        signals = (signal.SIGINT, *checkpoint.STOP_SIGNALS) if threading.current_thread() is \
            threading.main_thread() else ()
        handlers = {s: signal.signal(s, signal.SIG_IGN) for s in signals}    # a second Ctrl-C waits for the file
        try:
            outputs.write(out, records, COLUMNS, dict(info, stopped=dict(signal=name, video=video['path'],
                                                                         videos_done=n, videos=total)))
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
    kept = f'{len(records)} interval{"s" * (len(records) != 1)} printed ({mine} of {video["name"]}, spotted up to ' \
        f'where it stopped)' + (f' are in {out}' if out is not None else '')
    rest = f'; spot has no resume: to finish, spot {video["name"]}' + \
        (f' and the {total - n - 1} video{"s" * (total - n > 2)} after it' if total - n > 1 else '') + ' again'
    print(f'mer.py: stopped by {name} in video {n + 1} of {total}; the {kept}{rest}', file=sys.stderr, flush=True)
    raise SystemExit(checkpoint.STOPPED if name != 'Ctrl-C' else 1)


def print_scores(results, recognised, as_json, datasets=None):
    """Prints MEGC's spotting scores (and STR where the intervals were recognised) of {video: (found, truths)},
    with the overall F1's 95 % interval over the videos resampled within each dataset ({video: dataset})."""
    for found, truths in results.values():          # STR reads the prediction as a class index
        for r in found:
            if 'label' in r:
                r['pred'] = config.CLASSES.index(r['label'])
    scores = scoring.score(results)
    strs = scoring.str_score(scores) if recognised else None
    groups = [str((datasets or {}).get(v)) for v in results]
    interval = None                   # with one video in each dataset, drawing again changes nothing: no interval
    if len(set(groups)) < len(groups):
        each = [[scoring.score({v: x})['overall'][k] for k in ('tp', 'fp', 'fn')] for v, x in results.items()]
        interval = scoring.uncertainty(each, groups)['interval']
    if as_json:
        print(json.dumps(dict(scores={k: dict(v, interval=interval) if k == 'overall' else v
                                      for k, v in scores.items() if k != 'pairs'}, str=strs)))
    else:
        print(score_table(scores, strs))
        print(f'overall F1 {scores["overall"]["f1"]:.4f}, ' + (
            'no interval: one video in each dataset' if interval is None else
            f'95 % interval [{interval[0]:.4f}, {interval[1]:.4f}] over the {len(results)} videos resampled within '
            'each dataset (1000 draws)'))


def merge(a):
    """`mer.py spot --merge FILES`: the --out files of many runs (an array's, one per video) as one file (--out),
    scored where --data or --demo gives the truth; a video found in two files, or files made with other settings
    or another model, is a DatasetError naming them."""
    from data import long_releases
    out = outputs.out_path(a.out)
    infos, records, seen = [], [], {}
    for i, f in enumerate(a.merge):
        info, rows = outputs.read(f)
        if infos and (info.get('settings'), info.get('model')) != (infos[0].get('settings'), infos[0].get('model')):
            raise DatasetError(f'{f}: made with other spotter settings or another model than {a.merge[0]}; merge the '
                               'files of one run')
        infos.append(info)
        if info.get('stopped'):
            log.warning('%s: its run was stopped (%s) while spotting %s: that video\'s intervals end where it stopped',
                        f, info['stopped']['signal'], info['stopped']['video'])
        for r in rows:
            if seen.setdefault(r['path'], i) != i:
                raise DatasetError(f'{f}: {r["path"]} was spotted in {a.merge[seen[r["path"]]]} too; give each '
                                   'video\'s file once')
        records += rows
    log.info('%d intervals of %d videos from %d files', len(records), len(seen), len(a.merge))
    if out is not None:
        info = dict(infos[0], command=' '.join(['mer.py', *a.argv]), merged=[str(f) for f in a.merge])
        outputs.write(out, records, COLUMNS, info)
        log.info('merged into %s', out)
    if a.demo or a.data:
        from data import synth
        videos = long_releases.load_long(synth.build_long(a.demo_root) if a.demo else a.data)
        missing = [v['path'] for v in videos if v['path'] not in seen]
        if missing:
            log.warning('%d of %d videos have no interval in the merged files (none found, or not spotted): %s',
                        len(missing), len(videos), ', '.join(missing[:3]) + ' ...' * (len(missing) > 3))
        results = {}
        for v in videos:        # the truths are in positions, the files in frame numbers
            at = {frame_number(f): i for i, f in enumerate(v['files'])}
            results[v['path']] = ([dict(r, start=at[r['onset']], end=at[r['offset']]) for r in records
                                   if r['path'] == v['path']], v['truths'])
        print_scores(results, any('label' in r for r in records), a.json, {v['path']: v['dataset'] for v in videos})
    return 0
