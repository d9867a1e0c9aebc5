// The driver of the window-dot grad weight (window_dot.h): images in chunks
// of bounded memory, each chunk padded once, then every (MK channels x MT
// taps) tile of the weight gradient summed over the chunk by one thread.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../gemm/conv_gemm.h"
#include "../float_arithmetic.h"
#include "phase_planes.h"
#include "window_dot.h"

namespace conv_ext::cpu {
namespace {

// Padded planes of a chunk (input and grad_output together) stay under this.
constexpr int64_t kChunkBytes = int64_t(32) << 20;

// Floats of a run summed before its lanes are reduced: 4 grad_output rows
// of 16 KiB stay in L2 while the thread sweeps its taps across them.
constexpr int64_t kSegment = 4096;

// T: float, bfloat16 or half data, widened as the planes are built; the
// sums are float, rounded once at the end.
template <typename T>
void window_backward_weight_typed(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight, Isa isa) {
  const WindowDotKernel kern = window_dot_kernel(isa);
  const int64_t MK = kern.mk, MT = kern.mt, B = kern.lanes;
  const PhaseDim ph = phase_dim(s.P, s.stride_h, s.dil_h, s.pad_h, s.R);
  const PhaseDim pw = phase_dim(s.Q, s.stride_w, s.dil_w, s.pad_w, s.S);
  const int64_t Hp = ph.len, Wp = pw.len, phases = s.stride_h * s.stride_w;
  const int64_t pitch = Hp * Wp, RS = s.R * s.S, taps = s.C * RS;
  int64_t reach = 0;
  for (int64_t r = 0; r < s.R; ++r)
    for (int64_t t = 0; t < s.S; ++t)
      reach = std::max(reach, ph.base[r] * Wp + pw.base[t]);

  const int64_t per_image = (s.C * phases + s.K) * pitch * int64_t(sizeof(float));
  const int64_t nimg = std::clamp<int64_t>(kChunkBytes / std::max<int64_t>(1, per_image), 1, s.N);
  const int64_t L = round_up(nimg * pitch, B);  // grad_output run of a full chunk
  const int64_t xlen = L + reach;               // input run: every tap's window fits
  std::vector<float> xp(s.C * phases * xlen), gp(s.K * L);

  // Tap (c, r, s) reads phase plane (c, phase_r, phase_s) from its window's start.
  std::vector<int64_t> tap_off(taps);
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t)
        tap_off[(c * s.R + r) * s.S + t] =
            ((c * s.stride_h + ph.phase[r]) * s.stride_w + pw.phase[t]) * xlen +
            ph.base[r] * Wp + pw.base[t];

  const T* x = input.const_data_ptr<T>();
  const T* gy = grad_output.const_data_ptr<T>();
  const Strides4 xs(input), ys(grad_output);
  // Dense: (k, tap); summed over the chunks in float.
  std::vector<float> sums;
  float* dw = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    dw = grad_weight.mutable_data_ptr<float>();
    std::fill_n(dw, s.K * taps, 0.f);
  } else {
    sums.assign(s.K * taps, 0.f);
    dw = sums.data();
  }

  const int64_t kblocks = (s.K + MK - 1) / MK, tblocks = (taps + MT - 1) / MT;
  for (int64_t n0 = 0; n0 < s.N; n0 += nimg) {
    const int64_t ni = std::min(nimg, s.N - n0);
    const int64_t len = round_up(ni * pitch, B);
    // Planes (phase_planes.h): image i at i * pitch; grad_output pixel
    // (p, q) at p * Wp + q; everything else zero.
    const int64_t planes = s.C * phases;
    at::parallel_for(0, planes + s.K, grain_for(ni * pitch), [&](int64_t begin, int64_t end) {
      for (int64_t pl = begin; pl < end; ++pl) {
        const bool is_x = pl < planes;
        float* dst = is_x ? xp.data() + pl * xlen : gp.data() + (pl - planes) * L;
        std::fill_n(dst, is_x ? xlen : L, 0.f);
        for (int64_t i = 0; i < ni; ++i) {
          if (is_x) {
            const int64_t c = pl / phases, a = pl % phases / s.stride_w, b = pl % s.stride_w;
            fill_phase_plane(x + (n0 + i) * xs.d0 + c * xs.d1, xs.d2, xs.d3, s.H, s.W, ph, pw,
                             s.stride_h, s.stride_w, a, b, dst + i * pitch);
          } else {
            const T* src = gy + (n0 + i) * ys.d0 + (pl - planes) * ys.d1;
            for (int64_t p = 0; p < s.P; ++p)
              for (int64_t q = 0; q < s.Q; ++q)
                dst[i * pitch + p * Wp + q] = static_cast<float>(src[p * ys.d2 + q * ys.d3]);
          }
        }
      }
    });
    // Tiles in (k block, tap block) order, so consecutive tiles of a thread
    // share grad_output rows. A tile's sum runs over chunks, then segments,
    // then lanes, in that order whatever the thread: deterministic.
    at::parallel_for(0, kblocks * tblocks, 1, [&](int64_t begin, int64_t end) {
      const float* a[8];
      const float* b[8];
      float out[64];
      for (int64_t j0 = 0; j0 < len; j0 += kSegment) {
        const int64_t seg = std::min(kSegment, len - j0);
        for (int64_t tile = begin; tile < end; ++tile) {
          const int64_t k0 = tile / tblocks * MK, t0 = tile % tblocks * MT;
          // Rows and taps past the edge repeat the last one; their sums are dropped.
          for (int64_t i = 0; i < MK; ++i)
            a[i] = gp.data() + std::min(k0 + i, s.K - 1) * L + j0;
          for (int64_t t = 0; t < MT; ++t)
            b[t] = xp.data() + tap_off[std::min(t0 + t, taps - 1)] + j0;
          std::fill_n(out, MK * MT, 0.f);
          kern.fn(a, b, seg, out);
          for (int64_t i = 0; i < MK && k0 + i < s.K; ++i)
            for (int64_t t = 0; t < MT && t0 + t < taps; ++t)
              dw[(k0 + i) * taps + t0 + t] += out[i * MT + t];
        }
      }
    });
  }
  if constexpr (!std::is_same_v<T, float>) {
    T* out = grad_weight.mutable_data_ptr<T>();
    for (int64_t i = 0; i < s.K * taps; ++i) out[i] = static_cast<T>(sums[i]);
  }
}

}  // namespace

void window_backward_weight(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight, Isa isa) {
  // Named in torch.profiler's trace: the tests check that the path runs.
  RECORD_FUNCTION("conv_ext::cpu::window_backward_weight", std::vector<c10::IValue>());
  CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(input.scalar_type(), "window_backward_weight", [&] {
    window_backward_weight_typed<scalar_t>(grad_output, input, s, grad_weight, isa);
  });
}

}  // namespace conv_ext::cpu
