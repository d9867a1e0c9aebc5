"""A small run of every CUDA kernel variant of csrc/cuda/ (direct, GEMM with
small and large tiles, each pass, each dtype, the chunked reductions),
checked against F.conv2d, sized for compute-sanitizer:

    compute-sanitizer --tool memcheck  --error-exitcode 1 python tests/sanitizer_subset.py
    compute-sanitizer --tool racecheck --error-exitcode 1 python tests/sanitizer_subset.py
    compute-sanitizer --tool synccheck --error-exitcode 1 python tests/sanitizer_subset.py

Each must report 0 errors. The shapes are the smallest that reach each
kernel through the heuristic of csrc/cuda/heuristics.h; the comments name it.
Exits non-zero on a wrong result."""
import sys

import torch
import torch.nn.functional as F

from conv_ext import ops

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CASES = [
    (2, 4, 9, 7, 8, 3, 3, 1, 1, 1, 2),       # direct, all three passes
    (1, 3, 11, 9, 16, 3, 2, 2, 1, 2, 1),     # GEMM small forward/wgrad, direct grad input
    (2, 32, 9, 10, 48, 3, 3, (2, 1), (1, 2), (1, 2), 1),  # GEMM small, every pass
    (8, 128, 64, 64, 128, 3, 3, 1, 1, 1, 1),  # GEMM large tiles (float, half, bfloat16)
    (3, 20, 70, 70, 20, 1, 1, 1, 0, 1, 1),   # multi-chunk grad weight and bias
]


def main():
    torch.backends.cudnn.allow_tf32 = False
    failures = 0
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for n, c, h, w, k, r, s, stride, padding, dilation, groups in CASES:
            g = torch.Generator().manual_seed(0)
            x = torch.randn(n, c, h, w, generator=g).to("cuda", dtype)
            wt = torch.randn(k, c // groups, r, s, generator=g).to("cuda", dtype)
            b = torch.randn(k, generator=g).to("cuda", dtype)
            pair = lambda v: [v, v] if isinstance(v, int) else list(v)  # noqa: E731
            conf = (pair(stride), pair(padding), pair(dilation), groups)
            y = ops.conv2d_forward(x, wt, b, *conf)
            gy = torch.randn(y.shape, generator=g).to("cuda", dtype)
            got = (
                y,
                ops.conv2d_backward_input(gy, wt, list(x.shape), *conf),
                ops.conv2d_backward_weight(gy, x, list(wt.shape), *conf),
                ops.conv2d_backward_bias(gy),
            )
            xd, wd, bd = (t.double().requires_grad_() for t in (x, wt, b))
            yd = F.conv2d(xd, wd, bd, *conf)
            yd.backward(gy.double())
            for name, o, ref in zip(("output", "grad_input", "grad_weight", "grad_bias"), got,
                                    (yd, xd.grad, wd.grad, bd.grad)):
                rel = ((o.double() - ref).abs().max() / ref.abs().max().clamp_min(1)).item()
                bound = {torch.float64: 1e-12, torch.float32: 1e-4}.get(dtype, 2e-2)
                if not rel <= bound:
                    print(f"FAIL {dtype} {(n, c, h, w, k, r, s)} {name}: relative error {rel:.3g}")
                    failures += 1
    torch.cuda.synchronize()
    print("sanitizer subset:", "ok" if failures == 0 else f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
