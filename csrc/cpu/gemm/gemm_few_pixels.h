// Late layers at small batch (7 x 7 pixels, 512 -> 512 channels, batch 2)
// have more weight than pixels: a 4608 x 512 kernel against 98 output
// pixels. Tiling the pixels, as the other GEMM passes do, gives each thread
// one image and makes every thread stream the whole packed kernel, packed
// beforehand in a pass of its own (r50_res5_3x3 forward: 3.3 ms, 0.54x
// torch). Here the output channels are split between the threads instead,
// all images' pixels are the rows of one GEMM, and each thread packs only
// its channels' weights, one depth block at a time, just before using
// them: the kernel is read from memory once in all, and its packed blocks
// stay in L2. When each channel's weights are one contiguous run in tap
// order (the forward on a contiguous kernel), they are not packed at all:
// the channels are the rows of the micro-kernel, read in place
// (microkernel_rows.cpp), and the pixels its packed columns.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "conv_gemm.h"

namespace conv_ext::cpu {

// Rows of all images together (each image's pixels padded to MR) that keep
// the packed patch block (rows x kc) and the result tile in L2.
constexpr int64_t kFewPixelRows = 384;

inline bool few_pixels(int64_t images, int64_t pixels, int64_t channels, int64_t MR, int64_t NR) {
  return images * round_up(pixels, MR) <= kFewPixelRows &&
      channels >= 2 * NR * at::get_num_threads();
}

// gemm_few_pixels with the weights read in place: w + wo[j] is channel j's
// run of taps. Channels are split in parts of whole MR-row panels; images'
// pixels are columns, each image starting a new NR-wide panel. T: the
// accumulator, P: the panels' and weights' type (bfloat16 pairs: a row's
// steps (k, k+1) are already adjacent in place), S: the destination's.
template <typename T, typename P, typename S, typename View>
void gemm_few_pixels_rows(
    const GemmKernel<T, P>& kernel, int vec_isa, int64_t images, int64_t pixels, View&& view,
    const P* w, const int64_t* wo, int64_t channels, int64_t taps, const T* bias, S* dst,
    int64_t image_stride, const int64_t* po, const int64_t* co, int64_t threads,
    const Epilogue* epilogue) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t per_image = round_up(pixels, NR), cols = images * per_image;
  const int64_t part = round_up((channels + threads - 1) / threads, MR);
  const int64_t parts = (channels + part - 1) / part;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    T* const cbuf = scratch<T>(0, part * cols);
    P* const bbuf = scratch<P>(1, cols * KC);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t j0 = p * part, nj = std::min(part, channels - j0);
      for (int64_t pc = 0; pc < taps; pc += KC) {
        const int64_t kc = std::min(KC, taps - pc), kp = packed_depth<P>(kc);
        for (int64_t n = 0; n < images; ++n)
          pack_patches(vec_isa, view(n), 0, pixels, pc, kc, true, NR,
                       bbuf + n * per_image * kp);
        for (int64_t jr = 0; jr < cols; jr += NR) {
          const P* bp = bbuf + jr * kp;
          for (int64_t ir = 0; ir < nj; ir += MR) {
            const int64_t mv = std::min(MR, nj - ir);
            const P* a[6];
            for (int64_t i = 0; i < MR; ++i)  // rows past the part repeat its last
              a[i] = w + wo[j0 + ir + std::min(i, mv - 1)] + pc;
            // cbuf has whole MR-row panels: rows past nj take the repeats.
            kernel.rows_fn(kc, a, bp, nullptr, 0, cbuf + ir * cols + jr, cols, pc > 0);
          }
        }
      }
      const T* none = nullptr;
      for (int64_t n = 0; n < images; ++n) {
        T* c = cbuf + n * per_image;
        const T* rb = bias ? bias + j0 : nullptr;
        if (epilogue && bias_activation_in_place(c, cols, nj, pixels, rb, none, *epilogue)) rb = none;
        store_tile(c, cols, nj, pixels, co + j0, po, rb, none, dst + n * image_stride);
      }
    }
  });
}

// out(n, pixel i, channel j) = bias[j] + sum_t patch(n)(i, t) * w[wo[j] + to[t]]
// for j < channels, written to dst + n * image_stride + po[i] + co[j];
// view(n) is image n's patch matrix (pack.h), taps in its order.
// pack_t: bfloat16 pairs or acc_t (microkernel.h). With `epilogue` (low
// precision outputs), the bias and activation are applied in acc_t before
// the store rounds.
template <typename scalar_t, typename acc_t, typename pack_t, typename View>
void gemm_few_pixels(
    int vec_isa, const GemmKernel<acc_t, pack_t>& kernel, int64_t images, int64_t pixels,
    View&& view, const scalar_t* w, const int64_t* wo, int64_t channels,
    const int64_t* to, int64_t taps, const acc_t* bias, scalar_t* dst,
    int64_t image_stride, const int64_t* po, const int64_t* co,
    const Epilogue* epilogue = nullptr) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t threads = at::get_num_threads();
  // In place where the weights are the panels' type: float, or bfloat16
  // pairs when every depth block is whole pairs (an even tap count).
  if constexpr (std::is_same_v<scalar_t, pack_t>) {
    bool in_place = kPackPairs<pack_t> == 1 || taps % 2 == 0;
    for (int64_t t = 0; t < taps && in_place; ++t) in_place = to[t] == to[0] + t;
    if (in_place) {
      gemm_few_pixels_rows(kernel, vec_isa, images, pixels, view, w + to[0], wo, channels,
                           taps, bias, dst, image_stride, po, co, threads, epilogue);
      return;
    }
  }
  const int64_t per_image = round_up(pixels, MR), rows = images * per_image;
  const int64_t part = round_up((channels + threads - 1) / threads, NR);
  const int64_t parts = (channels + part - 1) / part;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    acc_t* const cbuf = scratch<acc_t>(0, rows * part);
    pack_t* const abuf = scratch<pack_t>(1, rows * KC);
    pack_t* const bbuf = scratch<pack_t>(2, part * KC);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t j0 = p * part, nj = std::min(part, channels - j0);
      auto pack_a = [&](int64_t, int64_t, int64_t pc, int64_t kc) {
        const int64_t kp = packed_depth<pack_t>(kc);
        for (int64_t n = 0; n < images; ++n)
          pack_patches(vec_isa, view(n), 0, pixels, pc, kc, true, MR,
                       abuf + n * per_image * kp);
        return Panels<pack_t>{abuf, MR * kp};
      };
      auto pack_b = [&](int64_t, int64_t, int64_t pc, int64_t kc) {
        pack_table(w, wo + j0, nj, to + pc, kc, NR, bbuf);
        return Panels<pack_t>{bbuf, NR * packed_depth<pack_t>(kc)};
      };
      gemm_packed(kernel, rows, nj, taps, Blocking{rows, part, KC}, pack_a, pack_b, cbuf,
                  part, false);
      const acc_t* none = nullptr;
      for (int64_t n = 0; n < images; ++n) {
        acc_t* c = cbuf + n * per_image * part;
        const acc_t* cb = bias ? bias + j0 : nullptr;
        if (epilogue && bias_activation_in_place(c, part, pixels, nj, none, cb, *epilogue)) cb = none;
        store_tile(c, part, pixels, nj, po, co + j0, none, cb, dst + n * image_stride);
      }
    }
  });
}

}  // namespace conv_ext::cpu

namespace conv_ext::cpu {

// The grad weight of the same layers: dW[K x taps] = dy[K x pixels] *
// patches[pixels x taps] with all images' pixels as one depth block, so
// each element of dW is written once, in place (the general path sums into
// a transposed buffer and transposes it: 9.4 MB twice more for a 512 ->
// 512 3 x 3 kernel). dy's rows are read in place by the row-pointer
// micro-kernel after one copy into [K][images * pixels]; the taps are
// split between the threads, each packing its own patch panels.
constexpr int64_t kFewPixelDepth = 256;

inline bool few_pixels_weight_grad(int64_t images, int64_t pixels, int64_t taps, int64_t NR) {
  return images * pixels <= kFewPixelDepth && taps >= 2 * NR * at::get_num_threads();
}

// dw (dense K x taps) = sum over images n and pixels i of
// dy(n)[k][i] * patch(n)(i, t); dy(n) + k * dk + i * di addresses dy.
template <typename T, typename View, typename Dy>
void weight_grad_few_pixels(
    const GemmKernel<T>& kernel, int vec_isa, int64_t images, int64_t pixels, View&& view,
    Dy&& dy, int64_t K, int64_t taps, T* dw) {
  const int64_t MR = kernel.mr, NR = kernel.nr, depth = images * pixels;
  std::vector<T> rows(K * depth);
  at::parallel_for(0, K, grain_for(depth), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k)
      for (int64_t n = 0; n < images; ++n)
        for (int64_t i = 0; i < pixels; ++i) rows[k * depth + n * pixels + i] = dy(n, k, i);
  });
  const int64_t threads = at::get_num_threads();
  const int64_t part = round_up((taps + threads - 1) / threads, NR);
  const int64_t parts = (taps + part - 1) / part;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    T* const bbuf = scratch<T>(1, depth * part);
    T edge[6 * 64];  // mr x nr of the largest tile
    for (int64_t p = begin; p < end; ++p) {
      const int64_t t0 = p * part, nt = std::min(part, taps - t0);
      pack_im2col_images<T, T>(vec_isa, view, pixels, 0, depth, t0, nt, NR, bbuf);
      for (int64_t jr = 0; jr < nt; jr += NR) {
        const int64_t nv = std::min(NR, nt - jr);
        const T* bp = bbuf + jr * depth;
        for (int64_t ir = 0; ir < K; ir += MR) {
          const int64_t mv = std::min(MR, K - ir);
          const T* a[6];
          for (int64_t m = 0; m < MR; ++m)  // rows past K repeat the last
            a[m] = rows.data() + (ir + std::min(m, mv - 1)) * depth;
          T* c = dw + ir * taps + t0 + jr;
          if (mv == MR && nv == NR) {
            kernel.rows_fn(depth, a, bp, nullptr, 0, c, taps, false);
            continue;
          }
          kernel.rows_fn(depth, a, bp, nullptr, 0, edge, NR, false);
          for (int64_t m = 0; m < mv; ++m) std::copy_n(edge + m * NR, nv, c + m * taps);
        }
      }
    }
  });
}

}  // namespace conv_ext::cpu
