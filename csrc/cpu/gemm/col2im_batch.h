// Grad input as patch gradients over the whole batch, any stride:
//   D[pixels of all images x taps (c, r, s)] = dy^T[pixels x K] * W[K x taps]
// in blocks of pixels that run across image boundaries, each D element
// added into grad_input at the pixel its tap reaches (col2im). dy^T's rows
// (the pixels' runs of K: one copy of grad_output) feed the row-pointer
// micro-kernel (microkernel_rows.cpp) in place; the kernel's rows (the
// contiguous taps of output channel k) are copied in blocks of 256 taps.
// No product is wasted on the zeros a stride leaves (the gather would
// multiply them), and the threads split the input channels, each adding
// only into its own channels of grad_input.
//
// The paths it replaces ran one image per task: the col2im path padded 16
// pixels per image to a 32-wide panel and streamed the whole kernel per
// image; the phase-plane path (window_backward_input.cpp) runs one small
// GEMM per phase and image (dense3_s2_c256_k512_7x7: 27.9 GFLOP/s, 0.28x
// torch).
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
// (384 pixels x 256) stay in L2, and each weight row is read as a 1 KiB run
// (copying one 32-tap panel at a time read 128 bytes per row, 18 KiB
// apart: half of the pass went to those misses).
constexpr int64_t kCol2imTaps = 256;

// Pixels per block: their dy^T rows (pixels x kc) and results (pixels x
// 256 taps) stay in L2 while the block's weights are swept.
constexpr int64_t kCol2imPixels = 384;

struct Col2imShape {
  int64_t N, C, K, H, W, P, Q, R, S;
  int64_t st_h, st_w, pad_h, pad_w, dil_h, dil_w;
};

template <typename T, typename Dy>
void col2im_batch(
    const GemmKernel<T>& kernel, const Col2imShape& s, Dy&& dy, const T* w, int64_t wk,
    T* dx, const Strides4& xs) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t PQ = s.P * s.Q, M = s.N * PQ, RS = s.R * s.S, taps = s.C * RS;
  // dy^T: pixel m's run of K, in the calling thread's scratch (a fresh
  // buffer of this size cost its page faults on every call).
  T* const dyt = scratch<T>(3, M * s.K);
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
    T* const cbuf = scratch<T>(0, round_up(std::min(M, kCol2imPixels), MR) * kCol2imTaps);
    T* const bblock = scratch<T>(1, KC * kCol2imTaps);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c0 = p * part, c1 = std::min(s.C, c0 + part);
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t h = 0; h < s.H; ++h)
            for (int64_t x = 0; x < s.W; ++x) dx[n * xs.d0 + c * xs.d1 + h * xs.d2 + x * xs.d3] = T(0);
      const int64_t t_end = c1 * RS;
      for (int64_t m0 = 0; m0 < M; m0 += kCol2imPixels) {
        const int64_t ml = std::min(kCol2imPixels, M - m0), Mb = round_up(ml, MR);
        for (int64_t tb = c0 * RS; tb < t_end; tb += kCol2imTaps) {
          const int64_t nb = std::min(kCol2imTaps, t_end - tb), panels = (nb + NR - 1) / NR;
          for (int64_t pc = 0; pc < s.K; pc += KC) {
            const int64_t kc = std::min(KC, s.K - pc);
            const PanelBlock<T> pb{bblock, NR, kc};
            for (int64_t k = 0; k < kc; ++k) pb.run_x(0, k, nb, wrows[pc + k] + tb, 1);
            pb.zero_tail(nb);
            // The next block's kernel rows (next depth block, else the next
            // taps), prefetched a few lines per micro-kernel call so that
            // they arrive while this block computes (CPU time per call, 1
            // and 2 threads, A/B interleaved: dense3_s1_c512_k512_4x4 -5 %,
            // dense3_s2_c256_k512_7x7 -2 to -3 %, (8, 128, 14, 14) s2 even).
            int64_t npc = pc + KC, ntb = tb;
            if (npc >= s.K) {
              npc = 0;
              ntb = tb + kCol2imTaps;
            }
            const bool pf = ntb < t_end;
            const int64_t nkc = std::min(KC, s.K - npc);
            const int64_t nlines = (std::min(kCol2imTaps, t_end - ntb) * int64_t(sizeof(T)) + 63) / 64;
            const int64_t calls = panels * ((ml + MR - 1) / MR);
            const int64_t per_call = pf ? (nkc * nlines + calls - 1) / calls : 0;
            int64_t pf_k = 0, pf_l = 0;
            for (int64_t jp = 0; jp < panels; ++jp) {
              for (int64_t ir = 0; ir < ml; ir += MR) {
                for (int64_t e = 0; e < per_call && pf_k < nkc; ++e) {
                  __builtin_prefetch(reinterpret_cast<const char*>(wrows[npc + pf_k] + ntb) + 64 * pf_l);
                  if (++pf_l == nlines) {
                    pf_l = 0;
                    ++pf_k;
                  }
                }
                const int64_t mv = std::min(MR, ml - ir);
                const T* a[6];
                for (int64_t i = 0; i < MR; ++i)  // rows past the block repeat its last
                  a[i] = dyt + (m0 + ir + std::min(i, mv - 1)) * s.K + pc;
                kernel.rows_fn(kc, a, bblock + jp * NR * kc, nullptr, 0,
                               cbuf + (jp * Mb + ir) * NR, NR, pc > 0);
              }
            }
          }
          // Scatter: tap t = (c, r, s) of output pixel (n, pp, q) lands on
          // (pp * st_h - pad_h + r * dil_h, q * st_w - pad_w + s * dil_w) of
          // image n; per output row, the q that land inside form one range.
          for (int64_t j = 0; j < nb; ++j) {
            const int64_t t = tb + j, c = t / RS, r = (t % RS) / s.S, sx = t % s.S;
            const T* col = cbuf + (j / NR) * Mb * NR + j % NR;
            const int64_t w0 = sx * s.dil_w - s.pad_w;
            int64_t qlo, qhi;
            valid_range(w0, s.st_w, s.W, s.Q, qlo, qhi);
            // (n, pp, q) of pixel m, advanced row by row (a division per
            // row of 4 pixels cost more than the GEMM's products there).
            int64_t n = m0 / PQ, pp = (m0 % PQ) / s.Q, q = m0 % s.Q;
            for (int64_t m = m0; m < m0 + ml;) {
              const int64_t len = std::min(s.Q - q, m0 + ml - m);
              const int64_t h = pp * s.st_h - s.pad_h + r * s.dil_h;
              if (h >= 0 && h < s.H) {
                T* drow = dx + n * xs.d0 + c * xs.d1 + h * xs.d2 + w0 * xs.d3;
                const T* crow = col + (m - m0 - q) * NR;
                const int64_t q1 = std::min(qhi, q + len);
                for (int64_t qq = std::max(qlo, q); qq < q1; ++qq)
                  drow[qq * s.st_w * xs.d3] += crow[qq * NR];
              }
              m += len;
              q = 0;
              if (++pp == s.P) {
                pp = 0;
                ++n;
              }
            }
          }
        }
      }
    }
  });
}

}  // namespace conv_ext::cpu
