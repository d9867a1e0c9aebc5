// Grad input of late layers at small batch (4 x 4 and 7 x 7 planes, 256-512
// channels, batch 8), any stride, as one GEMM over all images' pixels:
//   D[pixels of all images x taps (c, r, s)] = dy^T[pixels x K] * W[K x taps]
// and each D element added into grad_input at the pixel its tap reaches
// (col2im). Both operands are read in place by the row-pointer micro-kernel
// (microkernel_rows.cpp): dy^T's rows are the pixels' runs of K (one copy
// of grad_output, a few hundred KiB), W's row k the contiguous taps of
// output channel k, copied a panel of NR taps at a time. No product is
// wasted on the zeros a stride leaves, and the threads split the input channels, each adding only
// into its own channels of grad_input.
//
// The paths it replaces ran one image per task: the col2im path padded 16
// pixels per image to a 32-wide panel and streamed the whole kernel per
// image (dense3_s2_c256_k512_7x7 grad input through phase planes: 27.9
// GFLOP/s, 0.28x torch).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "conv_gemm.h"

namespace conv_ext::cpu {

// dy(n, k, i) and dx(n, c, h, w) address the tensors; w + k * wk + t is tap t
// of output channel k (taps (c, r, s) contiguous, c * R * S + r * S + s).
// Taps per block: their packed weights (kc x 256, 256 KiB) and results
// (pixels x 256) stay in L2, and each weight row is read as a 1 KiB run
// (copying one 32-tap panel at a time read 128 bytes per row, 18 KiB
// apart: half of the pass went to those misses).
constexpr int64_t kCol2imTaps = 256;

struct Col2imShape {
  int64_t N, C, K, H, W, P, Q, R, S;
  int64_t st_h, st_w, pad_h, pad_w, dil_h, dil_w;
};

template <typename T, typename Dy>
void col2im_few_pixels(
    const GemmKernel<T>& kernel, const Col2imShape& s, Dy&& dy, const T* w, int64_t wk,
    T* dx, const Strides4& xs) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t PQ = s.P * s.Q, M = s.N * PQ, RS = s.R * s.S, taps = s.C * RS;
  const int64_t Mpad = round_up(M, MR);
  // dy^T: pixel m's run of K, rows past M repeating the last.
  std::vector<T> dyt(M * s.K);
  at::parallel_for(0, M, grain_for(s.K), [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m)
      for (int64_t k = 0; k < s.K; ++k) dyt[m * s.K + k] = dy(m / PQ, k, m % PQ);
  });
  std::vector<const T*> wrows(s.K);
  for (int64_t k = 0; k < s.K; ++k) wrows[k] = w + k * wk;

  const int64_t threads = at::get_num_threads();
  const int64_t part = (s.C + threads - 1) / threads;  // input channels per part
  const int64_t parts = (s.C + part - 1) / part;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    T* const cbuf = scratch<T>(0, Mpad * kCol2imTaps);
    T* const bblock = scratch<T>(1, KC * kCol2imTaps);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c0 = p * part, c1 = std::min(s.C, c0 + part);
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t h = 0; h < s.H; ++h)
            for (int64_t x = 0; x < s.W; ++x) dx[n * xs.d0 + c * xs.d1 + h * xs.d2 + x * xs.d3] = T(0);
      const int64_t t_end = c1 * RS;
      for (int64_t tb = c0 * RS; tb < t_end; tb += kCol2imTaps) {
        const int64_t nb = std::min(kCol2imTaps, t_end - tb), panels = (nb + NR - 1) / NR;
        for (int64_t pc = 0; pc < s.K; pc += KC) {
          const int64_t kc = std::min(KC, s.K - pc);
          const PanelBlock<T> pb{bblock, NR, kc};
          for (int64_t k = 0; k < kc; ++k) pb.run_x(0, k, nb, wrows[pc + k] + tb, 1);
          pb.zero_tail(nb);
          for (int64_t jp = 0; jp < panels; ++jp) {
            for (int64_t ir = 0; ir < M; ir += MR) {
              const int64_t mv = std::min(MR, M - ir);
              const T* a[6];
              for (int64_t i = 0; i < MR; ++i)
                a[i] = dyt.data() + (ir + std::min(i, mv - 1)) * s.K + pc;
              kernel.rows_fn(kc, a, bblock + jp * NR * kc, nullptr, 0,
                             cbuf + (jp * Mpad + ir) * NR, NR, pc > 0);
            }
          }
        }
        // Scatter: tap t = (c, r, s) of output pixel (n, pp, q) lands on
        // (pp * st_h - pad_h + r * dil_h, q * st_w - pad_w + s * dil_w) of
        // image n; per output row, the q that land inside form one range.
        for (int64_t j = 0; j < nb; ++j) {
          const int64_t t = tb + j, c = t / RS, r = (t % RS) / s.S, sx = t % s.S;
          const T* col = cbuf + (j / NR) * Mpad * NR + j % NR;
          const int64_t w0 = sx * s.dil_w - s.pad_w;
          int64_t qlo, qhi;
          valid_range(w0, s.st_w, s.W, s.Q, qlo, qhi);
          for (int64_t n = 0; n < s.N; ++n) {
            T* dc = dx + n * xs.d0 + c * xs.d1 + w0 * xs.d3;
            for (int64_t pp = 0; pp < s.P; ++pp) {
              const int64_t h = pp * s.st_h - s.pad_h + r * s.dil_h;
              if (h < 0 || h >= s.H) continue;
              T* drow = dc + h * xs.d2;
              const T* crow = col + (n * PQ + pp * s.Q) * NR;
              for (int64_t q = qlo; q < qhi; ++q) drow[q * s.st_w * xs.d3] += crow[q * NR];
            }
          }
        }
      }
    }
  });
}

}  // namespace conv_ext::cpu
