"""The shapes benchmarked, defined once: the public suite (the one of
BASELINES.md: the GPU suite as listed, the CPU suite with its smaller batches
and fewer shapes), the layers of real networks that the public suite lacks
(small-plane depthwise, 5x5 and 7x7 depthwise, 16 channels per group, 1x1 on
tiny planes, squeeze-excite), and the quick subset that CI smoke-tests."""
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Shape:
    """One convolution problem: input (N, C, H, W), weight (K, C/groups, R, S),
    output (N, K, P, Q); stride, padding and dilation equal along H and W."""

    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int = 1
    pad: int = 0
    dil: int = 1
    groups: int = 1

    @property
    def p(self):
        return (self.h + 2 * self.pad - self.dil * (self.r - 1) - 1) // self.stride + 1

    @property
    def q(self):
        return (self.w + 2 * self.pad - self.dil * (self.s - 1) - 1) // self.stride + 1

    @property
    def cg(self):
        return self.c // self.groups

    @property
    def input_size(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def weight_size(self):
        return (self.k, self.cg, self.r, self.s)

    @property
    def output_size(self):
        return (self.n, self.k, self.p, self.q)

    def describe(self):
        """A one-line summary such as 'N32 C64 56x56 K64 3x3 s1 p1 d1 g1'."""
        return (f"N{self.n} C{self.c} {self.h}x{self.w} K{self.k} {self.r}x{self.s} "
                f"s{self.stride} p{self.pad} d{self.dil} g{self.groups}")


#               name            N     C    H    W    K   R  S  str pad dil groups
SUITE = tuple(Shape(*row) for row in (
    ("seed_pattern",  1,    1, 100, 100,   4, 3, 3, 1, 0, 1, 1),
    ("seed_fit",      1,    1,  50,  50,   1, 3, 3, 1, 1, 1, 1),
    ("r50_conv1",    32,    3, 224, 224,  64, 7, 7, 2, 3, 1, 1),
    ("r50_res2_3x3", 32,   64,  56,  56,  64, 3, 3, 1, 1, 1, 1),
    ("r50_res2_1x1", 32,   64,  56,  56, 256, 1, 1, 1, 0, 1, 1),
    ("r50_res3_3x3", 32,  128,  28,  28, 128, 3, 3, 1, 1, 1, 1),
    ("r50_res4_3x3", 32,  256,  14,  14, 256, 3, 3, 1, 1, 1, 1),
    ("r50_res4_1x1", 32, 1024,  14,  14, 256, 1, 1, 1, 0, 1, 1),
    ("r50_res5_3x3", 32,  512,   7,   7, 512, 3, 3, 1, 1, 1, 1),
    ("r50_down_s2",  32,  256,  56,  56, 512, 1, 1, 2, 0, 1, 1),
    ("vgg_3x3",      16,  128, 112, 112, 128, 3, 3, 1, 1, 1, 1),
    ("dilated_3x3",   8,  256,  32,  32, 256, 3, 3, 1, 2, 2, 1),
    ("mbv2_dw_3x3",  32,  144,  56,  56, 144, 3, 3, 1, 1, 1, 144),
    ("grouped_3x3",  32,  128,  28,  28, 128, 3, 3, 1, 1, 1, 32),
    ("batch1_3x3",    1,   64,  56,  56,  64, 3, 3, 1, 1, 1, 1),
))

# Layers of real networks, at the input each network feeds them at batch 8
# and 112x112 images (benchmarks/models.py; python -m benchmarks.e2e runs the
# networks): the kinds that decide a training step's time once the dense 3x3
# layers are fast, and that the public suite does not have. They keep batch 8
# on every device (the batch of the e2e benchmark).
#               name              N     C    H    W    K   R  S  str pad dil groups
NETWORK = tuple(Shape(*row) for row in (
    # 3x3 depthwise on small planes with many channels (MobileNetV2, EfficientNet, ShuffleNetV2)
    ("dw3_s1_c384_7x7",   8,  384,   7,   7,  384, 3, 3, 1, 1, 1,  384),
    ("dw3_s1_c576_7x7",   8,  576,   7,   7,  576, 3, 3, 1, 1, 1,  576),
    ("dw3_s1_c960_4x4",   8,  960,   4,   4,  960, 3, 3, 1, 1, 1,  960),
    ("dw3_s1_c192_14x14", 8,  192,  14,  14,  192, 3, 3, 1, 1, 1,  192),
    # ... and at stride 2 (MobileNetV2's and EfficientNet's downsampling blocks)
    ("dw3_s2_c96_56x56",  8,   96,  56,  56,   96, 3, 3, 2, 1, 1,   96),
    ("dw3_s2_c144_28x28", 8,  144,  28,  28,  144, 3, 3, 2, 1, 1,  144),
    # 5x5 depthwise (EfficientNet-B0 stages 3, 5, 6; MnasNet)
    ("dw5_s1_c240_14x14", 8,  240,  14,  14,  240, 5, 5, 1, 2, 1,  240),
    ("dw5_s1_c1152_4x4",  8, 1152,   4,   4, 1152, 5, 5, 1, 2, 1, 1152),
    ("dw5_s2_c144_28x28", 8,  144,  28,  28,  144, 5, 5, 2, 2, 1,  144),
    # 7x7 depthwise (ConvNeXt-T stages 1 and 3 at 112x112)
    ("dw7_s1_c96_28x28",  8,   96,  28,  28,   96, 7, 7, 1, 3, 1,   96),
    ("dw7_s1_c384_7x7",   8,  384,   7,   7,  384, 7, 7, 1, 3, 1,  384),
    # 16 channels per group (RegNetX-400MF's group width), stride 1 and 2
    ("g16_s1_c400_4x4",   8,  400,   4,   4,  400, 3, 3, 1, 1, 1,   25),
    ("g16_s1_c160_7x7",   8,  160,   7,   7,  160, 3, 3, 1, 1, 1,   10),
    ("g16_s2_c400_7x7",   8,  400,   7,   7,  400, 3, 3, 2, 1, 1,   25),
    ("g16_s2_c160_14x14", 8,  160,  14,  14,  160, 3, 3, 2, 1, 1,   10),
    # 1x1 on tiny planes with many channels (RegNetX, MobileNetV2, ShuffleNetV2)
    ("pw_c400_k400_4x4",  8,  400,   4,   4,  400, 1, 1, 1, 0, 1,    1),
    ("pw_c160_k960_4x4",  8,  160,   4,   4,  960, 1, 1, 1, 0, 1,    1),
    ("pw_c960_k160_4x4",  8,  960,   4,   4,  160, 1, 1, 1, 0, 1,    1),
    ("pw_c116_k116_7x7",  8,  116,   7,   7,  116, 1, 1, 1, 0, 1,    1),
    # dense 3x3 on the last stage's small planes, and strided (ResNet-18's stage 4 at 112x112:
    # 4x4 planes; the first block's stride-2 3x3, a kind the public suite has no instance of)
    ("dense3_s1_c512_k512_4x4", 8, 512, 4, 4, 512, 3, 3, 1, 1, 1, 1),
    ("dense3_s2_c256_k512_7x7", 8, 256, 7, 7, 512, 3, 3, 2, 1, 1, 1),
    # squeeze-excite: 1x1 on 1x1 planes, one pixel per image (EfficientNet-B0's last stage)
    ("se_c1152_k48_1x1",  8, 1152,   1,   1,   48, 1, 1, 1, 0, 1,    1),
    ("se_c48_k1152_1x1",  8,   48,   1,   1, 1152, 1, 1, 1, 0, 1,    1),
))
ALL = SUITE + NETWORK
NAMES = tuple(shape.name for shape in ALL)
NETWORK_NAMES = frozenset(shape.name for shape in NETWORK)

# The CPU suite: batch 2, batch 1 where a shape is already tiny or (dilated)
# large per image; five shapes left out so a full run stays in minutes. The
# network layers keep their batch 8: at batch 2 a 4x4 plane is 32 pixels, not
# the work the network gives the kernel.
CPU_BATCH = 2
CPU_BATCH_ONE = frozenset({"seed_pattern", "seed_fit", "dilated_3x3", "batch1_3x3"})
CPU_LEFT_OUT = frozenset({"vgg_3x3", "r50_res3_3x3", "r50_res4_1x1", "r50_down_s2", "batch1_3x3"})

# The quick subset (CI smoke test): the launch-bound seeds, a dense 3x3, a 1x1,
# depthwise and grouped, so every kernel family is exercised, and two network
# layers (small-plane depthwise, strided 16 per group), which cost little.
QUICK = ("seed_pattern", "seed_fit", "r50_res2_1x1", "r50_res4_3x3", "mbv2_dw_3x3", "grouped_3x3",
         "dw3_s1_c384_7x7", "g16_s2_c400_7x7")


def family(name):
    """'network' for a layer of NETWORK, 'suite' for a public suite shape:
    the reports summarise the two apart (the suite's geomean stays
    comparable with runs made before the network layers existed)."""
    return "network" if name in NETWORK_NAMES else "suite"


def for_device(shape, device):
    """`shape` as benchmarked on `device` ('cpu' or 'cuda'): the CPU batch rule
    applies to any public suite shape, including those the CPU suite leaves
    out; network layers keep their batch."""
    if device == "cpu" and shape.name not in NETWORK_NAMES:
        return replace(shape, n=1 if shape.name in CPU_BATCH_ONE else min(shape.n, CPU_BATCH))
    return shape


def select(device, names=None, quick=False):
    """Shapes to run on `device`: the named ones in suite order, else the
    quick subset or the device's whole suite (public suite, then the network
    layers). Unknown names raise ValueError."""
    if names:
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"unknown shape(s) {unknown}; expected names from {list(NAMES)}")
        chosen = [s for s in ALL if s.name in set(names)]
    elif quick:
        chosen = [s for s in ALL if s.name in QUICK]
    elif device == "cpu":
        chosen = [s for s in ALL if s.name not in CPU_LEFT_OUT]
    else:
        chosen = list(ALL)
    return [for_device(s, device) for s in chosen]


def get(name, device="cuda"):
    """The shape called `name`, with `device`'s batch rule."""
    return select(device, [name])[0]
