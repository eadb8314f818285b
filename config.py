"""Every setting of the method in one frozen dataclass, with the paper's values as defaults (Liu et al., FG 2019),
and the record of one sample that every stage reads.

Each field carries its help text, and the bounds or choices the command line checks: `engine/cli.py` turns every
field into a flag (`--evm-alpha 2`, `--no-emr`, `--stabilise`), so a new setting is one line here. `PAPER` is the
paper's protocol; `DEMO` is `dataclasses.replace(PAPER, ...)` for the embedded demo set. Every field decides the
result; how a run is carried out (device, processes, progress bars) is the command line's (engine/cli.py's Run).
"""
import dataclasses
from dataclasses import dataclass, field

CLASSES = ('negative', 'positive', 'surprise')
DATASETS = ('smic', 'casme2', 'samm')            # Table I's column order
FPS = {'casme2': 200.0, 'samm': 200.0, 'smic': 100.0, 'ck+': 30.0}
DEFAULT_FPS = 200.0                              # a clip whose rate nothing says: CASME II's and SAMM's


@dataclass(frozen=True)
class Sample:
    """One clip of a dataset, as the releases' readers (data/) give it and the method reads it."""
    dataset: str        # 'casme2' | 'samm' | 'smic' | 'ck+'
    subject: str        # as the official csv writes it: 'sub01', '6', 's01'; CK+ 'S005'
    clip: str           # 'EP02_01f', '006_1_2', 's01_ne_01'; CK+ 'S005_001'
    frames: tuple[str, ...]   # paths, sorted by frame number
    onset: int          # index into frames
    apex: int           # index into frames
    label: int          # 0 negative, 1 positive, 2 surprise
    fps: float          # 200 CASME II and SAMM, 100 SMIC-HS, 30 CK+
    domain: str         # 'micro' | 'macro'


def setting(default, help, *, choices=None, min=None, above=None, max=None):
    """A Config field with its help text and what the command line accepts: choices, or a range
    [min, max] (above: an open lower bound)."""
    return field(default=default, metadata=dict(help=help, choices=choices, min=min, above=above, max=max))


@dataclass(frozen=True)
class Config:
    # -- inputs (paper §III.A, §III.C): everything here changes a cached network input
    align_size: int = setting(224, 'side of the aligned face on which EMR and flow run', min=32)
    no_face: str = setting('error', 'when dlib finds no face: stop naming the file, or centre-crop and log it',
                           choices=('error', 'center'))
    landmarks: str = setting('', "dlib's 68-point .dat file ('': the copy inside face-recognition-models)")
    emr: bool = setting(True, '§III.C: magnified micro apex, onset-apex middle frame for macro')
    # EMR's magnification (emr.py): apex + alpha x (apex - onset) in every Laplacian band but the residual. Other
    # values of the three EVM fields below select MIT's reference magnifier (evm.py), e.g. its published settings
    # --evm-alpha 10 --evm-lambda-c 16 --evm-r1 0.4 --evm-r2 0.05.
    evm_alpha: float = setting(1.0, 'EMR amplification alpha: the motion becomes (1 + alpha) times larger', min=0)
    evm_lambda_c: float = setting(0.0, "MIT's spatial cut-off wavelength lambda_c, pixels; 0 = none", min=0)
    evm_r1: float = setting(1.0, "MIT's IIR band: low-pass r1 minus low-pass r2; r1 1 and r2 0 = the change "
                            'since onset', above=0, max=1)
    evm_r2: float = setting(0.0, "MIT's IIR band's second coefficient, below r1", min=0, max=1)
    evm_chroma: float = setting(0.1, 'chroma attenuation: I and Q change by this share of alpha', min=0)
    emr_bands: str = setting('cored', "EMR's Laplacian bands, the residual never: cored: every one, its change cored "
                             'below the noise; all: every one; camera: not those finer than the camera\'s pixels '
                             '(docs/emr.md compares them)', choices=('cored', 'all', 'camera'))
    flow: str = setting('tvl1', 'optical flow: TV-L1 (paper) or Farneback', choices=('tvl1', 'farneback'))
    apex: str = setting('annotated', "the annotated apex (SMIC-HS: the middle frame), or the one spotted from the "
                        "onset (pipeline.find_apex)",
                        choices=('annotated', 'spot'))
    stabilise: bool = setting(False, 'remove the rigid head motion between onset and each frame (stabilise.py; '
                              'the paper does not)')
    size: int = setting(224, 'network input side', min=33)
    # -- model (paper §III.B)
    parts: bool = setting(True, 'eye / mouth part heads; off: global pooling (Table I\'s Global rows)')
    adv: bool = setting(True, 'gradient reversal + discriminator against CK+ (with macro samples only)')
    hidden: int = setting(64, 'width of the two-layer heads and of the discriminator', min=1)
    init: str = setting('imagenet', 'trunk initialisation (imagenet: torchvision\'s weights, --weights, or a '
                        'download)', choices=('imagenet', 'random'))
    # -- training (paper §IV and the authors' code)
    epochs: int = setting(100, 'epochs per fold', min=1)
    batch_size: int = setting(32, 'samples per step', min=1)
    lr_heads: float = setting(1e-3, 'heads and discriminator, halved every lr_step epochs', min=0)
    lr_step: int = setting(10, 'epochs between halvings of lr_heads', min=1)
    lr_backbone: float = setting(0.0, "the trunk's rate; 0 = lr_pretrained on ImageNet weights, lr_heads from "
                                 'random ones', min=0)
    lr_pretrained: float = setting(1e-5, "the trunk's rate on ImageNet weights (the authors' code)", min=0)
    weight_decay: float = setting(1e-6, "Adam's weight decay", min=0)
    grad_clip: float = setting(1.0, 'max gradient norm per fold', above=0)
    lambda_adv: float = setting(1.0, 'lambda of L = Lt + Lb + Lc - lambda Ladv', min=0)
    dann_gamma: float = setting(10.0, 'DANN schedule 2 / (1 + exp(-gamma p)) - 1 (Ganin & Lempitsky 2015)', min=0)
    augment: bool = setting(True, 'rotation, zoom-in crop and mirror, the flow vectors moved with the content')
    rotate: float = setting(10.0, 'augmentation: rotation up to +-rotate degrees', min=0, max=180)
    zoom: float = setting(0.9, 'augmentation: a crop of zoom..1 of the side', above=0, max=1)
    precision: str = setting('auto', 'autocast dtype (auto: bf16 on CUDA and on CPUs with fast bf16); BatchNorm '
                             'fp32', choices=('auto', 'bf16', 'fp32'))
    seed: int = setting(0, 'seed of every fold\'s schedule', min=0)
    def backbone_lr(self):
        """The trunk's learning rate: lr_backbone if set, else lr_pretrained on ImageNet weights, else lr_heads."""
        if self.lr_backbone:
            return self.lr_backbone
        return self.lr_pretrained if self.init == 'imagenet' else self.lr_heads

    def row(self):
        """'Part + Adversarial + EMR', 'Global + EMR', ...: the name of this combination in Table I."""
        return ' + '.join(['Part' if self.parts else 'Global'] + ['Adversarial'] * self.adv + ['EMR'] * self.emr)

    def mit_evm(self):
        """True when the EVM fields ask for MIT's reference magnifier rather than EMR's (see evm_alpha)."""
        return not (self.evm_r1 == 1 and self.evm_r2 == 0 and self.evm_lambda_c == 0)

    def evm(self):
        """Keyword arguments of evm.magnify (MIT's reference magnifier)."""
        return dict(alpha=self.evm_alpha, lambda_c=self.evm_lambda_c, r1=self.evm_r1, r2=self.evm_r2,
                    chrom_attenuation=self.evm_chroma)

    def problems(self):
        """What no single field's range can say: settings that contradict each other."""
        if self.evm_r2 >= self.evm_r1:
            return [f'--evm-r2 {self.evm_r2:g} must be below --evm-r1 {self.evm_r1:g} (the band is low-pass r1 '
                    'minus low-pass r2)']
        return []


PAPER = Config()
# The demo set has no ImageNet weights here (nothing downloads), so the trunk learns from scratch, on 64-px flow
# images of faces aligned at 128 px, for 8 epochs: 2 CPU cores run it end to end in about two minutes.
DEMO = dataclasses.replace(PAPER, size=64, align_size=128, epochs=8, init='random')

# Table I's rows of the method and its ablations, as (parts, adv, emr); --table runs them all.
ROWS = ((True, True, True), (True, True, False), (True, False, True), (False, True, True), (False, False, False))


def result_settings(cfg):
    """The settings that decide a run's result, every Config field: what config.json and model.pt hold and a resume
    must match (how a run is carried out, engine/cli.py's Run, is not among them)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)}
