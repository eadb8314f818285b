"""`mer.py spot`: every expression interval in long videos (intervals.py), recognised by a saved model where one is
given, scored as MEGC scores it where the truth is known (scoring.py), drawn as a timeline.

    python mer.py spot video.mp4 [--model model.pt] [--json] [--figure timeline.png]
    python mer.py spot --demo            # the long-video demo (synth.build_long), spotted and scored
    python mer.py spot --data ./long     # CAS(ME)^2 and/or SAMM Long Videos as they unpack (long_releases.py)

A video (or a folder of numbered frames) is read once, as a stream; only the frames the figure shows are read again.
"""
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

import config
from data.releases import DatasetError, frame_number
from engine.files import atomic_write
from video import intervals, scoring

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- reading
def open_video(path, fps=None):
    """A video dict (path, name, files (a folder's, else None), n (frames), fps, truths []) of a video file or a
    folder of numbered frames; what cannot be read is a DatasetError naming the file and what to do."""
    from video import predict
    p = Path(path)
    files, n, rate = predict.source(p)
    if fps is None and files is not None:
        raise DatasetError(f'{p}: a folder of frames gives no frame rate, and micro- and macro-expressions are '
                           'told apart by their length in seconds; pass --fps N')
    if fps is None and not rate:
        raise DatasetError(f'{p}: the video\'s header gives a frame rate of 0 (none usable), and micro- and '
                           'macro-expressions are told apart by their length in seconds; pass --fps N (its real rate)')
    return dict(path=str(p), name=p.name, files=files, n=n, fps=float(fps or rate), truths=[])


def frames(video, every=1):
    """Yields every frame of a video in order, decoded only at positions that are multiples of `every` (None at the
    others)."""
    from data.frames import read_frames
    if video['files'] is not None:
        for i, f in enumerate(video['files']):
            yield read_frames([f])[0] if i % every == 0 else None
        return
    cap = cv2.VideoCapture(video['path'])
    try:
        for i in range(video['n']):
            if i % every:
                ok, img = cap.grab(), None
            else:
                ok, img = cap.read()
            if not ok:
                raise DatasetError(f'{video["path"]}: frame {i} cannot be decoded; re-encode the video')
            yield img
    finally:
        cap.release()


def frame_at(video, positions):
    """{position: BGR frame} of a few positions, read again."""
    want, out = set(positions), {}
    for i, img in enumerate(frames(video)):
        if i in want:
            out[i] = img
        if len(out) == len(want):
            break
    return out


def number(video, i):
    """The frame number of position i: a folder's file number, a video's position."""
    return frame_number(video['files'][i]) if video['files'] is not None else i


# ----------------------------------------------------------------------------------------------- one video
def spot_video(video, settings=None, quiet=False):
    """(intervals, the curve the threshold was applied to and its threshold, motion's curve) of one video."""
    from tqdm import tqdm
    every = intervals.step(video['fps'], settings)
    with tqdm(total=video['n'], unit='frame', desc=Path(video['path']).name[:24], disable=quiet,
              leave=False) as bar:
        curve = intervals.motion(frames(video, every), video['fps'], video['path'], settings, progress=bar.update)
    found, shown = intervals.spot(curve, settings)
    if curve['several']:
        log.info('%s: %d analysed frames showed more than one face; the largest was followed', video['path'],
                 curve['several'])
    return found, shown, curve


def recognise(video, found, net, cfg):
    """Each interval with the saved model's label and probabilities, its onset and apex as the clip's (a micro
    interval as a micro-expression, a macro one with EMR's macro rule, and marked 'macro')."""
    from align import FaceNotFound
    from video import predict
    clip = dict(path=video['path'], kind='folder' if video['files'] is not None else 'video',
                numbers=[number(video, i) for i in range(video['n'])] if video['files'] is not None else
                list(range(video['n'])), files=video['files'], fps=video['fps'])
    for r in found:
        apex = max(r['apex'], r['start'] + 1)
        try:
            p = predict.predict_clip(clip, net, cfg, config.CLASSES, onset=clip['numbers'][r['start']],
                                     apex=clip['numbers'][min(apex, video['n'] - 1)], no_face='error',
                                     max_frames=apex - r['start'] + 1, domain=r['kind'])
        except (FaceNotFound, DatasetError) as e:
            log.warning('%s: interval %d-%d not recognised: %s', video['path'], r['start'], r['end'], e)
            continue
        r['label'] = p['label']
        r.update({f'p_{c}': p[f'p_{c}'] for c in config.CLASSES})
    return found


def record(video, r):
    """The output dict of one interval: frame numbers and seconds of start, apex and end, kind, label."""
    fps = video['fps']
    out = dict(path=video['path'], **{k: number(video, r[k]) for k in ('start', 'apex', 'end')},
               **{f'{k}_s': round(r[k] / fps, 3) for k in ('start', 'apex', 'end')}, kind=r['kind'],
               score=round(r['score'], 4))
    out.update({k: v for k, v in r.items() if k == 'label' or k.startswith('p_')})
    return out


def line(rec):
    """'path start apex end start_s apex_s end_s kind [label p_negative p_positive p_surprise]'."""
    parts = [rec['path'], str(rec['start']), str(rec['apex']), str(rec['end']), f'{rec["start_s"]:.3f}',
             f'{rec["apex_s"]:.3f}', f'{rec["end_s"]:.3f}', rec['kind']]
    if 'label' in rec:
        parts += [rec['label'], *(f'{rec[f"p_{c}"]:.4f}' for c in config.CLASSES)]
    return ' '.join(parts)


# ----------------------------------------------------------------------------------------------- the figure
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
        ax.plot(t, v, lw=0.8, color='k', label='motion')
        if np.isfinite(shown['threshold']):
            ax.axhline(shown['threshold'], color='r', lw=0.8, ls='--', label='threshold')
        gone = curve['seg'] < 0
        if gone.any():
            ax.fill_between(t, 0, top * 1.6, where=gone, color='0.9', step='mid', label='no face')
        for tr in video['truths']:
            ax.plot([tr['start'] / video['fps'], tr['end'] / video['fps']], [-0.06 * top] * 2, lw=5,
                    color='tab:orange' if tr['kind'] == 'micro' else 'tab:blue', alpha=0.5, solid_capstyle='butt')
        apexes = frame_at(video, [r['apex'] for r in found]) if found else {}
        for r in found:
            colour = 'tab:orange' if r['kind'] == 'micro' else 'tab:blue'
            ax.axvspan(r['start'] / video['fps'], (r['end'] + 1) / video['fps'], color=colour, alpha=0.3)
            text = r['kind'] + (f' {r["label"]}' if 'label' in r else '')
            ax.text(r['apex'] / video['fps'], top * 1.05, text, ha='center', fontsize=8)
            img = apexes.get(r['apex'])
            if img is not None:
                h = 60
                thumb = cv2.cvtColor(cv2.resize(img, (max(1, img.shape[1] * h // img.shape[0]), h),
                                                interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                ax.add_artist(AnnotationBbox(OffsetImage(thumb, zoom=0.6), (r['apex'] / video['fps'], top * 1.35),
                                             frameon=False))
        ax.set_ylim(-0.12 * top, top * 1.6)
        ax.set_xlim(0, video['n'] / video['fps'])
        ax.set_xlabel('seconds')
        ax.set_ylabel('motion (px)')
        truth = ' (bars below: true intervals)' if video['truths'] else ''
        ax.set_title(f'{Path(video["path"]).name}: {len(found)} intervals{truth}', fontsize=9)
        ax.legend(loc='upper right', fontsize=7)
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


def run(a):
    """`mer.py spot`: spots every video, prints a line (or JSON) per interval, scores and draws where asked."""
    from data import long_releases
    from video import predict
    fig = predict.figure_path(a.figure)
    settings = dict(method=a.method)
    net = cfg = None
    if a.model:
        net, cfg, _ = predict.load(a.model, stabilise=True, quiet=a.quiet)
    if a.demo:
        from data import synth
        videos = long_releases.load_long(synth.build_long(a.demo_root))
    elif a.data:
        videos = long_releases.load_long(a.data)
    else:
        videos = [open_video(p, a.fps) for p in a.paths]     # every path checked before any long work
    t0, n_frames, rows, results = time.time(), 0, [], {}
    for video in videos:
        found, shown, curve = spot_video(video, settings, a.quiet)
        if net is not None:
            recognise(video, found, net, cfg)
        n_frames += video['n']
        rows.append((video, found, shown, curve))
        key = f'{video.get("dataset", "video")}/{video["name"]}' if 'dataset' in video else video['path']
        results[key] = (found, video['truths'])
        for r in found:
            rec = record(video, r)
            print(json.dumps(rec) if a.json else line(rec), flush=True)
    took = time.time() - t0
    log.info('%d video%s, %d frames, spotted in %.1f s (%.1f frames/s)', len(videos), 's' * (len(videos) > 1),
             n_frames, took, n_frames / max(took, 1e-9))
    if any(v['truths'] for v in videos):
        labelled = [(f, t) for f, t in results.values()]
        for found, truths in labelled:          # STR reads the prediction as a class index
            for r in found:
                if 'label' in r:
                    r['pred'] = config.CLASSES.index(r['label'])
        scores = scoring.score(results)
        strs = scoring.str_score(scores) if net is not None else None
        if a.json:
            print(json.dumps(dict(scores={k: v for k, v in scores.items() if k != 'pairs'}, str=strs)))
        else:
            print(score_table(scores, strs))
    if fig is not None:
        save_figure(fig, rows)
        log.info('timeline saved to %s', fig)
    return 0
