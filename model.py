"""PartNet (paper §III.B): ResNet18 on the (u, v, strain) flow image, eye/mouth part heads, a joint classifier,
and the adversarial domain head behind a gradient reversal layer; the loss L = Lt + Lb + Lc - lambda Ladv.

To follow it: `PartNet.forward` (with `split_rows` for the parts), `grad_reverse` and `dann_coeff`, `losses`.
Nothing in the forward pass or the losses reads a value back to the host or changes shape with the data.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

TRUNK_STRIDE = 32  # ResNet18's conv1..layer4 shrink each side by 32 (rounding up)


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
    """DANN's reversal-strength schedule 2/(1+exp(-gamma p)) - 1 for training progress p in [0, 1] (§III.B), a
    tensor (a 0-d one for a number)."""
    return 2.0 / (1.0 + torch.exp(-gamma * torch.as_tensor(progress))) - 1.0


def head(d_in, hidden, d_out):
    """Two fully connected layers d_in -> hidden -> ReLU -> d_out, the classifier shape of §III.B."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class PartNet(nn.Module):
    """ResNet18 trunk, top/bottom part classifiers, joint classifier and domain discriminator (§III.B)."""

    def __init__(self, n_classes=3, parts=True, hidden=64, weights=None):
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
            # The joint classifier is a single layer on the two concatenated hidden vectors (2 hidden -> n_classes).
            self.joint = nn.Linear(2 * hidden, n_classes)
            feat = 2 * hidden
        else:
            self.joint = head(512, hidden, n_classes)
            feat = hidden
        self.discriminator = head(feat, hidden, 2)  # domain 0 micro, 1 macro

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
    """Total loss L = Lt + Lb + Lc - lambda Ladv (§III.B) and its detached terms 'lt', 'lb', 'lc', 'ladv'."""
    parts = {'lc': F.cross_entropy(out['joint'], labels)}
    if 'top' in out:
        parts['lt'] = F.cross_entropy(out['top'], labels)
        parts['lb'] = F.cross_entropy(out['bottom'], labels)
    total = sum(parts.values())
    if lambda_adv and domains is not None:
        # The paper's "- lambda Ladv" is realised by the reversal layer: we add +lambda Ladv, so the discriminator
        # descends Ladv, while the encoder (behind the reversal) receives the negated gradient and so ascends
        # Ladv, which is exactly minimising Lt + Lb + Lc - lambda Ladv with respect to the encoder.
        parts['ladv'] = F.cross_entropy(out['domain'], domains)
        total = total + lambda_adv * parts['ladv']
    return total, {k: v.detach() for k, v in parts.items()}
