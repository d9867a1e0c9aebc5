// The known-answer kernels compiled for the GPU, so that the SASS check of
// tests/test_emulator_ptx.py can read the instructions each wrapper of
// csrc/cuda/tensorop/ptx.cuh assembles into (nvcc -cubin, cuobjdump).
#include "ptx_known_answer_kernels.cuh"
