"""`mer.py spot`'s command line: its flags, the spotter's settings among them (intervals.FLAGS), and its sources
checked before any work."""
import argparse
from pathlib import Path

from engine.cli import part_of, ranged, short_errors
from video.intervals import FLAGS, NONE_AT_ZERO, SPOTTING


def spot_parser():
    """`mer.py spot`'s parser."""
    p = argparse.ArgumentParser(prog='mer.py spot', description='Spot every micro- and macro-expression interval in '
                                'long videos (and recognise each with --model): prints "path onset apex offset onset_s '
                                'apex_s offset_s kind [label p_negative p_positive p_surprise] [untrusted]" per '
                                'interval; with '
                                '--demo or --data, the MEGC spotting scores too.')
    p.add_argument('paths', nargs='*', metavar='PATH', help='a video (mp4, avi, mov; read with OpenCV) or a folder '
                   'of numbered frames (give --fps)')
    p.add_argument('--demo', action='store_true', help='spot and score the long-video demo (built once: CAS(ME)^2 '
                   'and SAMM Long Videos layouts)')
    p.add_argument('--demo-root', default='demo_long', help='where the long-video demo is written (default '
                   '%(default)s)')
    p.add_argument('--data', help='folder holding CAS(ME)^2 (CAS(ME)^2code_final.xlsx, rawpic/) and/or SAMM Long '
                   'Videos (SAMM_LongVideos_V3_Release.xlsx, SAMM_longvideos/): spot and score them')
    p.add_argument('--model', help='model.pt written by mer.py --save-model: each interval gets its class')
    p.add_argument('--fps', type=ranged(float, above=0), help="frame rate (default: the video's own; required for a "
                   'folder of frames)')
    p.add_argument('--method', choices=('mdmd2', 'baseline'), default='mdmd2', help='mdmd2: the two-sided MDMD '
                   'spotter (default); baseline: the MEGC 2020 baseline as published (docs/spotting.md)')
    p.add_argument('--camera', type=ranged(int, 0), metavar='N', help='spot a live camera (OpenCV\'s index N) as '
                   'frames arrive; each interval is printed a few seconds after it ends; Ctrl-C ends it, keeping what '
                   'was found (a stream\'s URL, e.g. rtsp://..., given as PATH is read live too)')
    p.add_argument('--live', action='store_true', help='read each video file at its own frame rate, as a camera '
                   'delivers it (frames are dropped when the work falls behind)')
    p.add_argument('--buffer-s', type=ranged(float, above=0), default=8.0, help='with --model: seconds of frames kept '
                   'to recognise an interval when it settles (its start to its apex must lie within them; memory: '
                   'this many seconds of frames) (default %(default)s)')
    p.add_argument('--part', default='1/1', help='with --data or --demo: spot video i, i + n, ... of the n parts, '
                   'e.g. 3/40 (one part per job of a cluster array; --merge joins their --out files)')
    p.add_argument('--merge', nargs='+', metavar='FILE', help='join the --out files of earlier runs into --out (and '
                   'score them with --data or --demo) instead of spotting')
    p.add_argument('--out', help='write the intervals to this file (.csv, or .jsonl for JSON lines): MEGC\'s columns '
                   'video, onset, offset, kind, then apex, seconds, label and probabilities, with the command and the '
                   'model\'s provenance (docs/spotting.md)')
    p.add_argument('--json', action='store_true', help='one JSON object per interval (and the scores) instead of '
                   'lines of text')
    p.add_argument('--figure', help='save a timeline of every video (motion, threshold, intervals, apex frames, true '
                   'intervals when known) to this PNG')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar, warnings only')
    t = p.add_argument_group('the spotter\'s settings (video/intervals.py, docs/spotting.md)')
    for key, flag, text in FLAGS:
        t.add_argument(flag, dest=key, type=ranged(type(SPOTTING[key]), **({'min': 0} if key in NONE_AT_ZERO else
                                                                         {'above': 0})),
                       metavar='S' if key.endswith('_s') else 'X', help=f'{text} (default {SPOTTING[key]})')
    return short_errors(p)


def parse_spot(argv):
    """`mer.py spot`'s namespace, its sources checked."""
    p = spot_parser()
    a = p.parse_args(argv)
    a.argv = ['spot', *argv]
    preset = [x for x in a.paths if x in ('quick', 'hard') and not Path(x).exists()]
    if a.demo and preset:
        p.error(f'--demo takes no preset here: the long-video demo is one set ("{preset[0]}" is a preset of the '
                f'clip demo, mer.py --demo {preset[0]}); run mer.py spot --demo')
    if sum(map(bool, (a.paths, a.demo, a.data, a.camera is not None))) != 1 and not a.merge:
        given = [f'{len(a.paths)} video path{"s" * (len(a.paths) > 1)}'] * bool(a.paths) + ['--demo'] * a.demo + \
            ['--data'] * bool(a.data) + ['--camera'] * (a.camera is not None)
        p.error('give one source of video: video paths, --camera N, --demo, or --data DIR' +
                (f' (given: {" and ".join(given)})' if given else ''))
    if a.merge and (a.paths or a.camera is not None):
        p.error('--merge joins --out files: give it with --out (and --data or --demo to score), without videos')
    if a.live and not a.paths:
        p.error('--live reads video files at their own rate: give their paths')
    a.part = part_of(p, '--part', a.part, '3/40')
    if a.part != (1, 1) and not (a.data or a.demo):
        p.error('--part splits the videos of --data or --demo; give your own videos to each job instead')
    return a
