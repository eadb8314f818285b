"""The command lines: `mer.py` (Table I), `mer.py predict` and `mer.py spot`. Every Config field, and every field
of `Run` (how a run is carried out), is a flag of the same name (`evm_alpha` -> `--evm-alpha`; a boolean that
defaults on -> `--no-emr`, off -> `--stabilise`), with its help text, choices and range, so a new setting needs no
line here."""
import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from config import DEMO, PAPER, Config, setting


@dataclass(frozen=True)
class Run(Config):
    """A run's settings: the paper's (config.Config, every one of which decides the result) and how this run is
    carried out, which never changes a result, so that a resume or a merge may change it, and config.json and
    model.pt leave it out."""
    device: str = setting('auto', 'auto | cpu | cuda | cuda:N')
    jobs: int = setting(0, 'CPU: training processes (default one per core)', min=1)
    graphs: bool = setting(True, 'CUDA: train each fold\'s step as a CUDA graph (off: eagerly, as on CPU); a '
                           'capture that fails falls back to eager training by itself')
    streams: int = setting(0, 'CUDA: folds trained at once as CUDA graphs on their own streams (default 17)',
                           min=1)
    workers: int = setting(0, 'preprocessing processes (default one per core)', min=1)
    quiet: bool = setting(False, 'no progress bars, warnings only')
    checkpoint_every: float = setting(3.0, 'minutes between checkpoints of the folds in training, written at epoch '
                                      'ends (0: every epoch); a stop signal writes them at once', min=0)


def run_config(cfg=PAPER, **how):
    """The Run of the settings of `cfg` (a Config or a Run), with how the run is carried out changed by `how`."""
    return dataclasses.replace(Run(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}), **how)


# The groups the flags are shown in, each from its first field on (in config.py's order).
GROUPS = {'align_size': 'inputs (paper §III.A, §III.C; paper defaults)', 'parts': 'model (§III.B)',
          'epochs': 'training (§IV and the authors\' code)', 'device': 'running (never changes a result)'}


def ranged(kind, min=None, above=None, max=None):
    """An argparse type that parses `kind` and refuses values outside [min, max] (above: an open lower bound)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a{"n integer" if kind is int else " number"}')
        low = above if above is not None else min
        if v != v or (above is not None and v <= above) or (min is not None and v < min) or \
                (max is not None and v > max):
            bounds = f'{"(" if above is not None else "["}{"-inf" if low is None else low}, ' \
                     f'{"inf" if max is None else max}]'
            raise argparse.ArgumentTypeError(f'{text} is outside {bounds}')
        return v
    return parse


def device_name(text):
    """--device: auto, cpu, cuda or cuda:N; anything else refused by the parser, before torch loads."""
    if not re.fullmatch(r'auto|cpu|cuda(:\d+)?', text):
        raise argparse.ArgumentTypeError(f'{text!r} is not auto, cpu, cuda or cuda:N')
    return text


def short_errors(p):
    """Makes the parser's errors one line: the error, with the closest flag where one was mistyped, and where to
    find the flags (instead of the whole usage, dozens of lines for mer.py)."""
    import difflib

    def error(message):
        if message.startswith('unrecognized arguments: '):
            typos = [w.split('=')[0] for w in message.split(': ', 1)[1].split() if w.startswith('-')]
            near = {w: difflib.get_close_matches(w, [o for o in p._option_string_actions if o.startswith('--')], 1,
                                                 0.6) for w in typos}
            hints = [f'{w}: did you mean {m[0]}?' for w, m in near.items() if m]
            message += ('; ' + '; '.join(hints)) if hints else ''
        p.exit(2, f'{p.prog}: error: {message} ({p.prog} --help lists every flag)\n')
    p.error = error
    return p


def add_config_flags(p):
    """A flag for every Run field (Config's, then the run's); a flag not given is absent from the parsed namespace."""
    group = p
    for f in dataclasses.fields(Run):
        group = p.add_argument_group(GROUPS[f.name]) if f.name in GROUPS else group
        md, flag = f.metadata, '--' + f.name.replace('_', '-')
        kw = dict(dest=f.name, default=argparse.SUPPRESS)
        if isinstance(f.default, bool):
            names = [f'--no-{f.name.replace("_", "-")}' if f.default else flag] + ['-q'] * (f.name == 'quiet')
            group.add_argument(*names, action='store_false' if f.default else 'store_true',
                               help=f'turn off: {md["help"]}' if f.default else md['help'], **kw)
            continue
        if md['choices']:
            kw['choices'] = md['choices']
        elif f.name == 'device':
            kw['type'] = device_name
        elif type(f.default) in (int, float):
            kw['type'] = ranged(type(f.default), md['min'], md['above'], md['max'])
        default = '' if f.name in ('jobs', 'streams', 'workers') or f.default == '' else f' ({f.default!r})'
        group.add_argument(flag, help=md['help'] + default, **kw)


def config(a, preset=PAPER):
    """The Run of parsed flags: the preset with every flag given."""
    return run_config(preset, **{f.name: getattr(a, f.name) for f in dataclasses.fields(Run) if hasattr(a, f.name)})


def parser(doc=None):
    """`mer.py`'s parser: the data, what to run, where, and a flag per Config field; `doc` (mer.py's docstring)
    gives its description and, after its first line, the epilog."""
    doc = doc or 'A Neural Micro-Expression Recognizer: the whole method from one command.\n'
    p = argparse.ArgumentParser(prog='mer.py', description=doc.split('\n')[0], epilog=doc.partition('\n')[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group('data')
    src.add_argument('--data', help='MEGC2019 folder: combined_3class_gt.csv + CASME II, SAMM, SMIC-HS releases')
    src.add_argument('--ckplus', help='CK+ folder (cohn-kanade-images/, Emotion/): the macro source domain')
    src.add_argument('--index', help='your own sample list instead of --data (columns in docs/data.md)')
    changes = ', '.join(f'{k} {v}' for k, v in dataclasses.asdict(DEMO).items() if getattr(PAPER, k) != v)
    src.add_argument('--demo', nargs='?', const='quick', choices=('quick', 'hard'), help='build (once) and use the '
                     'embedded synthetic demo set, with the demo preset: ' f'{changes}; quick (default): a check that '
                     'every stage runs and learns; hard: micro motions near the flow\'s noise floor, camera noise, '
                     'JPEG and head shake, for comparing settings (docs/emr.md)')
    src.add_argument('--demo-root', help='where the demo set is written (default demo_data, or demo_hard for '
                     '--demo hard)')
    src.add_argument('--strict', action='store_true', help='an annotated frame missing on disk is an error')
    src.add_argument('--skip-bad', action='store_true', help='skip (and list) bad annotation rows, and samples whose '
                     'frames or face cannot be used, instead of failing')
    r = p.add_argument_group('what to run, and where')
    r.add_argument('--table', action='store_true', help='run every row of Table I (LBP-TOP first) and print them')
    r.add_argument('--method', choices=('partnet', 'lbptop'), default='partnet',
                   help='the neural method (default), or the MEGC2019 baseline LBP-TOP + linear SVM alone')
    r.add_argument('--weights', help="ResNet18 ImageNet weights (.pth); default: torchvision's cache, else download")
    r.add_argument('--out', help='run folder (default runs/<data>/<row>, e.g. runs/demo/part_adversarial_emr)')
    r.add_argument('--cache', default='.cache/features', help='feature cache folder (default %(default)s)')
    r.add_argument('--protocol', choices=('loso', 'hde'), default='loso', help="loso: leave one subject out of the "
                   "MEGC2019 composite (the paper's, default); hde: MEGC2018's held-out databases, train on two of "
                   'SMIC, CASME II and SAMM (and CK+), test on the third')
    r.add_argument('--seeds', help='run each row under several seeds, e.g. 0,1,2, each a full run in its own '
                   'sub-folder seed<N>; the table gives the mean ± sd over them (instead of --seed)')
    r.add_argument('--bootstrap', type=ranged(int, 100), default=1000, help='bootstrap draws of the 95 %% '
                   'intervals over subjects (default %(default)s)')
    r.add_argument('--folds', default='1/1', help='run shard i of n of the folds, e.g. 2/4; a later plain call merges')
    r.add_argument('--figure', help='save onset / apex / magnified apex / flow pictures of a few samples to this PNG')
    r.add_argument('--save-model', action='store_true', help='after the LOSO, train one model on every subject with '
                   "the row's settings and write it to the run folder as model.pt (what `mer.py predict` loads)")
    r.add_argument('--final-only', action='store_true', help='--save-model without the LOSO')
    r.add_argument('--plain', action='store_true', help='the method as mer.py\'s plain calls, in memory: no '
                   'feature cache, processes, CUDA graphs or run folder; the same predictions, slower')
    add_config_flags(p)
    return short_errors(p)


def part_of(p, flag, text, example):
    """(i, n) of an 'i/n' flag with 1 <= i <= n, or the parser's error naming the flag."""
    try:
        i, n = map(int, text.split('/'))
        assert 1 <= i <= n
        return i, n
    except (ValueError, AssertionError):
        p.error(f'{flag} {text}: expected i/n with 1 <= i <= n, e.g. {example}')


def parse_args(argv=None, doc=None):
    """(argparse namespace, Run): the flags checked, and the one configuration built from them."""
    p = parser(doc)
    a = p.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)       # named in the run log
    if not (a.data or a.index or a.demo):
        p.error('give --data ./megc (with --ckplus ./ck), --index list.csv, or --demo')
    a.shard = part_of(p, '--folds', a.folds, '1/4')
    a.demo_root = a.demo_root or ('demo_hard' if a.demo == 'hard' else 'demo_data')
    a.seed_list = None
    if a.seeds is not None:
        try:
            a.seed_list = [int(t) for t in a.seeds.split(',')]
            assert a.seed_list and min(a.seed_list) >= 0 and len(set(a.seed_list)) == len(a.seed_list)
        except (ValueError, AssertionError):
            p.error(f'--seeds {a.seeds}: expected distinct integers >= 0 separated by commas, e.g. 0,1,2')
        if hasattr(a, 'seed'):
            p.error('--seed and --seeds contradict each other: give one')
        if a.method == 'lbptop':
            p.error('--seeds: the LBP-TOP baseline has no seed (its SVM is deterministic); run it without')
    if a.weights and getattr(a, 'init', 'imagenet') == 'random':
        p.error('--weights and --init random contradict each other: give one')
    if a.weights:
        a.init = 'imagenet'
    if a.final_only and a.method == 'lbptop':
        p.error('--final-only trains the network; the LBP-TOP baseline has no model to save')
    a.save_model = a.save_model or a.final_only
    if a.plain and (a.table or a.method == 'lbptop' or a.save_model or a.seed_list or a.shard != (1, 1)
                    or a.protocol != 'loso' or a.figure):
        p.error('--plain runs one row of the method in memory: give it without --table, --method lbptop, '
                '--save-model, --final-only, --seeds, --folds, --protocol hde and --figure')
    cfg = config(a, DEMO if a.demo else PAPER)
    for problem in cfg.problems():
        p.error(problem)
    return a, cfg


def predict_parser():
    """`mer.py predict`'s parser."""
    p = argparse.ArgumentParser(prog='mer.py predict', description='Apply a saved model (model.pt) to your own clips: '
                                'prints "path label p_negative p_positive p_surprise onset apex" per clip.')
    p.add_argument('paths', nargs='+', metavar='PATH', help='a video (mp4, avi, mov; read with OpenCV) or a folder '
                   'of numbered frames')
    p.add_argument('--model', required=True, help='model.pt written by mer.py --save-model')
    p.add_argument('--onset', type=ranged(int, 0), help='onset frame number (a video counts from 0; a folder uses '
                   'the numbers in its file names); default: the first frame')
    p.add_argument('--apex', type=ranged(int, 0), help='apex frame number; default: spotted (pipeline.find_apex)')
    p.add_argument('--fps', type=ranged(float, above=0), help="frame rate (default: the video's own; 200 for a "
                   'folder of frames)')
    p.add_argument('--domain', choices=('micro', 'macro'), default='micro', help='micro: EMR magnifies the apex '
                   '(default); macro: a posed or broad expression, EMR takes the onset-apex middle frame')
    p.add_argument('--no-face', choices=('error', 'skip'), default='error', help='no face in the onset frame: stop '
                   'naming it (default), or start at the first later frame with a face and say which')
    p.add_argument('--no-stabilise', action='store_true', help='keep the rigid head motion (default: removed)')
    p.add_argument('--max-frames', type=ranged(int, 1), default=1000, help='frames after the onset searched for the '
                   'apex (default %(default)s)')
    p.add_argument('--json', action='store_true', help='one JSON object per clip instead of a line of text')
    p.add_argument('--out', help='write the results to this file (.csv, or .jsonl for JSON lines), with the command '
                   'and the model\'s provenance; rewritten whole after every clip (docs/predict.md)')
    p.add_argument('--figure', help='save onset | apex | magnified apex | flow of every clip to this PNG')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar, warnings only')
    return short_errors(p)


