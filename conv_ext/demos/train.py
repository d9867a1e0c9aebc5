"""train: a small CNN on scikit-learn's handwritten digits, twice.

scikit-learn ships the 1,797 8x8 digit images inside its package (no
download). A two-layer CNN is trained on 80 % of them once as written, with
torch.nn.Conv2d, and once after conv_ext.replace_conv2d swapped its
convolutions for MyConv2d, from the same initial weights, on the same
batches in the same order. Both see the same arithmetic up to the order of
float32 additions, so their losses agree to rounding at first; those
rounding differences then grow slowly as training feeds them back, which is
how any two correct float32 implementations behave. The demo reports test
accuracy and seconds per epoch for each; the epochs of the two runs are
interleaved so a busy machine slows both alike.
"""
import copy
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..modules import replace_conv2d


def load_digits(seed, device="cpu", dtype=torch.float32):
    """(train_x, train_y, test_x, test_y): pixels scaled to [0, 1], shaped
    (N, 1, 8, 8); a stratified 80/20 split drawn from `seed`."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    x = torch.tensor(digits.images / 16.0, dtype=dtype).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.2, stratify=y.numpy(), random_state=seed)
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return tuple(t.to(device) for t in (x[train_idx], y[train_idx], x[test_idx], y[test_idx]))


def make_model():
    """8x8 digit -> 16 maps 8x8 -> 32 maps 4x4 (stride 2) -> 10 logits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


def twin_models(seed, device="cpu", dtype=torch.float32):
    """(reference, ours): the same initial weights, drawn from `seed`; ours
    has its nn.Conv2d layers replaced by MyConv2d."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reference = make_model().to(device, dtype)
    return reference, replace_conv2d(copy.deepcopy(reference))


class Run:
    """One model's training: its optimizer, its batch order, its records."""

    def __init__(self, model, seed, lr):
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.order = torch.Generator().manual_seed(seed)
        self.losses, self.seconds, self.accuracy = [], [], []

    def epoch(self, x, y, batch_size, max_batches=None):
        sync(x.device)
        start = time.perf_counter()
        self.model.train()
        perm = torch.randperm(len(y), generator=self.order).to(x.device)
        for i, first in enumerate(range(0, len(y), batch_size)):
            if max_batches is not None and i == max_batches:
                break
            batch = perm[first:first + batch_size]
            loss = F.cross_entropy(self.model(x[batch]), y[batch])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.losses.append(loss.item())
        sync(x.device)
        self.seconds.append(time.perf_counter() - start)

    @torch.no_grad()
    def evaluate(self, x, y):
        self.model.eval()
        predicted = self.model(x).argmax(dim=1)
        self.accuracy.append((predicted == y).double().mean().item())
        return predicted


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TrainResult:
    epochs: int
    reference: Run              # nn.Conv2d
    ours: Run                   # MyConv2d
    filters: torch.Tensor       # ours' first-layer weights (16, 3, 3)
    test_x: torch.Tensor
    test_y: torch.Tensor
    predicted: torch.Tensor     # ours' test predictions
    where: str                  # what the seconds were measured on
    files: list = field(default_factory=list)

    def loss_gap(self, steps=None):
        """Largest |loss difference| over the first `steps` steps (all if None)."""
        pairs = list(zip(self.reference.losses, self.ours.losses))[:steps]
        return max(abs(a - b) for a, b in pairs)

    @staticmethod
    def per_epoch(run):
        """Median seconds per epoch: the first epoch pays one-off warm-up."""
        return statistics.median(run.seconds)

    def summary(self):
        ref, ours = self.reference, self.ours
        return (f"train: digits CNN, {self.epochs} epochs: test accuracy nn.Conv2d "
                f"{100 * ref.accuracy[-1]:.1f} %, MyConv2d {100 * ours.accuracy[-1]:.1f} %; "
                f"loss gap {self.loss_gap(10):.1e} over the first 10 steps, "
                f"{self.loss_gap():.1e} over all {len(ours.losses)}; seconds per epoch ({self.where}) "
                f"nn.Conv2d {self.per_epoch(ref):.3f}, MyConv2d {self.per_epoch(ours):.3f} "
                f"({self.per_epoch(ours) / self.per_epoch(ref):.1f}x)")


def run(out, device="cpu", seed=0, epochs=10, batch_size=64, lr=3e-3, max_batches=None,
        dtype=torch.float32, figures=True, progress=True):
    """Trains both twins in lock-step, writes the figures into `out` (unless
    figures=False) and returns a TrainResult."""
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ValueError(f"train: expected epochs >= 1, got {epochs}")
    train_x, train_y, test_x, test_y = load_digits(seed, device, dtype)
    reference_model, our_model = twin_models(seed, device, dtype)
    reference, ours = Run(reference_model, seed, lr), Run(our_model, seed, lr)
    for _ in tqdm(range(epochs), desc="train", disable=not progress):
        for r in (reference, ours):
            r.epoch(train_x, train_y, batch_size, max_batches)
            predicted = r.evaluate(test_x, test_y)
    filters = our_model[0].weight.detach()[:, 0].cpu()
    where = (torch.cuda.get_device_name(device) if torch.device(device).type == "cuda"
             else f"cpu, {torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}")
    result = TrainResult(epochs, reference, ours, filters, test_x.cpu(), test_y.cpu(),
                         predicted.cpu(), where)
    if figures:
        from . import train_figures
        result.files = train_figures.write_all(out, result)
    return result
