// The driver of window_forward (window_forward.h): images in chunks of
// bounded memory, each chunk's phase planes built once, then tiles of
// output pixels (in the planes' frame, Wp per row, the last Wp - Q of each
// row junk) by one thread each.
#include "window_forward.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../gemm/conv_gemm.h"
#include "../float_arithmetic.h"
#include "phase_planes.h"

namespace conv_ext::cpu {
namespace {

// Phase planes of a chunk of images stay under this.
constexpr int64_t kChunkBytes = int64_t(32) << 20;

}  // namespace

void window_gemm(
    const GemmKernel<float>& kernel, const float* w, int64_t rows, int64_t taps,
    const float* const* wins, int64_t tile, float* c) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  for (int64_t pc = 0; pc < taps; pc += KC) {
    const int64_t kc = std::min(KC, taps - pc);
    for (int64_t jr = 0; jr < tile; jr += NR) {
      for (int64_t ir = 0; ir < rows; ir += MR) {
        const int64_t mv = std::min(MR, rows - ir);
        const float* a[6];
        for (int64_t m = 0; m < MR; ++m) a[m] = w + (ir + std::min(m, mv - 1)) * taps + pc;
        kernel.rows_fn(kc, a, nullptr, wins + pc, jr, c + ir * tile + jr, tile, pc > 0);
      }
    }
  }
}

namespace {

template <typename T>
void window_forward_typed(
    const at::Tensor& input, const at::Tensor& weight, const float* bias, const ConvShape& s,
    at::Tensor& output, Isa isa) {
  const GemmKernel<float> kernel = select_microkernel<float>(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const PhaseDim ph = phase_dim(s.P, s.stride_h, s.dil_h, s.pad_h, s.R);
  const PhaseDim pw = phase_dim(s.Q, s.stride_w, s.dil_w, s.pad_w, s.S);
  const int64_t Wp = pw.len, pitch = ph.len * Wp, phases = s.stride_h * s.stride_w;
  const int64_t RS = s.R * s.S, taps = s.C * RS, planes = s.C * phases;
  const int64_t J = s.P * Wp;  // frame pixels per image
  int64_t reach = 0;
  for (int64_t r = 0; r < s.R; ++r)
    for (int64_t t = 0; t < s.S; ++t) reach = std::max(reach, ph.base[r] * Wp + pw.base[t]);
  const int64_t tile = std::min(round_up(kMaxTilePixels, NR), round_up(J, NR));
  const int64_t tiles = (J + tile - 1) / tile;
  const int64_t plane_len = std::max(pitch, tiles * tile + reach);

  std::vector<int64_t> tap_off(taps);
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t)
        tap_off[(c * s.R + r) * s.S + t] =
            ((c * s.stride_h + ph.phase[r]) * s.stride_w + pw.phase[t]) * plane_len +
            ph.base[r] * Wp + pw.base[t];

  const T* x = input.const_data_ptr<T>();
  // Row k: taps (c, r, s), read in place by the micro-kernel: float, so
  // low precision kernels are widened once per call.
  std::vector<float> wide;
  const float* w = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    w = weight.const_data_ptr<float>();
  } else {
    const T* wl = weight.const_data_ptr<T>();
    wide.assign(wl, wl + s.K * taps);
    w = wide.data();
  }
  T* y = output.mutable_data_ptr<T>();
  const Strides4 xs(input), ys(output);
  const int64_t nimg = std::clamp<int64_t>(
      kChunkBytes / std::max<int64_t>(1, planes * plane_len * int64_t(sizeof(float))), 1, s.N);
  std::vector<float> xp(nimg * planes * plane_len);

  for (int64_t n0 = 0; n0 < s.N; n0 += nimg) {
    const int64_t ni = std::min(nimg, s.N - n0);
    at::parallel_for(0, ni * planes, grain_for(pitch), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = task / planes, pl = task % planes;
        const int64_t c = pl / phases, a = pl % phases / s.stride_w, b = pl % s.stride_w;
        float* dst = xp.data() + task * plane_len;
        fill_phase_plane(x + (n0 + i) * xs.d0 + c * xs.d1, xs.d2, xs.d3, s.H, s.W, ph, pw,
                         s.stride_h, s.stride_w, a, b, dst);
        std::fill(dst + pitch, dst + plane_len, 0.f);
      }
    });
    at::parallel_for(0, ni * tiles, grain_for(tile * taps * s.K), [&](int64_t begin, int64_t end) {
      const int64_t rows = round_up(s.K, MR);
      float* const cbuf = scratch<float>(0, rows * tile);
      std::vector<const float*> wins(taps);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = task / tiles, j0 = task % tiles * tile;
        const float* planes_i = xp.data() + i * planes * plane_len;
        // The micro-kernel reads each tap's window in place: a pointer per tap.
        for (int64_t t = 0; t < taps; ++t) wins[t] = planes_i + tap_off[t] + j0;
        window_gemm(kernel, w, s.K, taps, wins.data(), tile, cbuf);
        // Frame pixels j0 .. j0 + tile - 1 that are output pixels (q < Q).
        const int64_t j1 = std::min(J, j0 + tile);
        for (int64_t k = 0; k < s.K; ++k) {
          const float bk = bias ? bias[k] : 0.f;
          const float* c = cbuf + k * tile;
          T* yk = y + (n0 + i) * ys.d0 + k * ys.d1;
          for (int64_t j = j0; j < j1;) {
            const int64_t p = j / Wp, q = j % Wp;
            const int64_t run = std::min(Wp - q, j1 - j);
            // A plain counted loop the compiler vectorizes (the loop with
            // both bounds in its condition stored one float at a time: 5 %
            // of r50_conv1's forward).
            const int64_t len = std::max<int64_t>(0, std::min(run, s.Q - q));
            T* yr = yk + p * ys.d2 + q;
            const float* cr = c + (j - j0);
            for (int64_t u = 0; u < len; ++u) yr[u] = static_cast<T>(cr[u] + bk);
            j += run;
          }
        }
      }
    });
  }
}

}  // namespace

void window_forward(
    const at::Tensor& input, const at::Tensor& weight, const float* bias, const ConvShape& s,
    at::Tensor& output, Isa isa) {
  // Named in torch.profiler's trace: the tests check that the path runs.
  RECORD_FUNCTION("conv_ext::cpu::window_forward", std::vector<c10::IValue>());
  CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(input.scalar_type(), "window_forward", [&] {
    window_forward_typed<scalar_t>(input, weight, bias, s, output, isa);
  });
}

}  // namespace conv_ext::cpu
