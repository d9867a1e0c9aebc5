"""Side-by-side timing of callables: interleaved repetitions (so drift of
clocks, temperature or a neighbour's load hits every contender alike), warm-up
first, median of the rest.

GPU: CUDA events around each call, with the L2 cache overwritten before every
call, so a problem that fits in L2 is not timed from cache. The device is
synchronized after the flush: the host then launches the call while the
start event has already fired, so launch and autograd overhead on the host
counts where it exceeds the GPU time (as it does for a user's small layers)
instead of hiding behind the flush.
CPU: time.perf_counter around each call; the caches are left as they are,
equally warm for every contender."""
import statistics
import time
from dataclasses import dataclass

import torch

# Larger than the L2 of any current GPU (H100: 50 MB, B200: 126 MB).
L2_FLUSH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """How long to time: warm-up calls, then repetitions until `seconds` of
    measured time per contender, no fewer than min_reps nor more than max_reps."""

    warmup: int
    min_reps: int
    max_reps: int
    seconds: float

    def reps_for(self, first_call_s):
        """Repetitions that fit the budget, given one call's time."""
        if first_call_s <= 0:
            return self.max_reps
        return max(self.min_reps, min(self.max_reps, int(self.seconds / first_call_s)))


BUDGETS = {
    ("cpu", False): Budget(warmup=2, min_reps=5, max_reps=100, seconds=1.0),
    ("cpu", True): Budget(warmup=1, min_reps=3, max_reps=10, seconds=0.15),
    ("cuda", False): Budget(warmup=5, min_reps=20, max_reps=300, seconds=0.3),
    ("cuda", True): Budget(warmup=3, min_reps=10, max_reps=50, seconds=0.05),
}


def budget(device, quick, reps=None):
    """The timing budget for `device`; `reps` forces an exact repetition count."""
    chosen = BUDGETS[(device, bool(quick))]
    if reps is not None:
        chosen = Budget(warmup=min(chosen.warmup, 1), min_reps=reps, max_reps=reps, seconds=0.0)
    return chosen


class _CudaFlush:
    def __init__(self, device):
        self.buffer = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)

    def __call__(self):
        self.buffer.zero_()


def _time_once_cpu(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(fns, device, plan):
    """Median milliseconds of each callable in `fns`, timed interleaved.

    Each repetition runs every callable once, in an order that alternates
    (A B, then B A) so that neither always follows the other."""
    if device == "cpu":
        return _compare_cpu(fns, plan)
    return _compare_cuda(fns, plan)


def _order(rep, count):
    return range(count) if rep % 2 == 0 else range(count - 1, -1, -1)


def _compare_cpu(fns, plan):
    first = [None] * len(fns)
    for _ in range(max(1, plan.warmup)):
        for i, fn in enumerate(fns):
            first[i] = _time_once_cpu(fn)
    reps = plan.reps_for(max(first))
    samples = [[] for _ in fns]
    for rep in range(reps):
        for i in _order(rep, len(fns)):
            samples[i].append(_time_once_cpu(fns[i]))
    return [statistics.median(s) * 1e3 for s in samples]


def _compare_cuda(fns, plan):
    flush = _CudaFlush(torch.cuda.current_device())
    for _ in range(max(1, plan.warmup)):
        for fn in fns:
            fn()
    torch.cuda.synchronize()
    # One flushed call per contender sizes the budget.
    first = _cuda_samples(fns, flush, 1)
    reps = plan.reps_for(max(s[0] for s in first) / 1e3)
    samples = _cuda_samples(fns, flush, reps)
    return [statistics.median(s) for s in samples]


def _cuda_samples(fns, flush, reps):
    events = [[] for _ in fns]
    for rep in range(reps):
        for i in _order(rep, len(fns)):
            flush()
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fns[i]()
            end.record()
            events[i].append((start, end))
    torch.cuda.synchronize()
    return [[s.elapsed_time(e) for s, e in pairs] for pairs in events]


def best_ms(fn, device, plan):
    """Fastest of the repetitions of one callable, in ms: a machine's limit is
    what it reaches at best, undisturbed by a neighbour's load."""
    if device == "cpu":
        for _ in range(max(1, plan.warmup)):
            first = _time_once_cpu(fn)
        return min(_time_once_cpu(fn) for _ in range(plan.reps_for(first))) * 1e3
    flush = _CudaFlush(torch.cuda.current_device())
    for _ in range(max(1, plan.warmup)):
        fn()
    first = _cuda_samples([fn], flush, 1)[0][0] / 1e3
    return min(_cuda_samples([fn], flush, plan.reps_for(first))[0])
