// Pieces the three GEMM-based passes share: strides, tap offset tables,
// parallel weight packing and the size of a pixel tile.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "../epilogue/epilogue.h"
#include "gemm_packed.h"
#include "microkernel.h"
#include "pack.h"

namespace conv_ext::cpu {

// Per-thread buffers reused from call to call. Fresh blocks of a few hundred
// KiB come from mmap, and touching them cost a page fault per 4 KiB on
// every call (page clearing was 9 % of a r50_res2_3x3 forward profile,
// these buffers and the output together). Slots:
//   0 C tile, 1 and 2 packed panels (or an image), 3 the calling thread's
//   packed weight or weight-gradient accumulator, the few-pixel passes'
//   patch panels of all images (gemm_few_pixels.h), or grad_output
//   transposed (col2im_batch.h).
// A slot grows to the largest request seen and keeps it; none is larger
// than a weight or one image, and only slot 3 grows with the batch (for
// the few-pixel passes, a few hundred pixels in all; for col2im_batch.h,
// grad_output's size).
template <typename T>
T* scratch(int slot, int64_t n) {
  thread_local std::vector<T> bufs[4];
  std::vector<T>& v = bufs[slot];
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

// Grain for at::parallel_for over items of `work` multiply-adds each: a
// parallel region costs ~10-30 us to open on a busy 2-core machine, more
// than the seed shapes' whole passes, so below ~64 K multiply-adds per
// thread the work stays on the calling thread.
inline int64_t grain_for(int64_t work) {
  constexpr int64_t kMinWork = 1 << 16;
  return std::max<int64_t>(1, kMinWork / std::max<int64_t>(1, work));
}

// The bias in the accumulation type, zeros when there is none.
template <typename acc_t, typename scalar_t>
std::vector<acc_t> bias_values(const std::optional<at::Tensor>& bias, int64_t K) {
  std::vector<acc_t> b(K, acc_t(0));
  if (bias.has_value() && bias->defined()) {
    const scalar_t* bp = bias->const_data_ptr<scalar_t>();
    for (int64_t k = 0; k < K; ++k) b[k] = static_cast<acc_t>(bp[k * bias->stride(0)]);
  }
  return b;
}

// Element strides of a 4-D tensor, in its logical dimension order.
struct Strides4 {
  int64_t d0, d1, d2, d3;
  explicit Strides4(const at::Tensor& t)
      : d0(t.stride(0)), d1(t.stride(1)), d2(t.stride(2)), d3(t.stride(3)) {}
};

struct WeightView {
  int64_t s0, s1, s2, s3;
  explicit WeightView(const at::Tensor& w)
      : s0(w.stride(0)), s1(w.stride(1)), s2(w.stride(2)), s3(w.stride(3)) {}
};

// True when the channel dimension has unit stride (channels_last data), so
// that runs of channels are contiguous.
inline bool channels_contiguous(const at::Tensor& t) {
  return t.size(1) > 1 && t.stride(1) == 1;
}

// Offsets of the taps (c, r, s) of a kernel in patch order: (c, r, s), or
// (r, s, c) when rsc.
inline void tap_offsets(
    int64_t C, int64_t R, int64_t S, int64_t sc, int64_t sr, int64_t ss,
    bool rsc, int64_t* out) {
  int64_t t = 0;
  if (rsc) {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t c = 0; c < C; ++c) out[t++] = c * sc + r * sr + s * ss;
  } else {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t s = 0; s < S; ++s) out[t++] = c * sc + r * sr + s * ss;
  }
}

// pack_table for G groups (group g at src + g * group_stride) into
// G consecutive blocks of round_up(xlen, width) x ylen, one panel per task.
template <typename acc_t, typename scalar_t>
void pack_table_parallel(
    const scalar_t* src,
    int64_t group_stride,
    int64_t G,
    const int64_t* xo,
    int64_t xlen,
    const int64_t* yo,
    int64_t ylen,
    int64_t width,
    acc_t* dst) {
  const int64_t panels = (xlen + width - 1) / width;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width * ylen));
  at::parallel_for(0, G * panels, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t g = task / panels, x0 = (task % panels) * width;
      pack_table(
          src + g * group_stride, xo + x0, std::min(width, xlen - x0), yo, ylen,
          width, dst + (g * panels * width + x0) * packed_depth<acc_t>(ylen));
    }
  });
}

// The micro-kernels for panels of type P with a C of type T: bfloat16 pairs
// (select_microkernel_bf16) or T itself.
template <typename T, typename P>
GemmKernel<T, P> select_gemm(Isa isa) {
  if constexpr (std::is_same_v<P, c10::BFloat16>) {
    static_assert(std::is_same_v<T, float>, "bfloat16 panels accumulate in float");
    return select_microkernel_bf16(isa);
  } else {
    return select_microkernel<T>(isa);
  }
}

// The packers' vector build for an instruction-set level (pack.h).
inline int vec_level(Isa isa) {
  return isa >= Isa::kAvx512 ? 2 : isa == Isa::kAvx2 ? 1 : 0;
}

// The bias, then the activation, on a float tile of a low-precision output
// before its one rounding to the output type (rows x cols, leading dimension
// ldc; bias per row or per column). Returns false, doing nothing, without an
// activation: the store then adds the bias itself.
template <typename acc_t>
bool bias_activation_in_place(
    acc_t* c, int64_t ldc, int64_t rows, int64_t cols, const acc_t* row_bias,
    const acc_t* col_bias, const Epilogue& e) {
  if (e.act == Activation::None) return false;
  for (int64_t i = 0; i < rows; ++i) {
    acc_t* ci = c + i * ldc;
    const acc_t rb = row_bias ? row_bias[i] : acc_t(0);
    if (col_bias) {
      for (int64_t j = 0; j < cols; ++j) ci[j] = ci[j] + rb + col_bias[j];
    } else {
      for (int64_t j = 0; j < cols; ++j) ci[j] = ci[j] + rb;
    }
  }
  activate_tile(c, rows, cols, ldc, int64_t(1), e);
  return true;
}

// Rows of the weight operand per block in the channels-major passes: 144 x
// 256 floats = 144 KiB stays in L2 while the patch block (256 x 192) is
// swept, instead of streaming a whole 2048-row weight from memory once per
// 32-pixel panel (1 x 1, 2048 -> 2048 channels: 168 GFLOP/s before).
constexpr int64_t kWeightRows = 144;

// Pixels per task: at most kMaxTilePixels (a 256 x 192 float patch block is
// 192 KiB, well inside L2), and small enough that the images x tiles tasks
// give every thread one. Not smaller: every task streams the whole packed
// weight, which a late layer's few pixels (7 x 7) must reuse as much as they
// can (r50_res5_3x3 forward: 4.03 ms with two tasks per thread, 3.67 with
// one).
constexpr int64_t kMaxTilePixels = 192;

inline int64_t pixel_tile(int64_t images, int64_t pixels, int64_t multiple) {
  const int64_t want = at::get_num_threads();
  const int64_t per_image = std::max<int64_t>(1, (want + images - 1) / images);
  const int64_t tile = round_up((pixels + per_image - 1) / per_image, multiple);
  return std::max<int64_t>(1, std::min({kMaxTilePixels, tile, pixels}));
}

}  // namespace conv_ext::cpu
