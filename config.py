"""Every setting of the method in one frozen dataclass, with the paper's values as defaults (Liu et al., FG 2019).

`PAPER` is the paper's protocol; `DEMO` is `dataclasses.replace(PAPER, ...)` for the embedded demo set. The command
line builds one `Config` and passes it down; `config.json` in a run folder is `asdict` of it plus the code version.
Fields marked `volatile` change how a run is carried out, never its result: a resume or a merge may change them.

Shared constants (class names, Table I's dataset order), the one atomic-write helper and the set-up of worker
processes live here too, so no two stages import each other for them.
"""
import dataclasses
import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CLASSES = ('negative', 'positive', 'surprise')
DATASETS = ('smic', 'casme2', 'samm')            # Table I's column order
ROOT = Path(__file__).resolve().parent


def _volatile(default):
    return field(default=default, metadata={'volatile': True})


@dataclass(frozen=True)
class Config:
    # -- inputs (paper §III.A): everything here changes a cached network input
    align_size: int = 224        # side of the aligned face on which EVM and flow run
    no_face: str = 'error'       # 'error' | 'center': what to do when dlib finds no face
    landmarks: str = ''          # dlib 68-point .dat file; '' = the copy inside face-recognition-models
    emr: bool = True             # §III.C: magnified micro apex, middle frame for macro
    # EVM (Wu et al. 2012) as EMR uses it: the apex's change since the onset (IIR band with r1 = 1, r2 = 0), on every
    # band but the residual (lambda_c = 0), doubled (alpha = 1): measured faithful to the true motion (fidelity.py,
    # BENCHMARKS.md). MIT's reference settings, which the authors reused: alpha 10, lambda_c 16, r1 0.4, r2 0.05.
    evm_alpha: float = 1.0       # amplification: motion x (1 + alpha)
    evm_lambda_c: float = 0.0    # spatial cut-off wavelength, pixels (reference attenuation); 0 = none
    evm_r1: float = 1.0          # IIR temporal band: the two first-order low-pass coefficients of MIT's code
    evm_r2: float = 0.0
    evm_chroma: float = 0.1      # chroma attenuation
    flow: str = 'tvl1'           # 'tvl1' (paper) | 'farneback'
    apex: str = 'annotated'      # 'annotated' (SMIC-HS: the middle frame) | 'spot': spot.py's apex, from the onset
    stabilise: bool = False      # remove rigid head motion from onset to each frame (align.py); the paper does not
    size: int = 224              # network input side
    # -- model (paper §III.B)
    parts: bool = True           # eye / mouth part heads; False = global pooling (Table I's 'Global' rows)
    adv: bool = True             # gradient reversal + discriminator against CK+ (used only with macro samples)
    init: str = 'imagenet'       # 'imagenet' (paper) | 'random'
    # -- training (paper §IV and the authors' code)
    epochs: int = 100
    batch_size: int = 32
    lr_heads: float = 1e-3       # heads and discriminator, halved every lr_step epochs
    lr_step: int = 10
    lr_backbone: float = 0.0     # 0 = follow init: 1e-5 on ImageNet weights, lr_heads from random
    weight_decay: float = 1e-6
    grad_clip: float = 1.0       # max gradient norm per fold
    lambda_adv: float = 1.0      # lambda of L = Lt + Lb + Lc - lambda Ladv
    dann_gamma: float = 10.0     # DANN schedule 2 / (1 + exp(-gamma p)) - 1 (Ganin & Lempitsky 2015)
    augment: bool = True
    rotate: float = 10.0         # augmentation: rotation up to +-rotate degrees,
    zoom: float = 0.9            # a crop of zoom..1 of the side, and a mirror
    precision: str = 'auto'      # 'bf16' | 'fp32' | 'auto' (bf16 where the hardware is fast at it); BatchNorm fp32
    select_on_test: bool = False  # also report the authors' best epoch chosen on the test subject
    seed: int = 0
    # -- how the run is carried out (never changes a result)
    device: str = _volatile('auto')
    jobs: int = _volatile(0)        # CPU: training processes (0 = one per core)
    streams: int = _volatile(0)     # CUDA: folds replayed at once on their own streams (0 = measured default)
    workers: int = _volatile(0)     # preprocessing processes (0 = one per core)
    quiet: bool = _volatile(False)

    def backbone_lr(self):
        """The trunk's learning rate: the set one, else 1e-5 on ImageNet weights (authors' code), else lr_heads."""
        if self.lr_backbone:
            return self.lr_backbone
        return 1e-5 if self.init == 'imagenet' else self.lr_heads

    def row(self):
        """'Part + Adversarial + EMR', 'Global + EMR', ...: the name of this combination in Table I."""
        return ' + '.join(['Part' if self.parts else 'Global'] + ['Adversarial'] * self.adv + ['EMR'] * self.emr)

    def evm(self):
        """Keyword arguments of evm.magnify."""
        return dict(alpha=self.evm_alpha, lambda_c=self.evm_lambda_c, r1=self.evm_r1, r2=self.evm_r2,
                    chrom_attenuation=self.evm_chroma)


PAPER = Config()
# The demo set has no ImageNet weights here (nothing downloads), so the trunk learns from scratch, on 64-px flow
# images of faces aligned at 128 px, for 8 epochs: 2 CPU cores run it end to end in about two minutes.
DEMO = dataclasses.replace(PAPER, size=64, align_size=128, epochs=8, init='random')

# Table I's rows of the method and its ablations, as (parts, adv, emr); --table runs them all.
ROWS = ((True, True, True), (True, True, False), (True, False, True), (False, True, True), (False, False, False))


def volatile(name):
    """True for the fields that change how a run is carried out, never its result."""
    return Config.__dataclass_fields__[name].metadata.get('volatile', False)


def result_settings(cfg):
    """The settings that decide a run's result: what config.json holds and a resume must match."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if not volatile(k)}


def code_version(files=None):
    """`git describe` of the checkout when it is clean, else a hash of the project's source files."""
    files = sorted(ROOT.glob('*.py')) if files is None else files
    digest = hashlib.sha1(b''.join(Path(f).read_bytes() for f in files)).hexdigest()[:12]
    try:
        desc = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        desc = ''
    return desc if desc and not desc.endswith('-dirty') else f'src-{digest}'


def atomic_write(path, data):
    """Writes text or bytes to `path` through a temporary file beside it: readers see the whole file or none."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        (tmp.write_text if isinstance(data, str) else tmp.write_bytes)(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def worker_setup():
    """In a worker process (one per core): one BLAS thread, as the processes already share out the cores; Ctrl-C
    left to the parent (which reports it in one line); and the worker ends when its parent dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG; elsewhere only the rest holds)."""
    import ctypes
    import multiprocessing
    import signal
    try:
        __import__('numpy')           # loads its BLAS, which threadpoolctl can limit only once loaded
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)      # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)                                     # the parent died before the line above took effect
