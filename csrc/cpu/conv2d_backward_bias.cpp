// Grad bias on the CPU: the sum of grad_output over N, P and Q for each
// output channel. Each channel is summed by one thread in a fixed order, in
// double, so the result is reproducible (for any thread count) and
// accurate for any dtype.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../conv_shape.h"
#include "gemm/conv_gemm.h"
#include "direct/direct_rows.h"
#include "isa.h"

namespace conv_ext::cpu {
namespace {

// Sum of n contiguous values in double: four vectors of B doubles in
// rotation (independent add chains), a value's lane and place in its chain
// depend only on its index, so the order is fixed. The 8 scalar lanes this replaces ran at 4x the time
// of torch's own sum on mbv2_dw_3x3 (0.19 ms against 0.13 for 3.6 MB).
template <typename T, int B>
double sum_run(const T* x, int64_t n) {
  using VD = typename Vec<double, B>::type;
  VD a0 = VD{}, a1 = VD{}, a2 = VD{}, a3 = VD{};
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    // Groups of 16 floats per lane added in float (four chains of four),
    // then widened: a sixteenth of the conversions, and a float sum of 16
    // values loses next to nothing. With groups of 4 the sum was
    // conversion-bound (mbv2_dw_3x3's 3.6 MB: 0.126 ms against torch's
    // 0.026).
    using VF = typename Vec<float, 2 * B>::type;
    using VH = typename Vec<float, B>::type;
    for (; i + 32 * B <= n; i += 32 * B) {
      VF f0 = loadv<2 * B>(x + i), f1 = loadv<2 * B>(x + i + 2 * B);
      VF f2 = loadv<2 * B>(x + i + 4 * B), f3 = loadv<2 * B>(x + i + 6 * B);
      for (int j = 8; j < 32; j += 8) {
        f0 += loadv<2 * B>(x + i + j * B);
        f1 += loadv<2 * B>(x + i + (j + 2) * B);
        f2 += loadv<2 * B>(x + i + (j + 4) * B);
        f3 += loadv<2 * B>(x + i + (j + 6) * B);
      }
      const VF f = (f0 + f1) + (f2 + f3);
      VH lo, hi;
      __builtin_memcpy(&lo, &f, sizeof lo);
      __builtin_memcpy(&hi, reinterpret_cast<const char*>(&f) + sizeof lo, sizeof hi);
      a0 += __builtin_convertvector(lo, VD);
      a1 += __builtin_convertvector(hi, VD);
    }
    // The rest's whole vectors (under 16) the same way, in two chains: a
    // 7 x 7 plane is 6 vectors of 8 (AVX2) and one widening instead of 12
    // (dw3_s1_c576_7x7's 4608 planes of 49 values: 0.070 ms against
    // torch's 0.050, AMD EPYC Zen 3, AVX2).
    if (i + 2 * B <= n) {
      VF f0 = loadv<2 * B>(x + i), f1 = VF{};
      i += 2 * B;
      for (; i + 4 * B <= n; i += 4 * B) {
        f1 += loadv<2 * B>(x + i);
        f0 += loadv<2 * B>(x + i + 2 * B);
      }
      if (i + 2 * B <= n) {
        f1 += loadv<2 * B>(x + i);
        i += 2 * B;
      }
      const VF f = f0 + f1;
      VH lo, hi;
      __builtin_memcpy(&lo, &f, sizeof lo);
      __builtin_memcpy(&hi, reinterpret_cast<const char*>(&f) + sizeof lo, sizeof hi);
      a2 += __builtin_convertvector(lo, VD);
      a3 += __builtin_convertvector(hi, VD);
    }
  }
  for (; i + 4 * B <= n; i += 4 * B) {
    a0 += __builtin_convertvector(loadv<B>(x + i), VD);
    a1 += __builtin_convertvector(loadv<B>(x + i + B), VD);
    a2 += __builtin_convertvector(loadv<B>(x + i + 2 * B), VD);
    a3 += __builtin_convertvector(loadv<B>(x + i + 3 * B), VD);
  }
  for (; i + B <= n; i += B) a0 += __builtin_convertvector(loadv<B>(x + i), VD);
  double tail = 0;
  for (; i < n; ++i) tail += static_cast<double>(x[i]);
  const VD a = (a0 + a1) + (a2 + a3);
  double sum = 0;
  for (int l = 0; l < B; ++l) sum += a[l];
  return sum + tail;
}

// acc[j] += the sum of run j (n values at x + j * ld) for j < runs, each
// summed as sum_run does. One call for many runs: a call per 4 x 4 or 7 x 7
// plane cost more than its sum (dw3_s1_c576_7x7, 8 x 576 planes of 49:
// 0.091 ms against torch's 0.066, AMD EPYC Zen 3, AVX2).
template <typename T>
CONV_EXT_FLAT_AVX512 void add_run_sums_avx512(
    const T* x, int64_t runs, int64_t ld, int64_t n, double* acc) {
  for (int64_t j = 0; j < runs; ++j) acc[j] += sum_run<T, 8>(x + j * ld, n);
}

template <typename T>
CONV_EXT_FLAT_AVX2 void add_run_sums_avx2(
    const T* x, int64_t runs, int64_t ld, int64_t n, double* acc) {
  for (int64_t j = 0; j < runs; ++j) acc[j] += sum_run<T, 4>(x + j * ld, n);
}

template <typename T>
void add_run_sums_isa(Isa isa, const T* x, int64_t runs, int64_t ld, int64_t n, double* acc) {
  switch (isa) {
    case Isa::kAvx512: return add_run_sums_avx512(x, runs, ld, n, acc);
    case Isa::kAvx2: return add_run_sums_avx2(x, runs, ld, n, acc);
    default:
      for (int64_t j = 0; j < runs; ++j) acc[j] += sum_run<T, 2>(x + j * ld, n);
  }
}

// acc[k] += x[i*K + k] for rows i < rows, in double: the channels_last
// sum, each pixel a contiguous run of K channels.
template <typename T, int B>
void add_pixels(const T* x, int64_t rows, int64_t K, double* acc) {
  using VD = typename Vec<double, B>::type;
  for (int64_t i = 0; i < rows; ++i) {
    const T* v = x + i * K;
    int64_t k = 0;
    for (; k + B <= K; k += B)
      storev<B>(acc + k, loadv<B>(acc + k) + __builtin_convertvector(loadv<B>(v + k), VD));
    for (; k < K; ++k) acc[k] += static_cast<double>(v[k]);
  }
}

template <typename T>
CONV_EXT_FLAT_AVX512 void add_pixels_avx512(const T* x, int64_t rows, int64_t K, double* acc) {
  add_pixels<T, 8>(x, rows, K, acc);
}

template <typename T>
CONV_EXT_FLAT_AVX2 void add_pixels_avx2(const T* x, int64_t rows, int64_t K, double* acc) {
  add_pixels<T, 4>(x, rows, K, acc);
}

template <typename T>
void add_pixels_isa(Isa isa, const T* x, int64_t rows, int64_t K, double* acc) {
  switch (isa) {
    case Isa::kAvx512: return add_pixels_avx512(x, rows, K, acc);
    case Isa::kAvx2: return add_pixels_avx2(x, rows, K, acc);
    default: return add_pixels<T, 2>(x, rows, K, acc);
  }
}

// Below this many elements the sum stays on the calling thread: waking a
// second one costs more than a small sum (grouped_3x3, 0.8 MB: 0.066 ms on
// one thread, 0.107 on two, when the sum was slower than it is now).
constexpr int64_t kParallelSum = int64_t(1) << 18;

template <typename scalar_t>
void conv2d_backward_bias_kernel(const at::Tensor& grad_output, at::Tensor& grad_bias) {
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  const int64_t N = grad_output.size(0), K = grad_output.size(1);
  const int64_t P = grad_output.size(2), Q = grad_output.size(3);
  scalar_t* db = grad_bias.mutable_data_ptr<scalar_t>();
  // Eight partial sums per channel, position q feeding sum q % 8: eight
  // independent add chains instead of one latency-bound chain (a 4-cycle
  // add per element), and still one fixed order.
  constexpr int64_t kLanes = 8;
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
    if (ys.d1 == 1 && K > 1 && ys.d3 == K && ys.d2 == Q * K && ys.d0 == P * Q * K) {
      // Dense channels_last: N*P*Q pixel rows of K channels, read in memory
      // order in fixed chunks of pixels, each into its own partial sums,
      // then the partials added in chunk order (deterministic for any
      // thread count). Blocks of channels per task read each pixel with a
      // stride of K (mbv2_dw_3x3 in NHWC: 0.34 ms against torch's 0.22).
      constexpr int64_t kChunk = 256;  // pixels
      const int64_t M = N * P * Q, chunks = (M + kChunk - 1) / kChunk;
      std::vector<double> part(chunks * K, 0.0);
      const Isa isa = cpu_isa();
      auto run = [&](int64_t begin, int64_t end) {
        for (int64_t ch = begin; ch < end; ++ch)
          add_pixels_isa(isa, dy + ch * kChunk * K, std::min(kChunk, M - ch * kChunk), K,
                         part.data() + ch * K);
      };
      if (M * K < kParallelSum) {
        run(0, chunks);
      } else {
        at::parallel_for(0, chunks, std::max<int64_t>(1, kParallelSum / 4 / (kChunk * K)), run);
      }
      for (int64_t k = 0; k < K; ++k) {
        double sum = 0;
        for (int64_t ch = 0; ch < chunks; ++ch) sum += part[ch * K + k];
        db[k] = static_cast<scalar_t>(sum);
      }
      return;
    }
  }
  if (ys.d1 == 1 && K > 1) {
    // Channels contiguous (channels_last): blocks of 64 channels per task,
    // each pixel adding a contiguous run; a channel at a time would stride
    // K elements per read (10 ms for r50_res2_1x1 in NHWC).
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (K + kBlock - 1) / kBlock;
    at::parallel_for(0, blocks, grain_for(N * P * Q * kBlock), [&](int64_t begin, int64_t end) {
      double part[kBlock];
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t k0 = blk * kBlock, nk = std::min(kBlock, K - k0);
        for (int64_t k = 0; k < nk; ++k) part[k] = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t p = 0; p < P; ++p)
            for (int64_t q = 0; q < Q; ++q) {
              const scalar_t* v = dy + n * ys.d0 + p * ys.d2 + q * ys.d3 + k0;
              for (int64_t k = 0; k < nk; ++k) part[k] += static_cast<double>(v[k]);
            }
        for (int64_t k = 0; k < nk; ++k) db[k0 + k] = static_cast<scalar_t>(part[k]);
      }
    });
    return;
  }
  const int64_t PQ = P * Q;
  const bool dense = ys.d3 == 1 && ys.d2 == Q;
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
    if (dense) {
      const Isa isa = cpu_isa();
      // Planes in memory order (image-major), each channel's plane sums
      // added in image order as before: one sequential stream instead of N
      // interleaved ones (mbv2_dw_3x3: 0.163 -> 0.139 ms).
      auto sums = [&](int64_t begin, int64_t end) {
        std::vector<double> sum(end - begin, 0.0);
        for (int64_t n = 0; n < N; ++n)
          add_run_sums_isa(isa, dy + n * ys.d0 + begin * ys.d1, end - begin, ys.d1, PQ, sum.data());
        for (int64_t k = begin; k < end; ++k) db[k] = static_cast<scalar_t>(sum[k - begin]);
      };
      if (N * K * PQ < kParallelSum) {
        sums(0, K);
      } else {
        at::parallel_for(0, K, std::max<int64_t>(1, kParallelSum / 4 / (N * PQ)), sums);
      }
      return;
    }
  }
  at::parallel_for(0, K, grain_for(N * P * Q), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      double part[kLanes] = {};
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p) {
          const scalar_t* row = dy + n * ys.d0 + k * ys.d1 + p * ys.d2;
          int64_t q = 0;
          if (ys.d3 == 1) {
            for (; q + kLanes <= Q; q += kLanes)
              for (int64_t l = 0; l < kLanes; ++l)
                part[l] += static_cast<double>(row[q + l]);
          }
          for (; q < Q; ++q) part[q % kLanes] += static_cast<double>(row[q * ys.d3]);
        }
      double sum = 0;
      for (int64_t l = 0; l < kLanes; ++l) sum += part[l];
      db[k] = static_cast<scalar_t>(sum);
    }
  });
}

at::Tensor conv2d_backward_bias_cpu(const at::Tensor& grad_output) {
  check_backward_bias(grad_output);
  at::Tensor grad_bias = at::empty({grad_output.size(1)}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_bias_cpu",
      [&] { conv2d_backward_bias_kernel<scalar_t>(grad_output, grad_bias); });
  return grad_bias;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_backward_bias", &conv_ext::cpu::conv2d_backward_bias_cpu);
}
