"""Builds conv_ext._C: the CPU kernels always, the CUDA kernels when a CUDA
build of torch and nvcc are present (or FORCE_CUDA=1 is set)."""
import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import (
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

ROOT = os.path.dirname(os.path.abspath(__file__))


def sources(pattern):
    """Files matching `pattern` under the repository root; `**` spans
    subfolders, so csrc/cpu/ and csrc/cuda/ can hold one folder per
    algorithm."""
    return sorted(
        os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def with_cuda():
    cuda_sources = sources("csrc/cuda/**/*.cu")
    if not cuda_sources:
        return False
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def extension():
    cpp = sources("csrc/*.cpp") + sources("csrc/cpu/**/*.cpp")
    # No -std flag: torch's BuildExtension adds the standard its headers need
    # (C++20 for current torch), for g++ and nvcc alike.
    cxx = ["-O3", "-fopenmp"]
    link = ["-fopenmp"]
    if with_cuda():
        return CUDAExtension(
            "conv_ext._C",
            cpp + sources("csrc/cuda/**/*.cpp") + sources("csrc/cuda/**/*.cu"),
            extra_compile_args={
                "cxx": cxx + ["-DCONV_EXT_WITH_CUDA"],
                "nvcc": ["-O3", "-lineinfo"],
            },
            extra_link_args=link,
        )
    return CppExtension(
        "conv_ext._C", cpp, extra_compile_args={"cxx": cxx}, extra_link_args=link
    )


setup(
    packages=find_packages(include=["conv_ext", "conv_ext.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
