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


def gpu_driver():
    version = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return version.splitlines()[0] if version else "unknown"


# Environment variables that change what a run measures (threading, devices).
_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "CUDA_VISIBLE_DEVICES", "CUBLAS_", "CUDNN_")


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
    else:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info["card"] = f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB)"
        info["driver"] = gpu_driver()
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info
