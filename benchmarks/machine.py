"""Where a run happened: CPU or card, driver, torch, commit, date, threads.
Every record carries these, so a number can always be traced to its setup."""
import datetime
import os
import platform
import subprocess

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd):
    try:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit():
    """Short hash of HEAD, '+dirty' when tracked files differ from it."""
    head = _run(["git", "rev-parse", "--short=10", "HEAD"])
    if head is None:
        return "unknown"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return head + ("+dirty" if dirty else "")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The CPU's feature flags (from /proc/cpuinfo), an empty set where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Vector extensions worth naming in a record, widest first: they decide which
# kernels run (ours, oneDNN's) and so what a ratio means.
_ISA_FLAGS = ("amx_tile", "amx_bf16", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx2", "fma")


def conv_ext_isa(flags=None, env=None):
    """The instruction set conv_ext's CPU kernels take, as csrc/cpu/isa.cpp
    decides it: CONV_EXT_CPU_ISA=scalar forces the portable kernels, =avx2
    stops at AVX2 + FMA, =avx512 at AVX-512F, unset or auto takes AVX-512F
    where present, with bfloat16 on its dot-product instructions
    ("avx512_bf16") where the CPU has AVX-512 BF16 (and BW, VL)."""
    flags = cpu_flags() if flags is None else flags
    env = os.environ.get("CONV_EXT_CPU_ISA") if env is None else env
    if env == "scalar":
        return "scalar"
    avx2 = {"avx2", "fma"} <= flags
    if env not in ("avx2", "avx512") and avx2 and {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"} <= flags:
        return "avx512_bf16"
    if env != "avx2" and avx2 and "avx512f" in flags:
        return "avx512"
    return "avx2" if avx2 else "scalar"


def isa():
    """One line naming the instruction sets of a CPU run: conv_ext's choice
    (with CONV_EXT_CPU_ISA when set), torch's ATen capability (oneDNN picks
    on its own, capped by ONEDNN_MAX_CPU_ISA, recorded in the command), and
    the CPU's vector flags."""
    env = os.environ.get("CONV_EXT_CPU_ISA")
    ours = conv_ext_isa() + (f" (CONV_EXT_CPU_ISA={env})" if env else "")
    try:
        aten = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        aten = "unknown"
    flags = cpu_flags()
    named = [f for f in _ISA_FLAGS if f in flags] or ["none of " + "/".join(_ISA_FLAGS)]
    return f"conv_ext {ours}, torch {aten}; CPU flags {' '.join(named)}"


def gpu_driver():
    version = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return version.splitlines()[0] if version else "unknown"


# Environment variables that change what a run measures (threading, devices).
# CONV_EXT_CPU_ISA, ONEDNN_MAX_CPU_ISA and ATEN_CPU_CAPABILITY cap the
# instruction sets of ours and torch's kernels (the AVX2 side of a machine).
_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "CUDA_VISIBLE_DEVICES", "CUBLAS_", "CUDNN_",
                 "CONV_EXT_", "ONEDNN_", "DNNL_", "ATEN_CPU_CAPABILITY")


def command(program, argv):
    """The command line that reproduces a run, with the environment variables
    that affect timing in front of it."""
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)]
    return " ".join([*env, program, *argv])


def load_average():
    """The 1-minute load average (None where unknown): above ~0.5 on an idle
    machine means other processes share the cores and timings are noisy."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe(device):
    """The environment of a run on `device` as a flat dict."""
    info = {
        "device": device,
        "torch_version": torch.__version__,
        "commit": commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "threads": torch.get_num_threads(),
        "load_avg": load_average(),
    }
    if device == "cpu":
        info["card"] = f"{cpu_name()} ({os.cpu_count()} logical cores)"
        info["driver"] = None
        info["isa"] = isa()
    else:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info["card"] = f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB)"
        info["driver"] = gpu_driver()
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info
