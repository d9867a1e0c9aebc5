"""fit: gradient descent recovers a 3x3 filter from what it did to an image.

A random 50x50 image is convolved (padding 1) with a random 3x3 target
filter. A MyConv2d(1, 1, 3, padding=1, bias=False) starts from nn.Conv2d's
random initialisation and is trained with SGD (the lesson's lr 0.01,
momentum 0.01) to reproduce the target image under MSE. Its weights walk
towards the target filter; every `every` steps the demo keeps a snapshot.

The demo also says how fast that walk can be. The loss is quadratic in the
nine weights, so its curvature (Hessian, a 9x9 matrix computed here through
conv_ext's double backward) fixes the speed: each eigen-direction's error
shrinks by a known factor per step. The image's pixels are all positive
(U(0, 1)), so the nine shifted copies the filter sees are strongly
correlated: one direction (all weights together) is steep, the other eight
are shallow, and at lr 0.01 those eight barely move. The demo predicts the
steps needed and reports honestly how close 1000 steps get.
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..functional import conv2d
from ..modules import MyConv2d

TOLERANCE = 1e-3  # the weight error the summary calls converged


def problem(seed, device="cpu", size=50):
    """(image, target filter, target image), drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 1, size, size, generator=generator).to(device)
    target_filter = torch.rand(1, 1, 3, 3, generator=generator).to(device)
    return image, target_filter, conv2d(image, target_filter, padding=1)


def initial_layer(seed, device="cpu"):
    """A MyConv2d with nn.Conv2d's default initialisation drawn from `seed`,
    leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MyConv2d(1, 1, 3, padding=1, bias=False).to(device)


def curvature(image, target):
    """Eigenvalues (ascending) of the loss's Hessian in the nine weights."""
    def loss(w):
        return F.mse_loss(conv2d(image, w.view(1, 1, 3, 3), padding=1), target)

    zero = torch.zeros(9, dtype=image.dtype, device=image.device)
    hessian = torch.autograd.functional.hessian(loss, zero)
    return torch.linalg.eigvalsh(hessian.double().cpu())


def contraction(eigenvalues, lr, momentum):
    """The factor by which the slowest direction's error shrinks per step.

    SGD with momentum on a quadratic is the heavy-ball iteration
    e[t+1] = (1 + m - lr*h) e[t] - m e[t-1] along each eigen-direction of
    curvature h; the error decays like the larger root of
    z^2 - (1 + m - lr*h) z + m = 0. Returns the largest such |root|
    (>= 1: diverges)."""
    worst = 0.0
    for h in eigenvalues.tolist():
        b = 1 + momentum - lr * h
        disc = complex(b * b - 4 * momentum) ** 0.5
        worst = max(worst, abs((b + disc) / 2), abs((b - disc) / 2))
    return worst


def _round_down(x, digits=2):
    """x rounded down to `digits` significant digits: a step size printed
    for the user to pass back must be the one the prediction used."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.floor(x * scale) / scale


def steps_needed(start_error, rate, tolerance=TOLERANCE):
    """Steps until start_error * rate**t < tolerance (inf if it never is)."""
    if rate >= 1:
        return math.inf
    if start_error <= tolerance:
        return 0
    return math.ceil(math.log(tolerance / start_error) / math.log(rate))


@dataclass
class FitResult:
    steps: int
    lr: float
    momentum: float
    losses: list                 # MSE before each step
    errors: list                 # largest |weight - target| before each step, then the final one
    snapshots: list              # (step, weights (3, 3)) at step 0, every `every` steps, the end
    target_filter: torch.Tensor  # (3, 3)
    eigenvalues: torch.Tensor
    rate: float                  # predicted contraction per step
    predicted_steps: float       # predicted steps to TOLERANCE at this lr
    fast_lr: float               # about 1 / largest eigenvalue: a fast, stable step size
    fast_steps: float            # predicted steps to TOLERANCE at fast_lr
    files: list = field(default_factory=list)

    @property
    def final_error(self):
        return self.errors[-1]

    def summary(self):
        h = self.eigenvalues
        verdict = ("converged" if self.final_error < TOLERANCE else
                   f"NOT converged to {TOLERANCE:g}: about {self.predicted_steps} steps would be "
                   f"needed at lr {self.lr:g}, or about {self.fast_steps} at lr {self.fast_lr:g} "
                   f"(--lr {self.fast_lr:g})")
        return (f"fit: {self.steps} steps, lr {self.lr:g}, momentum {self.momentum:g}: final loss "
                f"{self.losses[-1]:.3g}, largest |learned - target| weight error "
                f"{self.final_error:.3g}, {verdict}; loss curvature {h[0]:.3g}..{h[-1]:.3g} "
                f"(condition number {h[-1] / h[0]:.0f})")


def run(out, device="cpu", seed=0, steps=1000, lr=0.01, momentum=0.01, every=100,
        figures=True, progress=True):
    """Runs the demo, writes its figures into `out` (unless figures=False)
    and returns a FitResult."""
    from tqdm.auto import tqdm

    if steps < 1:
        raise ValueError(f"fit: expected steps >= 1, got {steps}")
    if not lr > 0:
        raise ValueError(f"fit: expected lr > 0, got {lr}")
    image, target_filter, target = problem(seed, device)
    layer = initial_layer(seed, device)
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=momentum)

    def weight_error():
        return (layer.weight.detach() - target_filter).abs().max().item()

    losses, errors = [], []
    snapshots = [(0, layer.weight.detach()[0, 0].cpu().clone())]
    for step in tqdm(range(1, steps + 1), desc="fit", disable=not progress, mininterval=0.25):
        errors.append(weight_error())
        loss = F.mse_loss(layer(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % every == 0 or step == steps:
            snapshots.append((step, layer.weight.detach()[0, 0].cpu().clone()))
    errors.append(weight_error())

    eigenvalues = curvature(image, target)
    rate = contraction(eigenvalues, lr, momentum)
    fast_lr = _round_down(1 / eigenvalues[-1].item())
    fast_rate = contraction(eigenvalues, fast_lr, momentum)
    result = FitResult(
        steps, lr, momentum, losses, errors, snapshots, target_filter[0, 0].cpu(), eigenvalues,
        rate, steps_needed(errors[0], rate), fast_lr, steps_needed(errors[0], fast_rate))
    if figures:
        from . import fit_figures
        result.files = fit_figures.write_all(out, result)
    return result
