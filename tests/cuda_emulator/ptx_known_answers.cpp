// The known-answer kernels of ptx_known_answer_kernels.cuh, run in the CPU
// emulator, as a Python module for tests/test_emulator_ptx.py. Each entry
// takes the per-lane inputs as tensors and returns what every lane got;
// the test compares that with fragments it writes out itself from the PTX
// ISA's figures, never with this emulator's layout code.
#include <torch/extension.h>

#include "emulator.h"

#include "ptx_known_answer_kernels.cuh"

namespace {

namespace kat = conv_ext::ptx_kat;

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

void check(const at::Tensor& t, at::ScalarType dtype, at::IntArrayRef shape, const char* name) {
  TORCH_CHECK(t.scalar_type() == dtype, name, ": expected ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, name, ": expected shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
}

// a: int32 [32, 4], b: int32 [32, 2] (register bits), c: float32 [32, 4].
at::Tensor mma(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, int64_t kind, int64_t chain) {
  check(a, at::kInt, {32, 4}, "a");
  check(b, at::kInt, {32, 2}, "b");
  check(c, at::kFloat, {32, 4}, "c");
  TORCH_CHECK(kind >= 0 && kind <= 2, "kind: expected 0 (tf32), 1 (bf16) or 2 (f16), got ", kind);
  at::Tensor d = at::empty({32, 4}, c.options());
  kat::MmaParams p{ptr<uint32_t>(a), ptr<uint32_t>(b), ptr<float>(c), ptr<float>(d),
                   static_cast<int>(kind), static_cast<int>(chain)};
  emu::launch(kat::mma_kernel, 1, 32, p);
  return d;
}

at::Tensor to_tf32(const at::Tensor& x) {
  check(x, at::kFloat, x.sizes(), "x");
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kInt));
  kat::Tf32Params p{ptr<float>(x), ptr<uint32_t>(out), x.numel()};
  emu::launch(kat::to_tf32_kernel, 1, 32, p);
  return out;
}

// rows: int16 [32, 8] (row j: matrix j / 8, row j % 8); slot_of_row: int32 [32].
at::Tensor ldmatrix(const at::Tensor& rows, const at::Tensor& slot_of_row, int64_t variant, int64_t misaligned_lane,
                    bool clobber) {
  check(rows, at::kShort, {32, 8}, "rows");
  check(slot_of_row, at::kInt, {32}, "slot_of_row");
  at::Tensor out = at::zeros({32, 4}, rows.options().dtype(at::kInt));
  kat::LdmatrixParams p{ptr<uint16_t>(rows), ptr<int32_t>(slot_of_row), ptr<uint32_t>(out),
                        static_cast<int>(variant), static_cast<int>(misaligned_lane), clobber ? 1 : 0};
  TORCH_CHECK(slot_of_row.min().item<int>() >= 0 && slot_of_row.max().item<int>() < kat::kLdmatrixSlots,
              "slot_of_row: expected slots in [0, ", kat::kLdmatrixSlots, ")");
  emu::launch(kat::ldmatrix_kernel, 1, 32, p, kat::kLdmatrixSlots * 16);
  return out;
}

// src: int32 [blocks, threads, 16]; returns the log [blocks, threads, 6, 16].
at::Tensor cp_async(const at::Tensor& src, bool poisoned, int64_t misalign_size, int64_t misalign_shared,
                    int64_t misalign_global) {
  TORCH_CHECK(src.dim() == 3 && src.size(2) == 16, "src: expected [blocks, threads, 16], got ", src.sizes());
  check(src, at::kInt, src.sizes(), "src");
  const int64_t blocks = src.size(0), threads = src.size(1);
  at::Tensor log = at::zeros({blocks, threads, 6, 16}, src.options());
  kat::CpAsyncParams p{ptr<uint32_t>(src), ptr<uint32_t>(log), static_cast<int>(misalign_size),
                       static_cast<int>(misalign_shared), static_cast<int>(misalign_global)};
  const emu::CpAsyncPending saved = emu::cp_async_pending();
  emu::cp_async_pending() = poisoned ? emu::CpAsyncPending::kPoisoned : emu::CpAsyncPending::kStale;
  emu::launch(kat::cp_async_kernel, static_cast<unsigned>(blocks), static_cast<int>(threads), p,
              threads * 16 * sizeof(uint32_t));
  emu::cp_async_pending() = saved;
  return log;
}

at::Tensor syncwarp(bool sync) {
  at::Tensor out = at::empty({32}, at::TensorOptions().dtype(at::kInt));
  kat::SyncwarpParams p{ptr<uint32_t>(out), sync ? 1 : 0};
  emu::launch(kat::syncwarp_kernel, 1, 32, p, 32 * sizeof(uint32_t));
  return out;
}

// The ldmatrix bank-conflict counters since the last call (then reset).
std::vector<int64_t> ldmatrix_conflicts() {
  emu::SharedMemoryStats& stats = emu::shared_memory_stats();
  std::vector<int64_t> out{static_cast<int64_t>(stats.ldmatrix_matrices),
                           static_cast<int64_t>(stats.ldmatrix_extra_wavefronts)};
  stats = emu::SharedMemoryStats{};
  return out;
}

// Misuse the emulator must refuse (each aborts the process, so the tests
// call these in a subprocess): a warp split between two collectives, half
// a warp in an mma, dynamic shared memory that was not launched with.
struct MisuseParams {
  int which;
  float* out;
};

__global__ void misuse_kernel(MisuseParams p) {
  const int lane = threadIdx.x % 32;
  uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float c[4] = {0, 0, 0, 0};
  if (p.which == 0) {
    if (lane < 16) {
      conv_ext::cuda::ptx::mma_tf32_m16n8k8(c, a, b, c);
    } else {
      c[0] = __shfl_down_sync(0xffffffffu, c[0], 1);
    }
  } else if (p.which == 1) {
    if (lane < 16) {
      conv_ext::cuda::ptx::mma_bf16_m16n8k16(c, a, b, c);
    }
  } else {
    c[0] = *conv_ext::cuda::dynamic_smem<float>();
  }
  p.out[threadIdx.x] = c[0];
}

void misuse(int64_t which) {
  std::vector<float> out(32);
  emu::launch(misuse_kernel, 1, 32, MisuseParams{static_cast<int>(which), out.data()});
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mma", &mma, "one mma per lane: kind 0 tf32 m16n8k8, 1 bf16 m16n8k16, 2 f16 m16n8k16");
  m.def("to_tf32", &to_tf32, "cvt.rna.tf32.f32 of each element, as int32 bits");
  m.def("ldmatrix", &ldmatrix, "one ldmatrix per lane; variant 0 x1, 1 x2, 2 x4, 3 x2.trans, 4 x4.trans");
  m.def("cp_async", &cp_async, "the cp.async sequence of cp_async_kernel, logged per step");
  m.def("syncwarp", &syncwarp, "each lane reads its neighbour's word, after __syncwarp when `sync`");
  m.def("ldmatrix_conflicts", &ldmatrix_conflicts, "[matrices, extra wavefronts] since the last call; resets");
  m.def("misuse", &misuse, "0: warp split between mma and shfl; 1: half a warp in mma; 2: no dynamic smem");
}
