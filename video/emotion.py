"""A face's expression as a classifier trained on many faces reads it: the seven FER2013 classes' probabilities of
a grey face crop, by Arriaga et al.'s mini-Xception ("Real-time Convolutional Neural Networks for Emotion and
Gender Classification", 2017; 66 % on FER2013's test set, its authors say). The spotter reads it where a face's
own measures cannot say what they mean: a rise of the mouth's width is a smile where the classifier sees the face
happy.

The weights (emotion_fer2013.npz, 58,423 numbers, batch normalisation's statistics included) are the authors'
`fer2013_mini_XCEPTION.102-0.66.hdf5` from github.com/oarriaga/face_classification (commit aa06bfe, MIT licence,
Copyright (c) 2017 Octavio Arriaga; sha256 59534287...99ea0e), in PyTorch's layout (out, in, height, width):
`python -m tools.emotionnet` makes the file again from that one.
"""
import functools
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).with_name('emotion_fer2013.npz')
LABELS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')
SIZE = 64
# The crop around dlib's face box (its width and height): the model was trained on FER2013's faces, framed from
# the forehead's top to below the chin; dlib's box runs from the brows to the chin.
MARGIN = dict(side=0.15, top=0.25, bottom=0.15)


@functools.lru_cache(maxsize=1)
def weights():
    if not WEIGHTS.is_file():
        raise FileNotFoundError(f'{WEIGHTS}: the spotter\'s expression classifier is missing from this install; '
                                'install the package again (pip install .) or make the file: '
                                'python -m tools.emotionnet')
    with np.load(WEIGHTS) as z:
        return {k: z[k] for k in z.files}


def crop(gray, box):
    """The model's input for the face in dlib's `box` (left, top, right, bottom) of a grey frame: (64, 64) float32
    in [-1, 1], or None where the crop leaves the frame."""
    import cv2
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    a, b = int(max(0, x0 - MARGIN['side'] * w)), int(min(gray.shape[1], x1 + MARGIN['side'] * w))
    c, d = int(max(0, y0 - MARGIN['top'] * h)), int(min(gray.shape[0], y1 + MARGIN['bottom'] * h))
    if b - a < 8 or d - c < 8:
        return None
    face = cv2.resize(gray[c:d, a:b], (SIZE, SIZE))          # bilinear, as the authors feed it
    return face.astype(np.float32) / 127.5 - 1.0


# The network in numpy (float32), so that the spotter does not load PyTorch (hundreds of MB) for 10 million
# multiply-adds a face (3.3 ms on one core here); einsum rather than matmul: for products this small BLAS's threads
# spin on the other core, twice the CPU time for a fifth less wall time.
def _conv(x, w, stride=1, pad=0, groups=1):
    """x (n, c, h, w) convolved with w (out, c / groups, kh, kw), groups 1 or one a channel (depthwise): a sum over
    the kernel's taps of the shifted input, each a matrix product (or, depthwise, a product) over channels."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            xs = x[:, :, i:i + (oh - 1) * stride + 1:stride, j:j + (ow - 1) * stride + 1:stride]
            if groups == 1:
                out += np.einsum('oc,ncp->nop', w[:, :, i, j], xs.reshape(n, c, oh * ow)).reshape(n, o, oh, ow)
            else:
                out += xs * w[:, 0, i, j][None, :, None, None]
    return out


def _bn(x, P, name):
    scale = P[name + '.gamma'] / np.sqrt(P[name + '.var'] + 1e-3)
    return x * scale[:, None, None] + (P[name + '.beta'] - P[name + '.mean'] * scale)[:, None, None]


def _pool(x):
    """Keras's 3x3, stride-2 max pooling with 'same' padding: the padding at the bottom and the right first."""
    n = x.shape[-1]
    pad = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
    x = np.pad(x, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)), constant_values=-np.inf)
    m = (x.shape[-1] - 3) // 2 + 1
    return functools.reduce(np.maximum, (x[:, :, i:i + 2 * m - 1:2, j:j + 2 * m - 1:2] for i in range(3)
                                         for j in range(3)))


def probabilities(faces):
    """(n, 7) float64: LABELS' probabilities of each face crop (crop's) in `faces`, (n, 64, 64)."""
    P = weights()
    x = np.asarray(faces, np.float32).reshape(-1, 1, SIZE, SIZE)
    relu = lambda v: np.maximum(v, 0)                                                   # noqa: E731
    x = relu(_bn(_conv(x, P['conv1']), P, 'bn1'))
    x = relu(_bn(_conv(x, P['conv2']), P, 'bn2'))
    for m in range(4):                      # four residual modules of two depthwise-separable convolutions
        r = _bn(_conv(x, P[f'm{m}.res'], stride=2), P, f'm{m}.res_bn')
        for j in range(2):
            x = _conv(x, P[f'm{m}.dw{j}'], pad=1, groups=x.shape[1])
            x = _bn(_conv(x, P[f'm{m}.pw{j}']), P, f'm{m}.bn{j}')
            if j == 0:
                x = relu(x)
        x = _pool(x) + r
    x = (_conv(x, P['head'], pad=1) + P['head_bias'][:, None, None]).mean((2, 3)).astype(np.float64)
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
