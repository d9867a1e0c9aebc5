// Grad weight on tensor cores, an implicit GEMM per group reduced over the
// output pixels (mainloop.cuh):
//   dw[K/G x C/G*R*S] = grad_output[K/G x L] * im2col(input)[L x C/G*R*S]
// with L = N*P*Q cut into fixed chunks, each block summing one chunk of one
// tile into its own slice of a float partial buffer; reduce_partials_kernel
// (partials.cuh) then adds the slices in chunk order: no atomics, the same
// bits every run, as the SIMT grad weight (../implicit_gemm_backward_weight.cuh,
// whose partial layout [chunk][K][C/G*R*S], taps (c, r, s), this shares).
//
// Both operands are gathered element by element, consecutive threads on
// consecutive pixels (KFast): coalesced for NCHW, where pixels are
// contiguous. Layouts: any strides.
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv_params.cuh"
#include "fetch.cuh"
#include "mainloop.cuh"

namespace conv_ext::cuda::tensorop {

template <typename scalar_t>
struct BackwardWeightParams {
  const scalar_t* grad_output;
  Strides4 ys;
  const scalar_t* input;
  Strides4 xs;
  float* partial;
  ConvDims d;
  int64_t L;          // N*P*Q
  int64_t chunk_len;  // pixels per chunk, whole BK slices
  int64_t chunks;
  int64_t tiles_m;    // block tiles along K/G
  int64_t tiles_n;    // along C/G*R*S
  uint32_t crs;       // C/G*R*S, < 2^30 (heuristics.h)
  uint32_t rs;        // R*S
  FastDivmod rs_div, s_div;
};

// `chunks` is the heuristic's; rounding the chunk length up to whole slices
// may leave fewer.
template <class Tile, typename scalar_t>
BackwardWeightParams<scalar_t> make_backward_weight_params(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    int64_t chunks) {
  constexpr int64_t BK = MmaOp<scalar_t>::kBK;
  BackwardWeightParams<scalar_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.ys = strides_of(grad_output);
  p.input = input.const_data_ptr<scalar_t>();
  p.xs = strides_of(input);
  p.partial = nullptr;  // set by the launcher once allocated
  p.d = dims_of(s);
  p.L = s.N * s.P * s.Q;
  const int64_t per_chunk = (p.L + chunks - 1) / chunks;
  p.chunk_len = (per_chunk + BK - 1) / BK * BK;
  p.chunks = (p.L + p.chunk_len - 1) / p.chunk_len;
  p.tiles_m = (s.Kg() + Tile::BM - 1) / Tile::BM;
  p.crs = static_cast<uint32_t>(s.Cg() * s.R * s.S);
  p.tiles_n = (int64_t{p.crs} + Tile::BN - 1) / Tile::BN;
  p.rs = static_cast<uint32_t>(s.R * s.S);
  p.rs_div = FastDivmod(p.rs);
  p.s_div = FastDivmod(static_cast<uint32_t>(s.S));
  return p;
}

template <class Tile, typename scalar_t>
int64_t backward_weight_blocks(const BackwardWeightParams<scalar_t>& p) {
  return p.tiles_n * p.tiles_m * p.d.G * p.chunks;
}

template <typename scalar_t, class Tile>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocks)
    tensorop_backward_weight_kernel(const BackwardWeightParams<scalar_t> p) {
  constexpr int BK = MmaOp<scalar_t>::kBK;
  const ConvDims& d = p.d;

  // Block order: taps fastest, then output channels, groups, chunks.
  const int64_t b = blockIdx.x;
  const int64_t n0 = (b % p.tiles_n) * Tile::BN;  // first tap (column)
  const int64_t k0 = (b / p.tiles_n) % p.tiles_m * Tile::BM;
  const int64_t g = (b / (p.tiles_n * p.tiles_m)) % d.G;
  const int64_t chunk = b / (p.tiles_n * p.tiles_m * d.G);
  const int64_t l_begin = chunk * p.chunk_len;
  const int64_t l_end =
      l_begin + p.chunk_len < p.L ? l_begin + p.chunk_len : p.L;

  ElementFetch<Tile::BM, Tile::kThreads, scalar_t, false> af;
  ElementFetch<Tile::BN, Tile::kThreads, scalar_t, false> bf;
  const scalar_t* dy_group = p.grad_output + g * d.Kg * p.ys.d1;
  const scalar_t* x_group = p.input + g * d.Cg * p.xs.d1;
  const int64_t rows = d.Kg - k0;           // valid rows of the A tile
  const int64_t cols = int64_t{p.crs} - n0;  // valid rows of the B tile

  auto fetch = [&](int64_t t, unsigned char* a_stage, unsigned char* b_stage) {
    // Both operands take this thread's one pixel of the slice (KFast: the
    // same reduction index af.k0 == bf.k0).
    const int64_t l = l_begin + t * BK + af.k0;
    const bool l_ok = l < l_end;
    int64_t n = 0, pp = 0, qq = 0;
    if (l_ok) {
      n = div_nonnegative(l, d.P * d.Q);
      const int64_t pq = l - n * (d.P * d.Q);
      pp = div_nonnegative(pq, d.Q);
      qq = pq - pp * d.Q;
    }
    const int64_t dy_pixel = n * p.ys.d0 + pp * p.ys.d2 + qq * p.ys.d3;
    af.fetch(a_stage, dy_group, [&](int, int row, int) -> int64_t {
      return l_ok && row < rows ? dy_pixel + (k0 + row) * p.ys.d1 : -1;
    });
    const int64_t h0 = pp * d.stride_h - d.pad_h;
    const int64_t w0 = qq * d.stride_w - d.pad_w;
    const int64_t x_image = n * p.xs.d0;
    bf.fetch(b_stage, x_group, [&](int, int row, int) -> int64_t {
      if (!l_ok || row >= cols) {
        return -1;
      }
      const uint32_t col = static_cast<uint32_t>(n0 + row);
      const uint32_t c = p.rs_div.div(col);
      const uint32_t rs = col - c * p.rs;
      const uint32_t r = p.s_div.div(rs);
      const uint32_t sx = rs - r * static_cast<uint32_t>(d.S);
      const int64_t h = h0 + r * d.dil_h;
      const int64_t w = w0 + sx * d.dil_w;
      if (h < 0 || h >= d.H || w < 0 || w >= d.W) {
        return -1;
      }
      return x_image + c * p.xs.d1 + h * p.xs.d2 + w * p.xs.d3;
    });
  };
  auto stash = [&](unsigned char* a_stage, unsigned char* b_stage) {
    af.stash(a_stage);
    bf.stash(b_stage);
  };

  float acc[Tile::MI][Tile::NI][4];
  const int64_t steps = (l_end - l_begin + BK - 1) / BK;
  tensorop_mainloop<Tile, scalar_t>(steps, acc, fetch, stash);

  const WarpCoords<Tile> wc;
  float* out = p.partial + (chunk * d.K + g * d.Kg) * int64_t{p.crs};
#pragma unroll
  for (int i = 0; i < Tile::MI; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t k = k0 + wc.row(i, half);
#pragma unroll
      for (int j = 0; j < Tile::NI; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t col = n0 + wc.col(j, e);
          if (k < d.Kg && col < p.crs) {
            out[k * p.crs + col] = acc[i][j][2 * half + e];
          }
        }
      }
    }
  }
}

}  // namespace conv_ext::cuda::tensorop
