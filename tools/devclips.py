"""The spotter's development set: real recordings from several public sources, annotated by eye
(docs/devclips/<source>.json), on which every setting of the spotter is chosen by leave-one-source-out.

    python -m tools.devclips fetch [--repos DIR]        # the clips, checked by sha256, into ../devclips
    python -m tools.devclips score [--figures docs/devclips] [--json F] [--baseline] [--truth first]
    python -m tools.devclips agree [--json F]           # two annotators against each other, and the spotter

`fetch` reads each clip from its repository at the annotated commit (a zip's member, or a zip's folder of frames
made into an mp4 as it was annotated): from a clone under --repos (`owner+name` or `owner/name`, bare or not) when
there is one, else it clones the repository there (git, network); each clip's sha256 is checked.
`score` tracks each clip once (the motion curves are cached in ../devclips/.curves, keyed by the tracker's code
and settings), then spots it under every candidate setting (GRID): for each source, its setting is chosen on the
other sources (less the clips of any person it shows too), which of GRID's settings to tune at all by their own
leave-one-source-out, then the best of those (choose). It prints, per source and overall, MEGC's spotting F1,
precision and recall of that leave-one-source-out spotter and of the defaults (SPOTTING), each as `mer.py spot`
gives its intervals (as they settle, intervals.replay; the grid is searched on the whole curve, whose F1 is shown
beside), with the overall figures' 95 % intervals over the clips drawn again within each source
(scoring.uncertainty), and the speech stretches found against the annotated ones; and draws each clip's timeline
with its annotations. --baseline adds MEGC 2020's baseline per source on the same clips (each clip tracked for it
once more, its own windows; cached likewise).
Every clip was annotated twice, by annotators who saw neither the other's annotation nor the spotter's output
(docs/devclips/second/), and the two reconciled by a third under written rules (docs/devclips/adjudicated/; the rules
in docs/devclips.md): `score` scores against that reconciled truth (--truth first: the first annotation alone).
`agree` scores the second annotation against the first by the same F1, beside the spotter against each, and each
annotator and the spotter against the reconciled truth: how far the annotations themselves agree.
"""
import argparse
import hashlib
import inspect
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

if not __package__:       # run as a file (python tools/devclips.py), the project's modules are not on the path
    sys.exit('run it as a module from the repository root: .venv/bin/python -m tools.devclips (or install the '
             'package: pip install -e .)')

ROOT = Path(__file__).resolve().parents[1]
ANNOTATIONS = ROOT / 'docs' / 'devclips'
SECOND = ANNOTATIONS / 'second'          # the same clips annotated again by another annotator (seconds)
ADJUDICATED = ANNOTATIONS / 'adjudicated'       # the first and the second reconciled by a third (seconds)
DEFAULT_DIR = ROOT.parent / 'devclips'
# The settings chosen by leave-one-source-out, with the values tried: each is read only after tracking (spot's),
# so a clip is tracked once; a fold tunes only those whose tuning wins on its sources (choose). The motion's
# threshold (k) and speech_held were ties on this set with the motion's intervals off (head_still 0): they keep
# their defaults.
GRID = dict(smile_rise=(0.1, 0.15), open_rise=(0.2, 0.3, np.inf), brow_rise=(0.04, 0.05, 0.07, np.inf),
            press_rise=(0.03, 0.05, 0.08, np.inf), size_jump=(0.1, 0.15, 0.2, np.inf), face_valley=(0.5, 0.7),
            face_min_s=(0.3, 0.6), head_still=(0.0, 0.15, np.inf))


def sources():
    """{source: its annotation file's dict}, every docs/devclips/*.json; one whose annotation breaks a rule
    (problems) stops it, naming the file and the interval."""
    out = {}
    for path in sorted(ANNOTATIONS.glob('*.json')):
        out[path.stem] = json.loads(path.read_text())
        wrong = problems(out[path.stem])
        if wrong:
            raise SystemExit(f'{path}: {wrong[0]}' + (f' (and {len(wrong) - 1} more)' if len(wrong) > 1 else '') +
                             '; mend the annotation (docs/devclips.md says how clips are annotated)')
    return out


def problems(a):
    """What breaks the annotation rules in one source's annotation dict, a line each: its fields; each clip's
    sha256, rate and length; each interval inside the clip (frames from 0, both ends inclusive), its apex inside
    it, its kind (a micro-expression lasts at most 0.5 s at the rate it is spotted at, a macro-expression longer)
    and an expression's label; each untrusted stretch inside the clip."""
    wrong = [f'no "{k}"' for k in ('source', 'repo', 'commit', 'licence', 'origin', 'clips') if k not in a]
    if not re.fullmatch(r'[0-9a-f]{40}', str(a.get('commit', ''))):
        wrong.append('"commit" is not a 40-hex git commit')
    for name, c in a.get('clips', {}).items():
        missing = [k for k in ('path', 'sha256', 'fps', 'frames', 'person', 'intervals') if k not in c]
        if missing:
            wrong.append(f'{name}: no "{missing[0]}"')
            continue
        if not re.fullmatch(r'[0-9a-f]{64}', str(c['sha256'])):
            wrong.append(f'{name}: "sha256" is not 64 hex digits')
        wrong += clip_problems(name, c)
    return wrong


def clip_problems(name, c):
    """What breaks the rules in one clip's intervals and untrusted stretches (problems), a line each."""
    fps, frames = c.get('spot_fps') or c['fps'], c['frames']
    if not (fps > 0 and frames > 0):
        return [f'{name}: its rate and frame count must be positive']
    wrong = []
    for t in c['intervals']:
        at = f'{name}: {t.get("kind")} {t.get("onset")}-{t.get("offset")}'
        if t.get('kind') not in ('micro', 'macro', 'speech'):
            wrong.append(f'{at}: the kind is micro, macro or speech')
        elif not 0 <= t['onset'] <= t['offset'] < frames:
            wrong.append(f'{at}: not within the clip\'s frames 0-{frames - 1}')
        elif t['kind'] != 'speech':
            seconds = (t['offset'] - t['onset'] + 1) / fps
            if (t['kind'] == 'micro') != (seconds <= 0.5 + 1e-9):
                wrong.append(f'{at}: {seconds:.2f} s is a {"micro" if seconds <= 0.5 else "macro"}-expression')
            if not t['onset'] <= t.get('apex', t['onset']) <= t['offset']:
                wrong.append(f'{at}: the apex {t["apex"]} lies outside it')
            if t.get('label') not in ('positive', 'negative', 'surprise', 'other'):
                wrong.append(f'{at}: the label is positive, negative, surprise or other')
    for u in c.get('untrusted') or []:
        if not 0 <= u[0] <= u[1] < frames:
            wrong.append(f'{name}: untrusted {u[0]}-{u[1]}: not within the clip\'s frames 0-{frames - 1}')
    return wrong


def clips(folder=DEFAULT_DIR, truth='first'):
    """[(source, name, path, annotation)] of every annotated clip; truth 'adjudicated': where the clip's two
    annotations were reconciled (ADJUDICATED), their reconciled intervals and untrusted stretches in place of the
    first's."""
    first = sources()
    again = seconds(first, ADJUDICATED) if truth == 'adjudicated' else {}
    out = []
    for src, a in first.items():
        for name, c in a['clips'].items():
            adj = again.get(src, {}).get('clips', {}).get(name)
            if adj is not None:
                c = dict(c, intervals=adj['intervals'], untrusted=adj.get('untrusted') or [])
            out.append((src, name, Path(folder) / src / name, c))
    return out


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_dir(repos, repo):
    """The git directory of a clone of `repo` under `repos` (owner+name or owner/name, a work tree or bare), or
    None."""
    for d in (repos / repo.replace('/', '+') / 'repo', repos / repo.replace('/', '+'), repos / repo):
        for g in (d / '.git', d):
            if (g / 'HEAD').is_file() and (g / 'objects').is_dir():
                return g
    return None


def blob(git, commit, path):
    """The bytes of a file in a repository at a commit; 'archive.zip:member' reads a member of a zip file."""
    import io
    import zipfile
    archive, _, member = path.partition(':')
    data = subprocess.run(['git', f'--git-dir={git}', 'show', f'{commit}:{archive}'], check=True,
                          capture_output=True).stdout
    if not member:
        return data
    z = zipfile.ZipFile(io.BytesIO(data))
    if '%' not in member:
        return z.read(member)
    # A folder of numbered JPEG frames (the annotation says at what rate): made into an mp4 as it was annotated,
    # with OpenCV's mpeg4 encoder.
    import cv2
    pattern, fps = member.split(' ')[0], float(member.split(' at ')[1].split(' fps')[0])
    folder = pattern.rsplit('/', 1)[0]
    names = sorted(n for n in z.namelist() if n.startswith(folder + '/') and n.endswith('.jpg'))
    frames = [cv2.imdecode(np.frombuffer(z.read(n), np.uint8), cv2.IMREAD_COLOR) for n in names]
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / 'clip.mp4'
        w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*'mp4v'), fps, frames[0].shape[1::-1])
        for f in frames:
            w.write(f)
        w.release()
        return out.read_bytes()


def clone(repos, repo):
    """git_dir's clone of `repo` under `repos`, cloned there (bare, git, network) where there is none."""
    git = git_dir(Path(repos), repo)
    if git is None:
        git = Path(repos) / repo.replace('/', '+')
        subprocess.run(['git', 'clone', '--bare', '--filter=blob:none', f'https://github.com/{repo}', str(git)],
                       check=True)
    return git


def fetch(folder, repos):
    folder, repos = Path(folder), Path(repos)
    for src, a in sources().items():
        git = clone(repos, a['repo'])
        for name, c in a['clips'].items():
            out = folder / src / name
            if out.is_file() and sha256(out) == c['sha256']:
                continue
            data = blob(git, a['commit'], c['path'])
            if hashlib.sha256(data).hexdigest() != c['sha256']:
                if '%' not in c['path']:
                    raise SystemExit(f'{src}/{name}: its sha256 differs from the annotated clip\'s; the annotations do '
                                     'not apply to it')
                print(f'{src}/{name}: made from the same JPEG frames by another OpenCV build than the annotated '
                      'one (its sha256 differs): the annotations apply, its scores may differ a little')
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            print(f'{out}: {len(data)} bytes')
    return 0


def track_key(settings):
    """What the cached curves depend on: the tracker's code and the settings it reads."""
    from video import emotion, intervals
    code = ''.join(inspect.getsource(f) for f in (
        intervals.track, intervals.rigid_fit, intervals._head_basis, intervals.depth, intervals.region_mdmd,
        intervals.top_third, intervals.mouth_motion, intervals.mouth_boxes, intervals.cells, intervals.small_face,
        intervals.skull_mask, intervals.nearest, intervals.at_rest, intervals.face_shape, intervals.face_box,
        intervals.landmarks_at, intervals.emotion_at, emotion)) + sha256(emotion.WEIGHTS)
    s = {k: v for k, v in dict(intervals.SPOTTING, **settings).items() if k in intervals.TRACKED}
    return hashlib.sha256((code + json.dumps(s, sort_keys=True) + json.dumps(intervals.FLOW)).encode()).hexdigest()[:16]


def curve_of(path, settings, cache, fps=None):
    """intervals.motion's curve of a clip, from the cache when the tracker and its settings are unchanged; fps: the
    rate its frames were taken at where its file states another (the annotation's spot_fps, as `mer.py spot --fps`)."""
    from tools.realclips import read
    from video import intervals
    at = f'.{fps:g}fps' if fps else ''
    f = Path(cache) / f'{path.parent.name}+{path.name}{at}.{track_key(settings)}.npz'
    if f.is_file():
        z = np.load(f, allow_pickle=True)
        return z['curve'].item()
    frames, stated = read(path)
    fps = fps or stated
    curve = intervals.motion(iter(frames), fps, path.name, settings)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(f, curve=np.array(curve, dtype=object))
    return curve


def truths(c, kinds=('micro', 'macro'), sure=False):
    """The clip's annotated intervals of these kinds as scoring takes them; sure: only those its annotator did not
    mark uncertain."""
    return [dict(start=t['onset'], end=t['offset'], kind=t['kind']) for t in c['intervals']
            if t['kind'] in kinds and not (sure and t.get('uncertain'))]


def sure_counts(spots, c):
    """(TP, FP, FN) of one clip's spots against the truths its annotator was sure of, the uncertain ones scored as
    PASCAL VOC scores its 'difficult' objects: a spot that matches no sure truth but matches an uncertain one (MEGC's
    matching, one to one within each kind) is neither a true nor a false one, and an uncertain truth missed is no
    miss."""
    from video import scoring
    unsure = [dict(start=t['onset'], end=t['offset'], kind=t['kind']) for t in c['intervals']
              if t['kind'] in scoring.KINDS and t.get('uncertain')]
    sure, kept = truths(c, sure=True), []
    for kind in scoring.KINDS:
        mine = [x for x in spots if x['kind'] == kind]
        hit = {i for i, _, _ in scoring.match(mine, [t for t in sure if t['kind'] == kind])}
        rest = [x for i, x in enumerate(mine) if i not in hit]
        excused = {i for i, _, _ in scoring.match(rest, [t for t in unsure if t['kind'] == kind])}
        kept += [x for i, x in enumerate(mine) if i in hit] + [x for i, x in enumerate(rest) if i not in excused]
    return counts(scoring.score({'clip': (kept, sure)}))


def counts(result, kind='overall'):
    s = result[kind]
    return np.array([s['tp'], s['fp'], s['fn']])


def f1(c):
    from video import scoring
    return float(scoring.pooled_f1(c))


def auc(score, positive):
    """ROC AUC: the chance that a positive frame scores above a negative one (ties count half), from ranks."""
    from scipy.stats import rankdata
    r = rankdata(score)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def spot_all(curves, settings, unjudged, settled=False):
    """{(source, name): (expression intervals scored, speech intervals)} under one setting; `unjudged`: each clip's
    stretches that cannot be judged (realclips.scored). settled: the intervals `mer.py spot` gives as they settle
    (intervals.replay), not those of the whole curve at once (intervals.spot, 20 times faster: the grid's)."""
    from tools.realclips import scored
    from video import intervals
    out = {}
    for key, curve in curves.items():
        found = intervals.replay(curve, settings) if settled else intervals.spot(curve, settings)[0]
        out[key] = (scored(found, [(a, b) for a, b, *_ in unjudged.get(key, [])]),
                    [r for r in found if r['kind'] == 'speech'])
    return out


def choosers(annotated, src):
    """The clips a source's setting is chosen on ({(source, name): annotation}): every other source's, less those of
    a person who is also in `src` (the same speaker's footage re-shipped by another repository would let the choice
    see the source it is scored on)."""
    people = {c['person'] for (s, _), c in annotated.items() if s == src}
    return [key for key, c in annotated.items() if key[0] != src and c['person'] not in people]


def subgrids(grid):
    """[(names, rows)]: for every subset of GRID's settings, fewest first, the indices of the settings of `grid`
    that tune only those, the others at their defaults (SPOTTING)."""
    from video import intervals
    names = list(GRID)
    at = np.array([[g[n] == intervals.SPOTTING[n] for n in names] for g in grid]).reshape(len(grid), len(names))
    subsets = [x for r in range(len(names) + 1) for x in itertools.combinations(range(len(names)), r)]
    return [([names[i] for i in x], np.flatnonzero(at[:, [i for i in range(len(names)) if i not in x]].all(1)))
            for x in subsets]


def choose(per, annotated, src, subs):
    """The index of the setting a source's figure comes from, chosen on the clips its setting is chosen on
    (choosers): per (settings, clips, 3), each setting's (TP, FP, FN) on each clip of `annotated`, in its order.
    First which of the settings to tune at all, the others at their defaults (subs, subgrids: [(names, rows)]): the
    subset whose own leave-one-source-out over those clips (each of their sources' setting chosen on the rest,
    choosers again) scores best, the first of equals (the fewest tuned: on this set a fold's choice follows noise
    more than it brings; the whole grid at once scored below its defaults); then the best among the settings that
    tune only those, the first of equals."""
    from video.scoring import pooled_f1
    index = {k: i for i, k in enumerate(annotated)}

    def summed(clips):                          # per setting, the counts over these clips
        return per[:, [index[k] for k in clips]].sum(1)

    mine = choosers(annotated, src)
    pool = {k: annotated[k] for k in mine}
    inner = [(summed([k for k in pool if k[0] == s]), pooled_f1(summed(choosers(pool, s))))
             for s in sorted({s for s, _ in pool})]
    loso = [pooled_f1(sum(own[rows[np.argmax(f[rows])]] for own, f in inner)) for _, rows in subs]
    rows = subs[int(np.argmax(loso))][1]
    return int(rows[np.argmax(pooled_f1(summed(mine))[rows])])


def losses(found, annotated):
    """Where a spotter's figure is lost, over the clips of `found` ({(source, name): (expression intervals scored,
    speech intervals)}, spot_all's) against `annotated` ({(source, name): annotation}), matched as the figure is
    (MEGC's: one to one, within each kind, IoU >= 0.5): 'truths', {condition: {value: [found, of]}} with the
    conditions 'talking' (more than half of it inside an annotated speech stretch: 'while talking', or 'silent'),
    'kind', 'label' and 'sure' ('sure', or 'uncertain' as its annotator marked it); 'missed', each truth not found
    by what the spots over it were ('nothing over it', 'boundaries': overlapping it at IoU < 0.5, 'kind or taken':
    IoU >= 0.5 but of the other kind, or matched to another truth); 'false', each spot that found nothing, likewise
    ('over nothing', 'boundaries', 'kind or taken')."""
    from video import scoring
    out = dict(truths={c: {} for c in ('talking', 'kind', 'label', 'sure')},
               missed=dict.fromkeys(('nothing over it', 'boundaries', 'kind or taken'), 0),
               false=dict.fromkeys(('over nothing', 'boundaries', 'kind or taken'), 0))

    def why(x, others, none):
        best = max([scoring.iou((x['start'], x['end']), (o['start'], o['end'])) for o in others] + [0.0])
        return none if best == 0 else 'boundaries' if best < scoring.IOU_MIN else 'kind or taken'

    for key, (spots, _) in found.items():
        c = annotated[key]
        true, talk = truths(c), truths(c, ('speech',))
        pairs = scoring.score({key[1]: (spots, true)})['pairs']
        hit_t, hit_s = [id(t) for _, _, t in pairs], [id(x) for _, x, _ in pairs]
        for t, raw in zip(true, [t for t in c['intervals'] if t['kind'] in scoring.KINDS]):
            n = t['end'] - t['start'] + 1
            said = sum(max(0, min(t['end'], x['end']) - max(t['start'], x['start']) + 1) for x in talk)
            values = dict(talking='while talking' if said > n / 2 else 'silent', kind=t['kind'],
                          label=raw.get('label', 'none'), sure='uncertain' if raw.get('uncertain') else 'sure')
            for cond, value in values.items():
                tally = out['truths'][cond].setdefault(value, [0, 0])
                tally[0] += id(t) in hit_t
                tally[1] += 1
            if id(t) not in hit_t:
                out['missed'][why(t, spots, 'nothing over it')] += 1
        for x in spots:
            if id(x) not in hit_s:
                out['false'][why(x, true, 'over nothing')] += 1
    return out


def print_losses(lost, titles):
    """losses' results side by side (one per title), as a table and two lines."""
    print('\n| truths found | ' + ' | '.join(titles) + ' |\n|---|' + '---|' * len(titles))
    for cond in lost[0]['truths']:
        for value in sorted(lost[0]['truths'][cond]):
            print(f'| {cond}: {value} | ' + ' | '.join(f'{x["truths"][cond][value][0]} / {x["truths"][cond][value][1]}'
                                                   for x in lost) + ' |')
    for part, what in (('missed', 'truths missed'), ('false', 'false spots')):
        print(f'{what}: ' + '; '.join(f'{t}: ' + ', '.join(f'{k} {v}' for k, v in x[part].items())
                                     for t, x in zip(titles, lost)))


def speech_counts(found, truth):
    """(TP, FP, FN) of speech intervals `found` against `truth` (dicts as truths() gives them), matched one to one
    at IoU ≥ 0.5 as MEGC matches expressions."""
    from video import scoring
    m = scoring.match(found, truth)
    return np.array([len(m), len(found) - len(m), len(truth) - len(m)])


def baseline_counts(todo, cache, unjudged):
    """{source: (TP, FP, FN)} of MEGC 2020's baseline (`mer.py spot --method baseline`) on the clips `todo`
    [(source, name, path, annotation)], each tracked for it (its windows K differ from the spotter's) and spotted on
    the whole curve; `unjudged` as spot_all's."""
    from video import scoring
    out = {}
    for src, name, path, c in todo:
        curve = curve_of(path, {'method': 'baseline'}, cache, c.get('spot_fps'))
        found = spot_all({(src, name): curve}, {'method': 'baseline'}, unjudged)[src, name][0]
        out[src] = out.get(src, 0) + counts(scoring.score({name: (found, truths(c))}))
    return out


def score(folder, figures=None, out_json=None, baseline=False, truth='adjudicated'):
    from video import intervals, longvideo, scoring
    cache = Path(folder) / '.curves'
    todo = [x for x in clips(folder, truth)]
    missing = [str(p) for _, _, p, _ in todo if not p.is_file()]
    if missing:
        raise SystemExit(f'{missing[0]} (and {len(missing) - 1} more) not found: python -m tools.devclips fetch')
    curves = {}
    for src, name, path, c in todo:
        curves[src, name] = curve_of(path, {}, cache, c.get('spot_fps'))
    annotated = {(src, name): c for src, name, _, c in todo}
    unjudged = {key: c.get('untrusted') or [] for key, c in annotated.items()}
    names = sorted({src for src, _ in curves})
    grid = [dict(zip(GRID, v)) for v in itertools.product(*GRID.values())]
    per = []              # per setting, per clip of annotated (in its order): counts
    for g in grid:
        found = spot_all(curves, g, unjudged)
        per.append([counts(scoring.score({key[1]: (found[key][0], truths(annotated[key]))})) for key in annotated])
    per = np.array(per).reshape(len(grid), len(annotated), 3)
    # Each source's setting is chosen on the other sources' whole curves (their people's clips left out with it,
    # choosers), which settings to tune at all by their own leave-one-source-out (choose, subgrids); its figure is
    # what `mer.py spot` gives it under that setting, as the intervals settle.
    chosen, whole, subs = {}, {}, subgrids(grid)
    for src in names:
        best = choose(per, annotated, src, subs)
        chosen[src], whole[src] = grid[best], per[best, [key[0] == src for key in annotated]].sum(0)
    default = spot_all(curves, {}, unjudged, settled=True)
    rows, each, sure, settled = [], {}, {}, {}     # each: (source, name) -> (its counts left out, at the
    # defaults); sure: the same against the truths their annotators were sure of; settled: its spots left out
    for src in names:
        mine = {key: c for key, c in curves.items() if key[0] == src}
        found = spot_all(mine, chosen[src], unjudged, settled=True)
        settled.update(found)
        for s, n in mine:
            each[s, n] = [counts(scoring.score({n: (spots[s, n][0], truths(annotated[s, n]))}))
                          for spots in (found, default)]
            sure[s, n] = [sure_counts(spots[s, n][0], annotated[s, n]) for spots in (found, default)]
        c, d = sum(np.array(each[key]) for key in mine)         # MEGC's counts are sums over the videos
        rows.append((src, c, d, chosen[src], whole[src]))
    print('| source | clips | LOSO TP | FP | FN | precision | recall | F1 | F1 on the whole curve | defaults F1 | '
          'setting chosen without it |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for src, c, d, g, w in rows:
        tp, fp, fn = c
        n = sum(1 for s, _ in curves if s == src)
        print(f'| {src} | {n} | {tp} | {fp} | {fn} | {tp / max(tp + fp, 1):.3f} | {tp / max(tp + fn, 1):.3f} | '
              f'{f1(c):.3f} | {f1(w):.3f} | {f1(d):.3f} | {json.dumps(g)} |')
    total, dtotal, wtotal = (sum(r[i] for r in rows) for i in (1, 2, 4))
    print(f'| all | {len(curves)} | {total[0]} | {total[1]} | {total[2]} | {total[0] / max(total[:2].sum(), 1):.3f} | '
          f'{total[0] / max(total[0] + total[2], 1):.3f} | {f1(total):.3f} | {f1(wtotal):.3f} | {f1(dtotal):.3f} | |')
    # How far the figures could move on other clips like these: the clips resampled within each source.
    u = scoring.uncertainty(np.array(list(each.values())).transpose(1, 0, 2), [s for s, _ in each])
    print(f'\n95 % interval over the clips resampled within each source (1000 draws): leave-one-source-out F1 '
          f'{u["f1"][0]:.3f} [{u["interval"][0][0]:.3f}, {u["interval"][0][1]:.3f}], defaults {u["f1"][1]:.3f} '
          f'[{u["interval"][1][0]:.3f}, {u["interval"][1][1]:.3f}]; the first less the second {u["difference"]:+.3f} '
          f'[{u["difference_interval"][0]:+.3f}, {u["difference_interval"][1]:+.3f}], ahead in '
          f'{100 * u["ahead"]:.0f} % of the draws')
    base = baseline_counts(todo, cache, unjudged) if baseline else {}
    if base:
        print('\n| source | MEGC 2020 baseline TP | FP | FN | F1 |\n|---|---|---|---|---|')
        for src in names + ['all']:
            b = base[src] if src != 'all' else sum(base.values())
            print(f'| {src} | {b[0]} | {b[1]} | {b[2]} | {f1(b):.3f} |')
    # Where the figure is lost: against the truths the annotators were sure of, the uncertain ones neither found
    # nor missed (sure_counts).
    sc, sd = np.sum(list(sure.values()), axis=0)
    n_sure = sum(len(truths(a, sure=True)) for a in annotated.values())
    n_all = sum(len(truths(a)) for a in annotated.values())
    precision, recall, _ = scoring.f1(*sc)
    print(f'\nagainst the {n_sure} truths their annotators were sure of (the {n_all - n_sure} uncertain ones neither '
          f'found nor missed, as PASCAL VOC scores its difficult objects): leave-one-source-out TP {sc[0]} FP {sc[1]} '
          f'FN {sc[2]}, precision {precision:.3f}, recall {recall:.3f}, F1 {f1(sc):.3f}; defaults TP {sd[0]} FP '
          f'{sd[1]} FN {sd[2]}, F1 {f1(sd):.3f}')
    # Which truths are found and which not, and why the spots that found nothing did not.
    lost = [losses(settled, annotated), losses(default, annotated)]
    print_losses(lost, ['leave-one-source-out', 'defaults'])
    # Speech: found against annotated, and expressions reported on clips of pure talking.
    sp, pure_fp, pure = np.zeros(3, int), 0, 0
    for (s, n), (expr, speech) in default.items():
        t = truths(annotated[s, n], ('speech',))
        sp += speech_counts(speech, t)
        if t and not truths(annotated[s, n]):
            pure += 1
            pure_fp += len(expr)
    print(f'\nspeech (defaults): TP {sp[0]} FP {sp[1]} FN {sp[2]}, F1 {f1(sp):.3f}; expressions reported on the '
          f'{pure} clips of talking without expression: {pure_fp}')
    # Frame by frame, threshold-free: how well each curve ranks the annotated expression frames above the others.
    aucs = {'landmarks\' departure': [], 'motion\'s departure from rest': []}
    for key, curve in curves.items():
        pos, judged = curve['pos'], curve['seg'] >= 0
        y = np.zeros(len(pos), bool)
        for t in truths(annotated[key]):
            y |= (pos >= t['start']) & (pos <= t['end'])
        for a, b, *_ in unjudged[key]:
            judged &= ~((pos >= a) & (pos <= b))
        if 0 < y[judged].sum() < judged.sum():
            aucs['landmarks\' departure'].append(auc(intervals.expressions(curve, intervals.SPOTTING)[1][judged],
                                                      y[judged]))
            aucs['motion\'s departure from rest'].append(auc(np.asarray(curve['held'])[judged], y[judged]))
    print(f'frame by frame, ROC AUC within each of the {len(next(iter(aucs.values())))} clips holding both expression '
          'and rest (median, lowest, clips at 0.7 or more): ' +
          '; '.join(f'{k} {np.median(v):.2f}, {np.min(v):.2f}, {int((np.array(v) >= 0.7).sum())}'
                    for k, v in aucs.items()))
    print('\n| clip | truth | spotted (defaults) |\n|---|---|---|')
    for (s, n), (expr, speech) in default.items():
        t = ', '.join(f'{x["onset"]}-{x["offset"]} {x["kind"]}' for x in annotated[s, n]['intervals'])
        said = ', '.join(f'{r["start"]}-{r["end"]} {r["kind"]}' + ('' if r.get('trusted', True) else '?')
                         for r in expr + speech)
        print(f'| {s}/{n} | {t} | {said or "none"} |')
    if figures:
        Path(figures).mkdir(parents=True, exist_ok=True)
        for (s, n), curve in curves.items():
            found, (_, shown) = intervals.replay(curve, {}), intervals.spot(curve, {})
            c = annotated[s, n]
            video = dict(path=n, name=n, files=None, fps=curve['fps'] * curve['step'],
                         truths=truths(c) + truths(c, ('speech',)))
            longvideo.save_figure(Path(figures) / f'{s}+{Path(n).stem}.png', [(video, found, shown, curve)])
    if out_json:
        Path(out_json).write_text(json.dumps(dict(
            loso={src: dict(counts=c.tolist(), f1=f1(c), whole_curve=w.tolist(), chosen=g) for src, c, _, g, w in rows},
            overall=dict(counts=total.tolist(), f1=f1(total), whole_curve_f1=f1(wtotal), defaults_f1=f1(dtotal),
                         interval=u['interval'][0], defaults_interval=u['interval'][1],
                         difference=u['difference'], difference_interval=u['difference_interval'],
                         ahead=u['ahead']),
            sure=dict(loso=sc.tolist(), loso_f1=f1(sc), defaults=sd.tolist(), defaults_f1=f1(sd)),
            speech=sp.tolist(), pure_talking_fp=pure_fp, lost=dict(loso=lost[0], defaults=lost[1]),
            **(dict(baseline={src: b.tolist() for src, b in base.items()}) if base else {})), indent=1))
    return 0


def seconds(first, folder=None):
    """{source: its annotation} from folder/*.json: a source's clips annotated again by another annotator who saw
    neither the first annotation nor the spotter's output (SECOND, the default), or the two reconciled by a third
    who saw both annotations but not the spotter's output (ADJUDICATED); the same rules (clip_problems) and only
    clips the first annotation `first` ({source: dict}, sources()) holds, at its rate and length. One that breaks
    that stops it, naming the file."""
    out = {}
    for path in sorted(Path(folder or SECOND).glob('*.json')):
        a = json.loads(path.read_text())
        src, wrong = path.stem, []
        if src not in first or not a.get('clips'):
            wrong.append(f'no source of that name in {ANNOTATIONS}' if src not in first else 'no "clips"')
        for name, c in a.get('clips', {}).items():
            known = first.get(src, {}).get('clips', {}).get(name)
            if known is None:
                wrong.append(f'{name}: no clip of that name in {ANNOTATIONS / (src + ".json")}')
                continue
            rate = known.get('spot_fps') or known['fps']
            # A rate written to fewer digits (23.976 for 23.976024) is the same rate.
            if c.get('frames') != known['frames'] or not np.isclose(c.get('spot_fps') or c.get('fps') or 0, rate,
                                                                    rtol=1e-4):
                wrong.append(f'{name}: its rate and length differ from the first annotation\'s '
                             f'({rate} fps, {known["frames"]} frames)')
            else:
                wrong += clip_problems(name, c)
        if wrong:
            raise SystemExit(f'{path}: {wrong[0]}' + (f' (and {len(wrong) - 1} more)' if len(wrong) > 1 else '') +
                             '; mend the annotation (docs/devclips.md says how clips are annotated)')
        out[src] = a
    return out


def agreement(spots, first, second):
    """For one clip, `spots` (intervals as spot gives them) and its two annotations' clip dicts: ((the second
    annotation against the first, the spots against the first, the spots against the second), (the second and the
    spots against the truths the first was sure of, sure_counts)), each (TP, FP, FN) by MEGC's matching. The spots
    and the second's expressions lying mostly in a stretch the first marks as one that cannot be judged are not
    scored (realclips.scored), as `score` scores the spotter; F1 is the same whichever annotation is taken as the
    truth (TP is, and FP and FN trade places)."""
    from tools.realclips import scored
    from video import scoring
    unjudged = [(a, b) for a, b, *_ in first.get('untrusted') or []]
    theirs, mine = scored(truths(second), unjudged), scored(spots, unjudged)
    return ((counts(scoring.score({'clip': (theirs, truths(first))})),
             counts(scoring.score({'clip': (mine, truths(first))})),
             counts(scoring.score({'clip': (mine, theirs)}))),
            (sure_counts(theirs, first), sure_counts(mine, first)))


def agree(folder, out_json=None):
    """How far two annotators agree, by the F1 the spotter is scored with, on the clips annotated twice (seconds),
    beside the spotter at its defaults against each of them: what a figure of the spotter can be read against; and
    where the two were reconciled (ADJUDICATED), each of them and the spotter against that."""
    from video import intervals, scoring
    first = sources()
    second = seconds(first)
    if not second:
        raise SystemExit(f'no second annotation in {SECOND}')
    adjudicated = seconds(first, ADJUDICATED)
    cache, rows, each, groups, sp = Path(folder) / '.curves', [], [], [], np.zeros(3, int)
    sure = np.zeros((2, 3), int)      # the second's and the spotter's, against the truths the first was sure of
    both = []                         # per clip reconciled: its source, (the first, the second, the spotter) against it
    for src, a in second.items():
        per = np.zeros((3, 3), int)
        for name, c in a['clips'].items():
            known = first[src]['clips'][name]
            path = Path(folder) / src / name
            if not path.is_file():
                raise SystemExit(f'{path} not found: python -m tools.devclips fetch')
            spots = intervals.replay(curve_of(path, {}, cache, known.get('spot_fps')), {})
            x, y = (np.array(z) for z in agreement(spots, known, c))
            sure += y
            per += x
            each.append(x)
            groups.append(src)
            sp += speech_counts(truths(c, ('speech',)), truths(known, ('speech',)))
            adj = adjudicated.get(src, {}).get('clips', {}).get(name)
            if adj is not None:
                (one, mine, _), _ = agreement(spots, adj, known)
                both.append((src, np.array([one, agreement(spots, adj, c)[0][0], mine])))
        rows.append((src, len(a['clips']), per))
    print('| source | clips | first annotator\'s expressions | second\'s | second against first: TP / FP / FN | F1 | '
          'spotter (defaults) against first | F1 | against second | F1 |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for src, n, (ab, sa, sb) in rows + [('all', sum(r[1] for r in rows), sum(r[2] for r in rows))]:
        print(f'| {src} | {n} | {ab[0] + ab[2]} | {ab[0] + ab[1]} | {" / ".join(map(str, ab))} | {f1(ab):.3f} | '
              f'{" / ".join(map(str, sa))} | {f1(sa):.3f} | {" / ".join(map(str, sb))} | {f1(sb):.3f} |')
    u = scoring.uncertainty(np.array(each)[:, [1, 0]].transpose(1, 0, 2), groups)
    print(f'\n95 % interval over the clips resampled within each source (1000 draws): the annotators\' F1 '
          f'{u["f1"][1]:.3f} [{u["interval"][1][0]:.3f}, {u["interval"][1][1]:.3f}], the spotter\'s against the first '
          f'{u["f1"][0]:.3f} [{u["interval"][0][0]:.3f}, {u["interval"][0][1]:.3f}]; the spotter less the annotators '
          f'{u["difference"]:+.3f} [{u["difference_interval"][0]:+.3f}, {u["difference_interval"][1]:+.3f}]; speech '
          f'stretches, second against first: TP {sp[0]} FP {sp[1]} FN {sp[2]}, F1 {f1(sp):.3f}')
    print(f'against the truths the first annotator was sure of (the uncertain ones neither found nor missed, '
          f'sure_counts): the second annotator TP {sure[0][0]} FP {sure[0][1]} FN {sure[0][2]}, F1 {f1(sure[0]):.3f}; '
          f'the spotter TP {sure[1][0]} FP {sure[1][1]} FN {sure[1][2]}, F1 {f1(sure[1]):.3f}')
    reconciled = {src: (sum(1 for s, _ in both if s == src), sum(x for s, x in both if s == src))
                  for src in dict(both)}
    if reconciled:
        print('\n| source | clips reconciled | adjudicated expressions | first against adjudicated: TP / FP / FN | F1 | '
              'second against adjudicated | F1 | spotter (defaults) against adjudicated | F1 |')
        print('|---|---|---|---|---|---|---|---|---|')
        rec = list(reconciled.items())
        for src, (n, (x, y, z)) in rec + [('all', (sum(v[0] for _, v in rec), sum(v[1] for _, v in rec)))]:
            print(f'| {src} | {n} | {x[0] + x[2]} | {" / ".join(map(str, x))} | {f1(x):.3f} | '
                  f'{" / ".join(map(str, y))} | {f1(y):.3f} | {" / ".join(map(str, z))} | {f1(z):.3f} |')
        x = np.array([c for _, c in both])
        v = scoring.uncertainty(x[:, [2, 0]].transpose(1, 0, 2), [s for s, _ in both])
        w = scoring.uncertainty(x[:, 1], [s for s, _ in both])
        print(f'\n95 % intervals, against the adjudicated (clips resampled within each source, 1000 draws): the first '
              f'annotator {v["f1"][1]:.3f} [{v["interval"][1][0]:.3f}, {v["interval"][1][1]:.3f}], the second '
              f'{w["f1"]:.3f} [{w["interval"][0]:.3f}, {w["interval"][1]:.3f}], the spotter {v["f1"][0]:.3f} '
              f'[{v["interval"][0][0]:.3f}, {v["interval"][0][1]:.3f}]; the spotter less the first annotator '
              f'{v["difference"]:+.3f} [{v["difference_interval"][0]:+.3f}, {v["difference_interval"][1]:+.3f}]')
    if out_json:
        Path(out_json).write_text(json.dumps(dict(
            {src: dict(clips=n, second=ab.tolist(), spotter_first=sa.tolist(), spotter_second=sb.tolist())
             for src, n, (ab, sa, sb) in rows}, annotators_interval=u['interval'][1], spotter_interval=u['interval'][0],
            difference=u['difference'], difference_interval=u['difference_interval'], speech=sp.tolist(),
            sure=dict(second=sure[0].tolist(), spotter=sure[1].tolist()),
            adjudicated={src: dict(clips=n, first=x.tolist(), second=y.tolist(), spotter=z.tolist())
                         for src, (n, (x, y, z)) in reconciled.items()}), indent=1))
    return 0


def main():
    p = argparse.ArgumentParser(prog='python -m tools.devclips', description=__doc__.split('\n')[0])
    p.add_argument('command', choices=('fetch', 'score', 'agree'))
    p.add_argument('--folder', default=str(DEFAULT_DIR), help='where the clips are (default %(default)s)')
    p.add_argument('--repos', default=str(DEFAULT_DIR / '.repos'), help='fetch: clones of the source repositories '
                   '(default %(default)s)')
    p.add_argument('--figures', help='score: write each clip\'s timeline (with its annotations) here')
    p.add_argument('--json', help='score, agree: also write the figures to this JSON file')
    p.add_argument('--truth', choices=('adjudicated', 'first'), default='adjudicated', help='score: the two '
                   'annotations of each clip reconciled (docs/devclips/adjudicated/), or the first alone, as scored '
                   'before 2026-12-07 (default %(default)s)')
    p.add_argument('--baseline', action='store_true', help='score: also MEGC 2020\'s baseline per source (each '
                   'clip tracked once more for it)')
    a = p.parse_args()
    import logging
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    if a.command == 'agree':
        return agree(a.folder, a.json)
    return fetch(a.folder, a.repos) if a.command == 'fetch' else score(a.folder, a.figures, a.json, a.baseline,
                                                                                a.truth)


if __name__ == '__main__':
    sys.exit(main())
