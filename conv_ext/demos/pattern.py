"""pattern: finding lines in a noisy image with four hand-made 3x3 kernels.

A 100x100 image holds ten full-height vertical and ten full-width horizontal
lines of value 1. Four kernels look for them: a vertical line (middle column
1), a horizontal line (middle row 1), all zeros (the control: it sees
nothing), and a vertical line with -1 flanks. One MyConv2d(1, 4, 3) holding
the four kernels turns the image into four feature maps.

Then the demo measures how well each kernel finds its lines. The detection
rule is deliberately simple: a vertical line fills a whole column, so average
the kernel's map down every column (averaging 100 pixels divides the noise's
standard deviation by about ten) and call a column a line when its average
exceeds half of what the kernel answers to one clean, isolated line.
Horizontal lines likewise, with rows. Precision (how many found positions are
real lines) and recall (how many real lines were found) are measured against
the known positions, over many images, for a sweep of noise levels.
"""
import math
from dataclasses import dataclass, field

import torch

from ..modules import MyConv2d

SIZE = 100
LINES = 10
NAMES = ("vertical", "horizontal", "zeros", "flanked vertical")
# The lines each kernel is scored on: "v" vertical (columns), "h" horizontal.
TARGETS = ("v", "h", "v", "v")
LESSON_NOISE = 1.0  # the lesson adds U(-1, 1)


def kernels():
    """The lesson's four kernels, shaped (4, 1, 3, 3) as a conv weight."""
    k = torch.zeros(4, 1, 3, 3)
    k[0, 0, :, 1] = 1
    k[1, 0, 1, :] = 1
    k[3, 0, :, 1] = 1
    k[3, 0, :, [0, 2]] = -1
    return k


def line_positions(count, size, generator):
    """`count` sorted, distinct positions in [0, size) with no two adjacent.

    Two touching lines form one line two pixels wide, which a 3-wide kernel
    cannot split (the flanked kernel even cancels on it), so positions keep a
    gap: pick `count` of size - (count - 1) slots, then shift the i-th right
    by i."""
    slots = torch.randperm(size - (count - 1), generator=generator)[:count].sort().values
    return slots + torch.arange(count)


def make_images(count, generator, size=SIZE, lines=LINES):
    """`count` clean images (count, 1, size, size) and their line positions,
    as lists of (rows, cols) tensors."""
    images = torch.zeros(count, 1, size, size)
    truth = []
    for n in range(count):
        cols = line_positions(lines, size, generator)
        rows = line_positions(lines, size, generator)
        images[n, 0, :, cols] = 1
        images[n, 0, rows, :] = 1
        truth.append((rows, cols))
    return images, truth


def add_noise(images, amplitude, generator):
    """images + U(-amplitude, amplitude), independently per pixel."""
    noise = torch.rand(images.shape, generator=generator) * 2 - 1
    return images + amplitude * noise


def lesson_image(generator):
    """The lesson's image: one clean image (1, 1, SIZE, SIZE), its line
    positions (rows, cols) and the image plus the lesson's noise U(-1, 1)."""
    clean, truth = make_images(1, generator)
    return clean, truth[0], add_noise(clean, LESSON_NOISE, generator)


def line_detector(device="cpu"):
    """A MyConv2d holding the four kernels. padding=1 keeps the maps 100x100,
    so column c of a map is column c of the image."""
    conv = MyConv2d(1, 4, 3, padding=1, bias=False, device=device)
    with torch.no_grad():
        conv.weight.copy_(kernels())
    return conv.requires_grad_(False)


def profiles(maps):
    """Each kernel's map averaged along the direction of the lines it looks
    for: (N, 4, size), a value per column for vertical-line kernels and per
    row for the horizontal one."""
    cols = maps.mean(dim=2)
    rows = maps.mean(dim=3)
    pick = torch.tensor([t == "h" for t in TARGETS], device=maps.device).view(1, -1, 1)
    return torch.where(pick, rows, cols)


def thresholds(detector):
    """Half of each kernel's profile value on one clean, isolated line of its
    direction. A kernel that answers 0 (or less) to a clean line cannot find
    one: its threshold is infinite and it reports nothing."""
    device = detector.weight.device
    mid = SIZE // 2
    clean = torch.zeros(2, 1, SIZE, SIZE, device=device)
    clean[0, 0, :, mid] = 1
    clean[1, 0, mid, :] = 1
    prof = profiles(detector(clean))
    answers = [prof[0 if t == "v" else 1, k, mid].item() for k, t in enumerate(TARGETS)]
    return torch.tensor([a / 2 if a > 0 else math.inf for a in answers])


def detect(prof, limits):
    """Positions whose profile exceeds the kernel's threshold: for every
    image a list (one per kernel) of sets of positions."""
    above = (prof.cpu() > limits.view(1, -1, 1))
    return [[set(torch.nonzero(above[n, k]).flatten().tolist()) for k in range(above.shape[1])]
            for n in range(above.shape[0])]


@dataclass
class Counts:
    """Detections pooled over images: true positives, all reported
    positions, all real lines."""
    hits: int = 0
    reported: int = 0
    real: int = 0

    def add(self, found, truth):
        self.hits += len(found & truth)
        self.reported += len(found)
        self.real += len(truth)

    @property
    def precision(self):
        return self.hits / self.reported if self.reported else math.nan

    @property
    def recall(self):
        return self.hits / self.real if self.real else math.nan


def score(found, truth):
    """Pools detections against the true positions: one Counts per kernel."""
    counts = [Counts() for _ in TARGETS]
    for per_kernel, (rows, cols) in zip(found, truth):
        for k, target in enumerate(TARGETS):
            real = set((rows if target == "h" else cols).tolist())
            counts[k].add(per_kernel[k], real)
    return counts


def noise_sweep(detector, amplitudes, trials, generator):
    """Precision and recall of every kernel at every noise amplitude, each
    over `trials` fresh random images: (len(amplitudes), 4) tensors."""
    limits = thresholds(detector)
    device = detector.weight.device
    precision = torch.empty(len(amplitudes), len(TARGETS))
    recall = torch.empty_like(precision)
    for i, amplitude in enumerate(amplitudes):
        clean, truth = make_images(trials, generator)
        noisy = add_noise(clean, amplitude, generator).to(device)
        counts = score(detect(profiles(detector(noisy)), limits), truth)
        precision[i] = torch.tensor([c.precision for c in counts])
        recall[i] = torch.tensor([c.recall for c in counts])
    return precision, recall


def breakdown(amplitudes, recall, precision, level=0.9):
    """Per kernel, the first amplitude at which recall or precision falls
    below `level` (None if it never does in the sweep)."""
    found = []
    for k in range(recall.shape[1]):
        bad = [a for a, r, p in zip(amplitudes, recall[:, k], precision[:, k])
               if not (r >= level and (p >= level or math.isnan(p)))]
        found.append(bad[0] if bad else None)
    return found


@dataclass
class PatternResult:
    clean_counts: list          # Counts per kernel on the noise-free image
    lesson_counts: list         # Counts per kernel at the lesson's noise, U(-1, 1)
    amplitudes: list
    precision: torch.Tensor     # (len(amplitudes), 4)
    recall: torch.Tensor
    breakdown: list             # per kernel, first amplitude below 0.9 P or R
    files: list = field(default_factory=list)

    def summary(self):
        def pr(counts):
            return ", ".join(f"{n} P {c.precision:.2f} R {c.recall:.2f}"
                             for n, c in zip(NAMES, counts) if c.reported)
        clean_found = sum(c.hits for c in self.clean_counts)
        clean_false = sum(c.reported - c.hits for c in self.clean_counts)
        clean_real = sum(c.real for k, c in enumerate(self.clean_counts) if NAMES[k] != "zeros")
        fails = ", ".join(f"{n} {'>' + str(self.amplitudes[-1]) if b is None else b}"
                          for n, b in zip(NAMES, self.breakdown) if n != "zeros")
        return (f"pattern: noise-free image: {clean_found} of {clean_real} lines found, "
                f"{clean_false} false; "
                f"noise U(-1,1): {pr(self.lesson_counts)}; "
                f"P or R < 0.9 from noise amplitude: {fails}; zeros kernel finds nothing")


def run(out, device="cpu", seed=0, amplitudes=None, trials=50, figures=True):
    """Runs the demo, writes its figures into `out` (unless figures=False)
    and returns a PatternResult."""
    generator = torch.Generator().manual_seed(seed)
    if amplitudes is None:
        amplitudes = [round(0.5 * i, 1) for i in range(17)]  # 0 .. 8
    detector = line_detector(device)
    limits = thresholds(detector)

    clean, truth, noisy = lesson_image(generator)
    truth = [truth]
    with torch.no_grad():
        clean_maps = detector(clean.to(device))
        maps = detector(noisy.to(device))
    clean_counts = score(detect(profiles(clean_maps), limits), truth)
    lesson_counts = score(detect(profiles(maps), limits), truth)
    precision, recall = noise_sweep(detector, amplitudes, trials, generator)
    result = PatternResult(clean_counts, lesson_counts, list(amplitudes), precision, recall,
                           breakdown(amplitudes, recall, precision))
    if figures:
        from . import pattern_figures
        result.files = pattern_figures.write_all(
            out, clean[0, 0], noisy[0, 0], truth[0], maps[0].cpu(),
            profiles(maps)[0].cpu(), limits, result)
    return result
