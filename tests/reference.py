"""What the tests compare against: torch's own convolution, and its error."""
import torch
import torch.nn.functional as F


def torch_conv_and_grads(x, w, b, grad_out_seed=0, **conv):
    """Output of F.conv2d and the gradients of <output, g> for a fixed random
    g, computed by torch (the reference for ours)."""
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = None if b is None else b.detach().requires_grad_()
    y = F.conv2d(x, w, b, **conv)
    return y, _grads(y, x, w, b, grad_out_seed)


def ours_conv_and_grads(fn, x, w, b, grad_out_seed=0, **conv):
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = None if b is None else b.detach().requires_grad_()
    y = fn(x, w, b, **conv)
    return y, _grads(y, x, w, b, grad_out_seed)


def _grads(y, x, w, b, seed):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y)
    inputs = [x, w] + ([] if b is None else [b])
    return torch.autograd.grad(y, inputs, g, allow_unused=True) if y.numel() else [torch.zeros_like(t) for t in inputs]


def low_precision_tolerance(x, w, b, ours, conv, grad_out_seed=0):
    """For float16/bfloat16/float32: the error of ours against a float64
    reference may be at most twice torch's own error in that dtype (plus a
    floor for exact zeros), output and each gradient."""
    ref_y, ref_g = torch_conv_and_grads(
        x.double(), w.double(), None if b is None else b.double(), grad_out_seed, **conv)
    t_y, t_g = torch_conv_and_grads(x, w, b, grad_out_seed, **conv)
    if not all(torch.isfinite(t).all() for t in (t_y, *t_g)):
        # torch's own low-precision CPU convolution sometimes returns NaN on
        # small strided shapes; measure its error as its float32 result
        # rounded once to the dtype instead.
        y32, g32 = torch_conv_and_grads(
            x.float(), w.float(), None if b is None else b.float(), grad_out_seed, **conv)
        t_y, t_g = y32.to(x.dtype), [g.to(x.dtype) for g in g32]
    o_y, o_g = ours
    eps = torch.finfo(x.dtype).eps
    for name, r, t, o in zip(["output", "grad_input", "grad_weight", "grad_bias"],
                             [ref_y, *ref_g], [t_y, *t_g], [o_y, *o_g]):
        scale = r.abs().max().item() if r.numel() else 0.0
        torch_err = (t.double() - r).abs().max().item() if r.numel() else 0.0
        our_err = (o.double() - r).abs().max().item() if r.numel() else 0.0
        bound = 2 * torch_err + 4 * eps * scale
        assert our_err <= bound, f"{name}: error {our_err:.3g} > 2x torch's {torch_err:.3g} (+floor)"


def relerr(ours, ref):
    """max |ours - ref| / max |ref|, in float64."""
    return (ours.double() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)


def _cpu_flag(flag):
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and flag in line.split() for line in f)
    except OSError:
        return False


def has_avx512_bf16():
    """Whether the CPU has AVX-512 BF16, where the bfloat16 GEMM runs its
    pair kernels at the "auto" level."""
    return _cpu_flag("avx512_bf16")


def runs_avx512(level):
    """Whether CONV_EXT_CPU_ISA=level runs the AVX-512 kernels: "auto" or
    "avx512" on a CPU with AVX-512F (csrc/cpu/isa.cpp caps a request at
    what the CPU has)."""
    return level in ("auto", "avx512") and _cpu_flag("avx512f")
