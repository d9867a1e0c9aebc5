// Forward on tensor cores, an implicit GEMM per group (mainloop.cuh):
//   out[M x K/G] = im2col(input)[M x R*S*C/G] * Wp^T[R*S*C/G x K/G]
// with M = N*P*Q output pixels and the reduction in (r, s, c) order, so that
// in channels_last a run of channels of one tap is contiguous and moves by
// 16-byte cp.async. Wp is the weight packed on the host as K rows of
// R*S*C/G taps in that order, zero-padded to whole BK slices: its rows are
// 16-byte aligned and always move by 16 bytes. A 1x1 filter without padding
// is a plain GEMM (kPointwise): no index splitting or bounds tests.
//
// Grad input reuses this kernel (backward_input.cuh): each stride phase of
// grad_input is a stride-1 convolution of grad_output with a flipped, packed
// sub-filter, so ConvDims here may carry a negative padding.
//
// Layouts: input and output N x C x H x W / N x K x P x Q with any strides
// (channels_last is the fast case), Wp [K][crs_pad] contiguous.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include <type_traits>

#include "../../activation.h"
#include "../conv_params.cuh"
#include "fetch.cuh"
#include "mainloop.cuh"

namespace conv_ext::cuda::tensorop {

template <typename scalar_t>
struct ForwardParams {
  const scalar_t* input;
  Strides4 xs;
  const scalar_t* weight;  // packed [K][crs_pad]
  const scalar_t* bias;    // nullptr when there is none
  int64_t bias_stride;
  scalar_t* output;
  Strides4 ys;
  ConvDims d;
  int64_t M;        // N*P*Q
  int64_t tiles_m;  // block tiles along M
  int64_t tiles_n;  // along K/G
  uint32_t crs;     // R*S*C/G, < 2^30 (heuristics.h)
  uint32_t crs_pad; // crs rounded up to whole BK slices
  FastDivmod cg_div, s_div;
  Epilogue epilogue;
};

// crs rounded up to whole stage rows of scalar_t.
template <typename scalar_t>
int64_t padded_taps(int64_t crs) {
  constexpr int64_t bk = MmaOp<scalar_t>::kBK;
  return (crs + bk - 1) / bk * bk;
}

// weight [K][C/G][R][S] (any strides) as [K][crs_pad], taps (r, s, c), zeros
// past crs.
template <typename scalar_t>
at::Tensor pack_forward_weight(const at::Tensor& weight) {
  const int64_t K = weight.size(0);
  const int64_t crs = weight.size(1) * weight.size(2) * weight.size(3);
  at::Tensor packed = at::zeros({K, padded_taps<scalar_t>(crs)}, weight.options());
  packed.narrow(1, 0, crs).copy_(weight.permute({0, 2, 3, 1}).reshape({K, crs}));
  return packed;
}

// Whether the im2col operand can move by 16 bytes: channels contiguous and
// every run of C/G channels starting on a 16-byte boundary.
template <typename scalar_t>
bool channels_vectorizable(const scalar_t* ptr, Strides4 st, int64_t Cg) {
  constexpr int64_t v = MmaOp<scalar_t>::kVec;
  return st.d1 == 1 && Cg % v == 0 && st.d0 % v == 0 && st.d2 % v == 0 &&
      st.d3 % v == 0 && reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

// `packed` from pack_forward_weight over the same dims.
template <class Tile, typename scalar_t>
ForwardParams<scalar_t> make_forward_params(
    const scalar_t* input,
    Strides4 xs,
    const at::Tensor& packed,
    const scalar_t* bias,
    int64_t bias_stride,
    scalar_t* output,
    Strides4 ys,
    const ConvDims& d,
    const Epilogue& epilogue) {
  ForwardParams<scalar_t> p{};
  p.input = input;
  p.xs = xs;
  p.weight = packed.const_data_ptr<scalar_t>();
  p.bias = bias;
  p.bias_stride = bias_stride;
  p.output = output;
  p.ys = ys;
  p.d = d;
  p.epilogue = epilogue;
  p.M = d.N * d.P * d.Q;
  p.tiles_m = (p.M + Tile::BM - 1) / Tile::BM;
  p.tiles_n = (d.Kg + Tile::BN - 1) / Tile::BN;
  p.crs = static_cast<uint32_t>(d.R * d.S * d.Cg);
  p.crs_pad = static_cast<uint32_t>(packed.size(1));
  p.cg_div = FastDivmod(static_cast<uint32_t>(d.Cg));
  p.s_div = FastDivmod(static_cast<uint32_t>(d.S));
  return p;
}

template <class Tile, typename scalar_t>
int64_t forward_blocks(const ForwardParams<scalar_t>& p) {
  return p.tiles_m * p.tiles_n * p.d.G;
}

// kVecA: the im2col operand moves by 16 bytes (channels_vectorizable).
// kPointwise: a 1x1 filter without padding (is_pointwise), a plain GEMM:
// every tap is in the image, so row m's reduction element c is the pixel's
// address plus c channels, with no index splitting or bounds test.
template <typename scalar_t, class Tile, bool kVecA, bool kPointwise>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocks)
    tensorop_forward_kernel(const ForwardParams<scalar_t> p) {
  constexpr int BK = MmaOp<scalar_t>::kBK;
  const ConvDims& d = p.d;

  // Block order: M fastest, so consecutive blocks share one weight tile.
  const int64_t b = blockIdx.x;
  const int64_t m0 = (b % p.tiles_m) * Tile::BM;
  const int64_t k0 = (b / p.tiles_m) % p.tiles_n * Tile::BN;
  const int64_t g = b / (p.tiles_m * p.tiles_n);

  using AFetch = std::conditional_t<
      kVecA, Vec16Fetch<Tile::BM, Tile::kThreads, scalar_t>,
      ElementFetch<Tile::BM, Tile::kThreads, scalar_t, true>>;
  using BFetch = Vec16Fetch<Tile::BN, Tile::kThreads, scalar_t>;
  AFetch af;
  const BFetch bf;

  // The output pixels this thread copies im2col rows for, decoded once.
  int64_t x_base[AFetch::kRows], h0[AFetch::kRows], w0[AFetch::kRows];
  bool m_ok[AFetch::kRows];
#pragma unroll
  for (int s = 0; s < AFetch::kRows; ++s) {
    const int64_t m = m0 + af.slot_row(s);
    m_ok[s] = m < p.M;
    const int64_t n = m_ok[s] ? div_nonnegative(m, d.P * d.Q) : 0;
    const int64_t pq = m - n * (d.P * d.Q);
    const int64_t pp = div_nonnegative(pq, d.Q);
    const int64_t qq = pq - pp * d.Q;
    x_base[s] = n * p.xs.d0 + g * d.Cg * p.xs.d1;
    h0[s] = pp * d.stride_h - d.pad_h;
    w0[s] = qq * d.stride_w - d.pad_w;
    if (kPointwise) {
      x_base[s] += h0[s] * p.xs.d2 + w0[s] * p.xs.d3;
    }
  }
  const scalar_t* w_group = p.weight + (g * d.Kg + k0) * int64_t{p.crs_pad};
  const int64_t cols = d.Kg - k0;  // valid rows of this B tile

  auto fetch = [&](int64_t t, unsigned char* a_stage, unsigned char* b_stage) {
    const uint32_t kbase = static_cast<uint32_t>(t) * BK;
    af.fetch(a_stage, p.input, [&](int s, int, int k) -> int64_t {
      const uint32_t kidx = kbase + k;
      if (!m_ok[s] || kidx >= p.crs) {
        return -1;
      }
      if constexpr (kPointwise) {
        return x_base[s] + kidx * p.xs.d1;
      }
      const uint32_t rs = p.cg_div.div(kidx);
      const uint32_t c = kidx - rs * static_cast<uint32_t>(d.Cg);
      const uint32_t r = p.s_div.div(rs);
      const uint32_t sx = rs - r * static_cast<uint32_t>(d.S);
      const int64_t h = h0[s] + r * d.dil_h;
      const int64_t w = w0[s] + sx * d.dil_w;
      if (h < 0 || h >= d.H || w < 0 || w >= d.W) {
        return -1;
      }
      return x_base[s] + c * p.xs.d1 + h * p.xs.d2 + w * p.xs.d3;
    });
    bf.fetch(b_stage, w_group, [&](int, int row, int k) -> int64_t {
      return row < cols ? row * int64_t{p.crs_pad} + kbase + k : -1;
    });
  };
  auto stash = [&](unsigned char* a_stage, unsigned char* b_stage) {
    af.stash(a_stage);
    bf.stash(b_stage);
  };

  float acc[Tile::MI][Tile::NI][4];
  tensorop_mainloop<Tile, scalar_t>(p.crs_pad / BK, acc, fetch, stash);

  // Epilogue: bias, activation, conversion, store through the output's
  // strides; each thread holds rows row(i, half), columns col(j, e).
  const WarpCoords<Tile> wc;
#pragma unroll
  for (int i = 0; i < Tile::MI; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m0 + wc.row(i, half);
      if (m >= p.M) {
        continue;
      }
      // Inline divisions (conv_params.cuh): the 64-bit subroutine's calls
      // made ptxas keep values on the stack in this epilogue.
      const int64_t n = div_nonnegative(m, d.P * d.Q);
      const int64_t pq = m - n * (d.P * d.Q);
      const int64_t pp = div_nonnegative(pq, d.Q);
      const int64_t qq = pq - pp * d.Q;
      scalar_t* y = p.output + n * p.ys.d0 + pp * p.ys.d2 + qq * p.ys.d3;
#pragma unroll
      for (int j = 0; j < Tile::NI; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t k = k0 + wc.col(j, e);
          if (k >= d.Kg) {
            continue;
          }
          const int64_t kf = g * d.Kg + k;
          float v = acc[i][j][2 * half + e];
          if (p.bias != nullptr) {
            v += static_cast<float>(p.bias[kf * p.bias_stride]);
          }
          y[kf * p.ys.d1] = static_cast<scalar_t>(activate(v, p.epilogue));
        }
      }
    }
  }
}

inline bool is_pointwise(const ConvDims& d) {
  return d.R == 1 && d.S == 1 && d.pad_h == 0 && d.pad_w == 0;
}

// Launches the forward over `p` with Tile, choosing the im2col fetch.
template <class Tile, typename scalar_t, class Launch>
void launch_forward_params(const Launch& launch, const ForwardParams<scalar_t>& p) {
  const auto run = [&](auto vec, auto pointwise) {
    launch(tensorop_forward_kernel<scalar_t, Tile, decltype(vec)::value,
                                   decltype(pointwise)::value>,
           forward_blocks<Tile>(p), Tile::kThreads, p, Tile::kSmemBytes);
  };
  using Yes = std::true_type;
  using No = std::false_type;
  const bool vec = channels_vectorizable(p.input, p.xs, p.d.Cg);
  if (is_pointwise(p.d)) {
    vec ? run(Yes{}, Yes{}) : run(No{}, Yes{});
  } else {
    vec ? run(Yes{}, No{}) : run(No{}, No{});
  }
}

}  // namespace conv_ext::cuda::tensorop
