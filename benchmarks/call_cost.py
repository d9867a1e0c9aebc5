"""python -m benchmarks.call_cost: the per-call cost of any small layer (the
standalone form of benchmarks/overhead.py, which e2e reports), with a CPU
clock for busy machines and the digits demo's layer shapes, where
the host path (Python checks, dispatch, autograd bookkeeping, allocation)
is most of the time: MyConv2d against the nn.Conv2d it replaces, same
weights, forward under no_grad and forward+backward.

Verified first (outputs and gradients agree), then timed interleaved: each
sample runs `--calls` calls of one contender, then of the other, in
alternating order, and the median over `--samples` samples is reported with
the 10th percentile (on a shared machine the noise only adds: the low
percentile is the steadier estimate). A call of ~10 us is too short to time
alone, hence the batches of calls. `--clock cpu` counts the calling
thread's CPU time instead of wall time, which a busy machine's preemptions
do not inflate (use it with --threads 1, where all work is on that thread).

Default shape: issue 14's, MyConv2d(1, 4, 3) on one 8x8 image. The digits
demo's layers: --batch 64 --out-channels 16 --padding 1, and --batch 64
--in-channels 16 --out-channels 32 --stride 2 --padding 1."""
import argparse
import statistics
import time

import torch
from torch import nn

import conv_ext


def contenders(in_ch, out_ch, kernel, size, batch, stride=1, padding=0):
    torch.manual_seed(0)
    ref = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding)
    ours = conv_ext.MyConv2d.from_conv2d(ref)
    x = torch.randn(batch, in_ch, size, size)
    xg = x.clone().requires_grad_()

    def forward(m):
        def call():
            with torch.no_grad():
                return m(x)
        return call

    def forward_backward(m):
        def call():
            m(xg).sum().backward()
        return call

    def verify():
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
        grads = []
        for m in (ref, ours):
            xg.grad = None
            m.zero_grad()
            m(xg).sum().backward()
            grads.append([xg.grad.clone(), m.weight.grad.clone(), m.bias.grad.clone()])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 sums over the batch

    return verify, {"forward (no_grad)": forward, "forward+backward": forward_backward}, ref, ours


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def time_calls(fn, calls, clock):
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls * 1e6


def compare(a, b, calls, samples, clock):
    """Median and 10th percentile of the per-call microseconds of a and b,
    sampled interleaved in alternating order."""
    for fn in (a, b, a, b):  # warm-up: allocator, dispatch caches
        time_calls(fn, calls, clock)
    ta, tb = [], []
    for i in range(samples):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            out.append(time_calls(fn, calls, clock))

    def summary(t):
        return statistics.median(t), statistics.quantiles(t, n=10)[0]

    return summary(ta), summary(tb)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--out-channels", type=int, default=4)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", type=int, default=0)
    p.add_argument("--calls", type=int, default=100, help="calls per sample")
    p.add_argument("--samples", type=int, default=101)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    verify, passes, ref, ours = contenders(
        args.in_channels, args.out_channels, args.kernel, args.size, args.batch, args.stride, args.padding)
    verify()
    print(f"MyConv2d({args.in_channels}, {args.out_channels}, {args.kernel}, stride={args.stride}, "
          f"padding={args.padding}) on {args.batch}x{args.in_channels}x"
          f"{args.size}x{args.size}, {torch.get_num_threads()} threads, {args.clock} clock; verified against nn.Conv2d")
    print(f"us per call: median (10th percentile) of {args.samples} interleaved samples x {args.calls} calls")
    print(f"{'pass':<20}{'nn.Conv2d':>18}{'MyConv2d':>18}{'ratio':>14}")
    for name, make in passes.items():
        (rm, rp), (om, op) = compare(make(ref), make(ours), args.calls, args.samples, CLOCKS[args.clock])
        print(f"{name:<20}{rm:9.2f} ({rp:6.2f}){om:9.2f} ({op:6.2f}){om / rm:7.2f} ({op / rp:4.2f})")


if __name__ == "__main__":
    main()
