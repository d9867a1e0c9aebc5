// Grad input of strided NCHW layers as stride-1 correlations, one per
// phase of the input (window_forward.h); float32, and bfloat16 and half
// widened to float in the planes and the packed kernel, rounded on the store.
//
// Input row h = i * st + a (phase a < st) receives grad_output row
// p = i + e_r from exactly the taps r with (a + pad - r dil) divisible by st,
// e_r = (a + pad - r dil) / st: for each phase, a stride-1 correlation of
// grad_output with that subset of the kernel, flipped and transposed. So no
// product is wasted on the zeros a stride-st scatter would add (the col2im
// path computes every tap's product for every pixel, then adds), and every
// tap of grad_output is a unit-stride window of a zero-framed plane: the GEMM
// dx_phase[C x pixels] = W'[C x taps of the phase] * windows[taps x pixels]
// reads both in place, the windows through a table of row pointers and W'
// (packed once per call, contiguous per channel) by rows.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <vector>

#include "../gemm/conv_gemm.h"
#include "../float_arithmetic.h"
#include "window_forward.h"

namespace conv_ext::cpu {
namespace {

// grad_output planes of a chunk of images stay under this.
constexpr int64_t kChunkBytes = int64_t(32) << 20;

// One dimension: per phase a, the taps that reach it and their offsets e.
struct PhaseTaps {
  std::vector<std::vector<int64_t>> taps, offs;  // [phase][j]
  std::vector<int64_t> extent;                   // input indices in the phase
  int64_t before = 0, span = 0;                  // frame: rows before grad_output's first, total
};

PhaseTaps phase_taps(int64_t in, int64_t out, int64_t st, int64_t dil, int64_t pad, int64_t K) {
  PhaseTaps t;
  t.taps.resize(st);
  t.offs.resize(st);
  t.extent.resize(st);
  int64_t lo = 0, hi = out - 1;
  for (int64_t a = 0; a < st; ++a) {
    t.extent[a] = a < in ? (in - a + st - 1) / st : 0;
    for (int64_t r = 0; r < K; ++r) {
      const int64_t num = a + pad - r * dil;
      if (((num % st) + st) % st != 0) continue;
      const int64_t e = (num - (((num % st) + st) % st)) / st;  // exact: divisible
      t.taps[a].push_back(r);
      t.offs[a].push_back(e);
      if (t.extent[a] > 0) {
        lo = std::min(lo, e);
        hi = std::max(hi, t.extent[a] - 1 + e);
      }
    }
  }
  t.before = -lo;
  t.span = hi - lo + 1;
  return t;
}

template <typename T>
void window_backward_input_typed(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input, Isa isa) {
  const GemmKernel<float> kernel = select_microkernel<float>(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const PhaseTaps th = phase_taps(s.H, s.P, s.stride_h, s.dil_h, s.pad_h, s.R);
  const PhaseTaps tw = phase_taps(s.W, s.Q, s.stride_w, s.dil_w, s.pad_w, s.S);
  const int64_t Wg = tw.span, pitch = th.span * Wg;
  const int64_t phases = s.stride_h * s.stride_w;

  // Per phase: its taps (k, r, s) in order, their window offsets, and the
  // flipped, transposed kernel W'[c][tap] contiguous per channel.
  std::vector<std::vector<int64_t>> offs(phases);
  std::vector<std::vector<float>> wt(phases);
  std::vector<int64_t> tiles(phases), tile_len(phases);
  const T* w = weight.const_data_ptr<T>();
  const WeightView wv(weight);
  int64_t reach = 0, plane_len = pitch;
  for (int64_t ph = 0; ph < phases; ++ph) {
    const int64_t a = ph / s.stride_w, b = ph % s.stride_w;
    const auto& rs = th.taps[a];
    const auto& ss = tw.taps[b];
    const int64_t nt = s.K * int64_t(rs.size()) * int64_t(ss.size());
    offs[ph].resize(nt);
    wt[ph].resize(s.C * nt);
    int64_t t = 0;
    for (int64_t k = 0; k < s.K; ++k)
      for (size_t i = 0; i < rs.size(); ++i)
        for (size_t j = 0; j < ss.size(); ++j, ++t) {
          const int64_t off = (th.offs[a][i] + th.before) * Wg + tw.offs[b][j] + tw.before;
          offs[ph][t] = off;
          reach = std::max(reach, off);
          for (int64_t c = 0; c < s.C; ++c)
            wt[ph][c * nt + t] =
                static_cast<float>(w[k * wv.s0 + c * wv.s1 + rs[i] * wv.s2 + ss[j] * wv.s3]);
        }
    // Pixels i * Wg + j of the phase's frame, j < its width (the rest junk).
    const int64_t J = th.extent[a] * Wg;
    tile_len[ph] = std::min(round_up(kMaxTilePixels, NR), round_up(std::max<int64_t>(J, 1), NR));
    tiles[ph] = J > 0 ? (J + tile_len[ph] - 1) / tile_len[ph] : 0;
  }
  for (int64_t ph = 0; ph < phases; ++ph)
    plane_len = std::max(plane_len, tiles[ph] * tile_len[ph] + reach);
  int64_t max_taps = 0;
  for (int64_t ph = 0; ph < phases; ++ph) max_taps = std::max<int64_t>(max_taps, offs[ph].size());
  std::vector<int64_t> task_start(phases + 1, 0);
  for (int64_t ph = 0; ph < phases; ++ph) task_start[ph + 1] = task_start[ph] + tiles[ph];
  const int64_t tasks_per_image = task_start[phases];

  const T* dy = grad_output.const_data_ptr<T>();
  T* dx = grad_input.mutable_data_ptr<T>();
  const Strides4 ys(grad_output), xs(grad_input);
  const int64_t nimg = std::clamp<int64_t>(
      kChunkBytes / std::max<int64_t>(1, s.K * plane_len * int64_t(sizeof(float))), 1, s.N);
  std::vector<float> gp(nimg * s.K * plane_len);

  for (int64_t n0 = 0; n0 < s.N; n0 += nimg) {
    const int64_t ni = std::min(nimg, s.N - n0);
    // grad_output plane k of image i: row p at (p + before) * Wg + before_w.
    at::parallel_for(0, ni * s.K, grain_for(pitch), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = task / s.K, k = task % s.K;
        float* dst = gp.data() + task * plane_len;
        std::fill_n(dst, plane_len, 0.f);
        const T* src = dy + (n0 + i) * ys.d0 + k * ys.d1;
        for (int64_t p = 0; p < s.P; ++p) {
          float* row = dst + (p + th.before) * Wg + tw.before;
          for (int64_t q = 0; q < s.Q; ++q) row[q] = static_cast<float>(src[p * ys.d2 + q * ys.d3]);
        }
      }
    });
    at::parallel_for(0, ni * tasks_per_image, 1, [&](int64_t begin, int64_t end) {
      const int64_t rows = round_up(s.C, MR);
      float* const cbuf = scratch<float>(0, rows * round_up(kMaxTilePixels, NR));
      std::vector<const float*> wins(max_taps);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = task / tasks_per_image, rest = task % tasks_per_image;
        const int64_t ph = std::upper_bound(task_start.begin(), task_start.end(), rest) -
            task_start.begin() - 1;
        const int64_t a = ph / s.stride_w, b = ph % s.stride_w;
        const int64_t tile = tile_len[ph], j0 = (rest - task_start[ph]) * tile;
        const int64_t nt = int64_t(offs[ph].size());
        const float* planes_i = gp.data() + i * s.K * plane_len;
        const int64_t taps_per_k = nt / std::max<int64_t>(1, s.K);
        // Tap t's window starts in plane t / taps_per_k at offs[ph][t] + j0;
        // the micro-kernel reads the windows in place (with C = 3 output
        // channels, packing them would cost as much as the products).
        for (int64_t t = 0; t < nt; ++t)
          wins[t] = planes_i + t / taps_per_k * plane_len + offs[ph][t] + j0;
        window_gemm(kernel, wt[ph].data(), s.C, nt, wins.data(), tile, cbuf);
        // Frame pixels j0 .. j0 + tile - 1 of the phase: input (v / Wg * st_h
        // + a, v % Wg * st_w + b) where v % Wg is inside the phase's width.
        const int64_t J = th.extent[a] * Wg, j1 = std::min(J, j0 + tile), wide = tw.extent[b];
        for (int64_t c = 0; c < s.C; ++c) {
          const float* cc = cbuf + c * tile;
          T* xc = dx + (n0 + i) * xs.d0 + c * xs.d1;
          for (int64_t v = j0; v < j1; ++v) {
            const int64_t jj = v % Wg;
            if (jj < wide)
              xc[(v / Wg * s.stride_h + a) * xs.d2 + (jj * s.stride_w + b) * xs.d3] =
                  static_cast<T>(nt > 0 ? cc[v - j0] : 0.f);
          }
        }
      }
    });
  }
}

}  // namespace

void window_backward_input(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input, Isa isa) {
  // Named in torch.profiler's trace: the tests check that the path runs.
  RECORD_FUNCTION("conv_ext::cpu::window_backward_input", std::vector<c10::IValue>());
  CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(grad_output.scalar_type(), "window_backward_input", [&] {
    window_backward_input_typed<scalar_t>(grad_output, weight, s, grad_input, isa);
  });
}

}  // namespace conv_ext::cpu
