"""video/emotion_fer2013.npz made again from the authors' Keras file, so that anyone can check what the spotter's
expression classifier is (video/emotion.py):

    python -m tools.emotionnet [--repos DIR] [--out video/emotion_fer2013.npz]

It reads `trained_models/emotion_models/fer2013_mini_XCEPTION.102-0.66.hdf5` of github.com/oarriaga/
face_classification at commit aa06bfe from a clone under --repos (`owner+name` or `owner/name`, bare or not), else
clones it there (git, network), checks its sha256 and writes the weights in PyTorch's layout. It needs h5py
(`pip install h5py`), which nothing else does.
"""
import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np

if not __package__:       # run as a file (python tools/emotionnet.py), the project's modules are not on the path
    sys.exit('run it as a module from the repository root: .venv/bin/python -m tools.emotionnet')

REPO, COMMIT = 'oarriaga/face_classification', 'aa06bfe15c9b4fb09aec2c0f5d98f1784f58abdb'
PATH = 'trained_models/emotion_models/fer2013_mini_XCEPTION.102-0.66.hdf5'
SHA256 = '59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e'
REPOS = Path(__file__).resolve().parents[2] / 'repos'        # --repos' default: ../repos beside the repository


def convert(data):
    """{name: array} of video/emotion.py from the Keras 2.0 HDF5 file's bytes: convolutions from (h, w, in, out) to
    (out, in, h, w), depthwise kernels from (h, w, channels, 1) to (channels, 1, h, w); Keras numbered its layers
    in the order the model made them (cnn.py's mini_XCEPTION): per module a residual convolution, then two
    separable ones, each with its batch normalisation."""
    try:
        import h5py
    except ImportError:
        raise SystemExit('tools.emotionnet needs h5py to read the Keras file: pip install h5py')
    f = h5py.File(io.BytesIO(data), 'r')['model_weights']

    def w(layer, name):
        g = f[layer]
        return np.array(g[list(g.keys())[0]][name], np.float32)

    def conv(layer):
        return w(layer, 'kernel:0').transpose(3, 2, 0, 1)

    out = {}

    def bn(name, i):
        layer = f'batch_normalization_{i}'
        for key, keras in (('gamma', 'gamma'), ('beta', 'beta'), ('mean', 'moving_mean'), ('var', 'moving_variance')):
            out[f'{name}.{key}'] = w(layer, keras + ':0')

    out['conv1'], out['conv2'] = conv('conv2d_1'), conv('conv2d_2')
    bn('bn1', 1)
    bn('bn2', 2)
    for m in range(4):
        out[f'm{m}.res'] = conv(f'conv2d_{3 + m}')
        bn(f'm{m}.res_bn', 3 + 3 * m)
        for j in range(2):
            layer = f'separable_conv2d_{1 + 2 * m + j}'
            out[f'm{m}.dw{j}'] = w(layer, 'depthwise_kernel:0').transpose(2, 3, 0, 1)
            out[f'm{m}.pw{j}'] = w(layer, 'pointwise_kernel:0').transpose(3, 2, 0, 1)
            bn(f'm{m}.bn{j}', 4 + 3 * m + j)
    out['head'], out['head_bias'] = conv('conv2d_7'), w('conv2d_7', 'bias:0')
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def keras_file(repos):
    from tools.devclips import blob, clone
    data = blob(clone(repos, REPO), COMMIT, PATH)
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise SystemExit(f'{PATH} at {COMMIT[:7]}: its sha256 differs from the one the weights were made from')
    return data


def main():
    from video import emotion
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--repos', default=str(REPOS),
                    help='where the repository is cloned, or already lies (default: ../repos)')
    ap.add_argument('--out', default=str(emotion.WEIGHTS))
    a = ap.parse_args()
    np.savez(a.out, **convert(keras_file(a.repos)))
    print(f'{a.out}: written')
    return 0


if __name__ == '__main__':
    sys.exit(main())
