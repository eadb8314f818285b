"""Weights from outside the run: ResNet18's ImageNet weights (§III.B's pre-training), found in torchvision's
cache, a given file, or downloaded with torchvision's own API (failing fast and clearly offline); and model.pt,
the trained model that `mer.py predict` applies (its format: docs/predict.md)."""
import io
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)
# model.pt: a dict of builtins and tensors (torch.load's weights_only=True reads it); FORMAT_VERSION changes when
# its keys or their meaning do.
FORMAT, FORMAT_VERSION = 'mer-model', 2
MODEL_KEYS = ('format', 'version', 'state_dict', 'settings', 'pipeline', 'classes', 'code_version', 'trained_on')
# Format 2 adds `provenance`: what the model was trained on (its data's source, whether synthetic, samples and
# subjects per dataset), its protocol and when; format 1 files, without it, are still read.
READ_VERSIONS = (1, 2)
# torch, torchvision and model.py load in the functions that use them: mer.py imports this module for its error
# before any subcommand, and `mer.py spot` needs no torch (it would cost two seconds and a gigabyte).


class ModelFileError(ValueError):
    """A model file that this code cannot use; the message names the file and what to do."""


def imagenet_cache_path():
    """Where torchvision caches the ResNet18 ImageNet weights (§III.B pre-training); nothing is downloaded."""
    import torch
    import torchvision
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / 'checkpoints' / Path(url).name


def download_imagenet_weights(timeout=20):
    """Fetches the ResNet18 ImageNet weights into torchvision's cache with torchvision's own API; returns the path.

    Offline, this fails within `timeout` seconds with one line saying what to do."""
    import socket

    import torchvision
    path = imagenet_cache_path()
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except Exception as e:
        reason = getattr(e, 'reason', None) or e
        raise OSError(f'ResNet18 ImageNet weights are not in {path} and could not be downloaded ({reason}); '
                      'connect once to download them, copy the file there, pass --weights PATH, or pass '
                      '--init random to train from scratch') from None
    finally:
        socket.setdefaulttimeout(old)
    return path


def imagenet_weights(path=None, download=False):
    """ResNet18 ImageNet state dict from `path` or torchvision's cache (§III.B pre-training).

    Not in the cache: downloaded with download=True, else None (the caller decides)."""
    import torch
    if path is None:
        path = imagenet_cache_path()
        if not path.is_file():
            if not download:
                return None
            download_imagenet_weights()
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f'{path}: a folder, not a weights file; pass the .pth file itself (torchvision\'s '
                                'resnet18-f37072fd.pth), or --init random to train from scratch')
    if not path.is_file():
        raise FileNotFoundError(f'ImageNet weights not found at {path}: check the path, or pass --init random to '
                                'train from scratch')
    state = load_plain(path, lambda kind: ValueError(
        f'cannot read ImageNet weights from {path} ({kind}): pass torchvision\'s resnet18-f37072fd.pth, a plain '
        'state dict of tensors'))
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f'{path} is not a ResNet18 state dict (expected a dict of tensors)')
    return state


def plain(x):
    """x as JSON's builtins (tuples -> lists, numpy scalars and arrays -> numbers and lists): what model.pt holds."""
    def default(v):
        if hasattr(v, 'tolist'):
            return v.tolist()
        raise TypeError(f'{type(v).__name__} is not a plain value')
    return json.loads(json.dumps(x, default=default))


def save_model(path, net, settings, pipeline, classes, code_version, trained_on, provenance=None, calibration=None):
    """Writes model.pt atomically: the weights, every setting and pipeline constant that makes its input, the
    class names, the code version, what it was trained on (samples per dataset), its provenance (a dict:
    `describe` reads it) and the temperature scaling of its probabilities (results/calibration.py), if any."""
    import torch

    from util.files import atomic_write
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(dict(format=FORMAT, version=FORMAT_VERSION, state_dict=state, settings=plain(settings),
                    pipeline=plain(pipeline), classes=list(classes), code_version=code_version,
                    trained_on=plain(trained_on), provenance=plain(provenance or {}),
                    calibration=plain(calibration)), buf)
    atomic_write(path, buf.getvalue())


def load_plain(path, error):
    """torch.load of a file of plain tensors and builtins (weights_only=True) onto the CPU; any failure raises
    error(the exception's type name): torch's own message is pages of advice about pickles, and a file that is not
    a zip, not a pickle, or a pickle of other objects all mean the same to the user."""
    import torch
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise error(type(e).__name__) from None


def describe(d):
    """One line of what a loaded model file says it was trained on, and whether its labels were synthetic (None:
    a format 1 file, which does not say)."""
    p = d.get('provenance') or {}
    counts = ', '.join(f'{ds} {v["samples"]} samples of {v["subjects"]} subjects'
                       for ds, v in p.get('datasets', {}).items()) or \
        ', '.join(f'{ds} {n}' for ds, n in d['trained_on'].items())
    if not p:
        return f'trained on {counts}; code version {d["code_version"]} (a format 1 file: no provenance)', None
    source = 'the synthetic demo set' if p['synthetic'] else p['source']
    machine = f', in {p["precision"]} on {p["device"]}' if 'precision' in p else ''
    return (f'trained on {source} ({counts}), protocol {p["protocol"]}, {p["date"]}{machine}, code version '
            f'{d["code_version"]}'), p['synthetic']


def load_model(path, settings, pipeline, classes, code_version):
    """(PartNet in eval mode, the file's dict) from a model.pt written by save_model; a file written with other
    pipeline constants, classes or setting names than this code's (`settings`: its Config fields) is a
    ModelFileError naming what differs, another code version only a warning."""
    path = Path(path)
    if path.is_dir():
        inside = ' (there is one inside it: pass ' + str(path / 'model.pt') + ')' if (path / 'model.pt').is_file() \
            else ''
        raise ModelFileError(f'{path}: a folder, not a model file{inside}; pass the model.pt that mer.py '
                             '--save-model wrote into a run folder')
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such model file; write one with mer.py ... --save-model '
                                '(docs/predict.md)')
    d = load_plain(path, lambda kind: ModelFileError(
        f'{path}: not a model file written by mer.py --save-model ({kind}); pass the model.pt of a run folder'))
    if not isinstance(d, dict) or d.get('format') != FORMAT or set(MODEL_KEYS) - set(d):
        raise ModelFileError(f'{path}: not a model file written by mer.py --save-model; pass the model.pt of a run '
                             'folder')
    if d['version'] not in READ_VERSIONS:
        raise ModelFileError(f'{path}: model file format {d["version"]}, this code reads format {FORMAT_VERSION} '
                             f'(code version {d["code_version"]} wrote it); use that code, or train again with this '
                             'one (--save-model)')
    theirs, ours = d['pipeline'], plain(pipeline)
    diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    diff += sorted(k for k in set(d['settings']) ^ set(settings))
    if list(d['classes']) != list(classes):
        diff.append('classes')
    if diff:
        raise ModelFileError(f'{path}: written by code version {d["code_version"]} with other pipeline constants or '
                             f'settings than this code ({", ".join(diff)}), so its inputs cannot be reproduced; use '
                             'that code version, or train again with this one (--save-model)')
    if d['code_version'] != code_version:
        log.warning('%s was written by code version %s; this is %s (its pipeline constants are the same)', path,
                    d['code_version'], code_version)
    import model
    net = model.PartNet(n_classes=len(classes), parts=d['settings']['parts'], hidden=d['settings']['hidden'])
    try:
        net.load_state_dict(d['state_dict'])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ModelFileError(f'{path}: its weights do not fit the network ({str(e).splitlines()[0]}); pass the '
                             'model.pt of a run folder') from None
    return net.eval(), d
