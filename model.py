"""PartNet: ResNet18 on the (u, v, strain) flow image, eye/mouth part heads, and an adversarial domain head.

Paper §III.B (Liu, Du, Zheng, Gedeon, FG 2019). Nothing in the forward pass or the losses synchronises with the
host or depends on the data's values, so a whole training step can be captured once as a CUDA graph (train.py);
the reversal strength may be a device tensor for the same reason.
"""
import io
import json
import logging
import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

log = logging.getLogger(__name__)
TRUNK_STRIDE = 32  # ResNet18's conv1..layer4 shrink each side by 32 (rounding up)
# model.pt: a dict of builtins and tensors (torch.load's weights_only=True reads it); FORMAT_VERSION changes when
# its keys or their meaning do.
FORMAT, FORMAT_VERSION = 'mer-model', 1
MODEL_KEYS = ('format', 'version', 'state_dict', 'settings', 'pipeline', 'classes', 'code_version', 'trained_on')


class ModelFileError(ValueError):
    """A model file that this code cannot use; the message names the file and what to do."""


def imagenet_cache_path():
    """Where torchvision caches the ResNet18 ImageNet weights (§III.B pre-training); nothing is downloaded."""
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / 'checkpoints' / Path(url).name


def download_imagenet_weights(timeout=20):
    """Fetches the ResNet18 ImageNet weights into torchvision's cache with torchvision's own API; returns the path.

    Offline, this fails within `timeout` seconds with one line saying what to do."""
    import socket
    path = imagenet_cache_path()
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except Exception as e:
        reason = getattr(e, 'reason', None) or e
        raise OSError(f'ResNet18 ImageNet weights are not in {path} and could not be downloaded ({reason}); '
                      'connect once to download them, copy the file there, pass --weights PATH, or pass '
                      '--random-init to train from scratch') from None
    finally:
        socket.setdefaulttimeout(old)
    return path


def imagenet_weights(path=None, download=False):
    """ResNet18 ImageNet state dict from `path` or torchvision's cache (§III.B pre-training).

    Not in the cache: downloaded with download=True, else None (the caller decides)."""
    if path is None:
        path = imagenet_cache_path()
        if not path.is_file():
            if not download:
                return None
            download_imagenet_weights()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'ImageNet weights not found at {path}: check the path, or pass --random-init to train '
                                'from scratch')
    state = load_plain(path, lambda kind: ValueError(
        f'cannot read ImageNet weights from {path} ({kind}): pass torchvision\'s resnet18-f37072fd.pth, a plain '
        'state dict of tensors'))
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f'{path} is not a ResNet18 state dict (expected a dict of tensors)')
    return state


def top_rows(h):
    """Rows of an h-row feature map that belong to the eyes (§III.B): 3 of 7 as in the authors' code."""
    # Other sizes keep the 3/7 proportion, with at least one row in each half.
    return max(1, min(h - 1, round(3 * h / 7)))


def split_rows(fmap):
    """Top (eyes) and bottom (mouth) row slices of a (..., C, H, W) feature map (§III.B)."""
    h = fmap.shape[-2]
    if h < 2:
        raise ValueError(f'a {h}-row feature map cannot be split into top and bottom parts (need at least 2 rows)')
    k = top_rows(h)
    return fmap[..., :k, :], fmap[..., k:, :]


class GradReverse(torch.autograd.Function):
    """Identity forward, gradient times -coeff backward (Ganin & Lempitsky 2015; §III.B adversarial branch)."""
    @staticmethod
    def forward(x, coeff):
        return x.clone()  # a fresh tensor, not a view of x, so autograd keeps the two apart

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.coeff = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        return grad * -ctx.coeff, None


def grad_reverse(x, coeff=1.0):
    """x unchanged; its gradient is multiplied by -coeff on the way back (§III.B, DANN)."""
    return GradReverse.apply(x, coeff)


def dann_coeff(progress, gamma=10.0):
    """DANN's reversal-strength schedule 2/(1+exp(-gamma p)) - 1 for training progress p in [0, 1] (§III.B).

    p may be a float or a tensor (a device tensor inside a captured training step)."""
    if torch.is_tensor(progress):
        return 2.0 / (1.0 + torch.exp(-gamma * progress)) - 1.0
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def head(d_in, hidden, d_out):
    """Two fully connected layers d_in -> hidden -> ReLU -> d_out, the classifier shape of §III.B."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class PartNet(nn.Module):
    """ResNet18 trunk, top/bottom part classifiers, joint classifier and domain discriminator (§III.B)."""

    def __init__(self, n_classes=3, parts=True, hidden=64, disc_hidden=64, weights=None):
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        # conv1..layer4 under their torchvision names, so an ImageNet state dict loads key for key.
        self.trunk = nn.Sequential(OrderedDict(
            (name, m) for name, m in resnet.named_children() if name not in ('avgpool', 'fc')))
        if weights is not None:
            self.trunk.load_state_dict({k: v for k, v in weights.items() if not k.startswith('fc.')}, strict=True)
        self.parts = parts
        if parts:
            # Each part: Linear(512, hidden) -> ReLU -> Linear(hidden, n_classes), as in the authors' code.
            self.top, self.bottom = head(512, hidden, n_classes), head(512, hidden, n_classes)
            # The joint classifier is a single layer on the two concatenated hidden vectors (128 -> 3).
            self.joint = nn.Linear(2 * hidden, n_classes)
            feat = 2 * hidden
        else:
            self.joint = head(512, hidden, n_classes)
            feat = hidden
        self.discriminator = head(feat, disc_hidden, 2)  # domain 0 micro, 1 macro

    def forward(self, x, grl_coeff=1.0):
        """Dict of logits: 'joint' (predictions), 'domain', and with parts 'top', 'bottom' (§III.B)."""
        fmap = self.trunk(x)
        out = {}
        if self.parts:
            if fmap.shape[-2] < 2:
                raise ValueError(f'input height {x.shape[-2]} is too small for the part split: '
                                 f'use at least {TRUNK_STRIDE + 1} pixels')
            top, bottom = (f.mean((-2, -1)) for f in split_rows(fmap))  # adaptive average pooling to 512-d
            h_top, h_bottom = self.top[:2](top), self.bottom[:2](bottom)
            out['top'], out['bottom'] = self.top[2](h_top), self.bottom[2](h_bottom)
            feat = torch.cat([h_top, h_bottom], -1)
            out['joint'] = self.joint(feat)
        else:
            feat = self.joint[:2](fmap.mean((-2, -1)))
            out['joint'] = self.joint[2](feat)
        out['domain'] = self.discriminator(grad_reverse(feat, grl_coeff))
        return out


def losses(out, labels, domains=None, lambda_adv=1.0):
    """Total loss L = Lt + Lb + Lc - lambda Ladv (§III.B) and its detached components for logging."""
    parts = {'joint': F.cross_entropy(out['joint'], labels)}
    if 'top' in out:
        parts['top'] = F.cross_entropy(out['top'], labels)
        parts['bottom'] = F.cross_entropy(out['bottom'], labels)
    total = sum(parts.values())
    if lambda_adv and domains is not None:
        # The paper's "- lambda Ladv" is realised by the reversal layer: we add +lambda Ladv, so the discriminator
        # descends Ladv, while the encoder (behind the reversal) receives the negated gradient and so ascends
        # Ladv, which is exactly minimising Lt + Lb + Lc - lambda Ladv with respect to the encoder.
        parts['adv'] = F.cross_entropy(out['domain'], domains)
        total = total + lambda_adv * parts['adv']
    parts['total'] = total
    return total, {k: v.detach() for k, v in parts.items()}


# ----------------------------------------------------------------------------------------------- model.pt
def plain(x):
    """x as JSON's builtins (tuples -> lists, numpy scalars and arrays -> numbers and lists): what model.pt holds."""
    def default(v):
        if hasattr(v, 'tolist'):
            return v.tolist()
        raise TypeError(f'{type(v).__name__} is not a plain value')
    return json.loads(json.dumps(x, default=default))


def save_model(path, net, settings, pipeline, classes, code_version, trained_on):
    """Writes model.pt atomically: the weights, every setting and pipeline constant that makes its input, the
    class names, the code version and what it was trained on."""
    from config import atomic_write
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(dict(format=FORMAT, version=FORMAT_VERSION, state_dict=state, settings=plain(settings),
                    pipeline=plain(pipeline), classes=list(classes), code_version=code_version,
                    trained_on=plain(trained_on)), buf)
    atomic_write(path, buf.getvalue())


def load_plain(path, error):
    """torch.load of a file of plain tensors and builtins (weights_only=True) onto the CPU; any failure raises
    error(the exception's type name): torch's own message is pages of advice about pickles, and a file that is not
    a zip, not a pickle, or a pickle of other objects all mean the same to the user."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise error(type(e).__name__) from None


def load_model(path, settings, pipeline, classes, code_version):
    """(PartNet in eval mode, the file's dict) from a model.pt written by save_model; a file written with other
    pipeline constants, classes or setting names than this code's (`settings`: its Config fields) is a
    ModelFileError naming what differs, another code version only a warning."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such model file; write one with mer.py ... --save-model (README: '
                                '"Use a trained model")')
    d = load_plain(path, lambda kind: ModelFileError(
        f'{path}: not a model file written by mer.py --save-model ({kind}); pass the model.pt of a run folder'))
    if not isinstance(d, dict) or d.get('format') != FORMAT or set(MODEL_KEYS) - set(d):
        raise ModelFileError(f'{path}: not a model file written by mer.py --save-model; pass the model.pt of a run '
                             'folder')
    if d['version'] != FORMAT_VERSION:
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
    net = PartNet(n_classes=len(classes), parts=d['settings'].get('parts', True))
    try:
        net.load_state_dict(d['state_dict'])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ModelFileError(f'{path}: its weights do not fit the network ({str(e).splitlines()[0]}); pass the '
                             'model.pt of a run folder') from None
    return net.eval(), d
