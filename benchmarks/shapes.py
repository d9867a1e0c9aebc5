"""The public shape suite (the one of BASELINES.md), defined once: the GPU
suite as listed, the CPU suite with its smaller batches and fewer shapes, and
the quick subset that CI smoke-tests."""
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
NAMES = tuple(shape.name for shape in SUITE)

# The CPU suite: batch 2, batch 1 where a shape is already tiny or (dilated)
# large per image; five shapes left out so a full run stays in minutes.
CPU_BATCH = 2
CPU_BATCH_ONE = frozenset({"seed_pattern", "seed_fit", "dilated_3x3", "batch1_3x3"})
CPU_LEFT_OUT = frozenset({"vgg_3x3", "r50_res3_3x3", "r50_res4_1x1", "r50_down_s2", "batch1_3x3"})

# The quick subset (CI smoke test): the launch-bound seeds, a dense 3x3, a 1x1,
# depthwise and grouped, so every kernel family is exercised.
QUICK = ("seed_pattern", "seed_fit", "r50_res2_1x1", "r50_res4_3x3", "mbv2_dw_3x3", "grouped_3x3")


def for_device(shape, device):
    """`shape` as benchmarked on `device` ('cpu' or 'cuda'): the CPU batch rule
    applies to any suite shape, including those the CPU suite leaves out."""
    if device == "cpu":
        return replace(shape, n=1 if shape.name in CPU_BATCH_ONE else min(shape.n, CPU_BATCH))
    return shape


def select(device, names=None, quick=False):
    """Shapes to run on `device`: the named ones in suite order, else the
    quick subset or the device's whole suite. Unknown names raise ValueError."""
    if names:
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"unknown shape(s) {unknown}; expected names from {list(NAMES)}")
        chosen = [s for s in SUITE if s.name in set(names)]
    elif quick:
        chosen = [s for s in SUITE if s.name in QUICK]
    elif device == "cpu":
        chosen = [s for s in SUITE if s.name not in CPU_LEFT_OUT]
    else:
        chosen = list(SUITE)
    return [for_device(s, device) for s in chosen]


def get(name, device="cuda"):
    """The suite shape called `name`, with `device`'s batch rule."""
    return select(device, [name])[0]
