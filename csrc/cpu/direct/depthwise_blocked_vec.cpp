// Vector builds of the blocked depthwise kernels (depthwise_blocked.h):
// 16 channels of a pixel are one AVX-512 vector, two AVX2 vectors or four
// SSE vectors of the baseline build. As in direct_rows_vec.cpp, `flatten`
// inlines the portable templates into functions compiled for AVX2 + FMA or
// AVX-512F.
#include <algorithm>
#include <cstdint>

#include "channel_blocks.h"
#include "depthwise_blocked.h"

namespace conv_ext::cpu {
namespace {

constexpr int64_t kCb = kDwBlock;

// Output pixels i0 .. i0+NP-1 (in row-major order, so blocks span rows of
// small planes), all 16 channels: NP * NV independent accumulators (8
// vectors) hide the FMA latency.
template <int B, int NP>
inline void out_pixels(const DwTask& t, const float* xb, int64_t i0, float* ob) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kCb / B;
  V acc[NP][NV];
  const float* x[NP];
  for (int k = 0; k < NP; ++k) {
    x[k] = xb + t.pix[i0 + k] * kCb;
    for (int v = 0; v < NV; ++v) acc[k][v] = t.init ? loadv<B>(t.init + v * B) : V{};
  }
  const int64_t RS = t.g.R * t.g.S;
  for (int64_t j = 0; j < RS; ++j) {
    V wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = loadv<B>(t.wt + j * kCb + v * B);
    const int64_t off = t.tap[j] * kCb;
#pragma GCC unroll 8
    for (int k = 0; k < NP; ++k)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[k][v] += wv[v] * loadv<B>(x[k] + off + v * B);
  }
  for (int k = 0; k < NP; ++k)
    for (int v = 0; v < NV; ++v) storev<B>(ob + (i0 + k) * kCb + v * B, acc[k][v]);
}

template <int B>
void correlate(const DwTask& t, float* work) {
  const DirectGeom& g = t.g;
  float* xb = work;
  float* ob = work + t.pg.Hp * t.pg.Wp * kCb;
  pack_window<B == 16>(t.src, t.s_c, t.s_h, t.s_w, t.H, t.W, t.nc, kCb, t.pg, xb);
  constexpr int NP = B / 2 > 1 ? B / 2 : 1;
  const int64_t PQ = g.P * g.Q;
  int64_t i = 0;
  for (; i + NP <= PQ; i += NP) out_pixels<B, NP>(t, xb, i, ob);
  if (NP > 2 && i + NP / 2 <= PQ) {
    out_pixels<B, (NP > 2 ? NP / 2 : 1)>(t, xb, i, ob);
    i += NP / 2;
  }
  for (; i < PQ; ++i) out_pixels<B, 1>(t, xb, i, ob);
  unpack_window<B == 16>(ob, PadGeom{0, g.P, 0, g.Q}, t.nc, kCb, t.dst, t.d_c, t.d_h, t.d_w, g.P, g.Q);
}

// Every grad_output pixel adds its taps into the zeroed window of the
// grad input, pixels and taps in a fixed order.
template <int B>
void scatter(const DwTask& t, float* work) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kCb / B;
  const DirectGeom& g = t.g;
  float* xb = work;
  float* db = work + t.pg.Hp * t.pg.Wp * kCb;
  std::fill_n(xb, t.pg.Hp * t.pg.Wp * kCb, 0.f);
  pack_window<B == 16>(t.src, t.s_c, t.s_h, t.s_w, g.P, g.Q, t.nc, kCb, PadGeom{0, g.P, 0, g.Q}, db);
  for (int64_t p = 0; p < g.P; ++p)
    for (int64_t q = 0; q < g.Q; ++q) {
      V d[NV];
      for (int v = 0; v < NV; ++v) d[v] = loadv<B>(db + (p * g.Q + q) * kCb + v * B);
      for (int64_t r = 0; r < g.R; ++r) {
        float* xr = xb + ((p * g.st_h + g.rb + r * g.dil_h) * g.Wp + g.cb + q * g.st_w) * kCb;
        for (int64_t s = 0; s < g.S; ++s) {
          float* x = xr + s * g.dil_w * kCb;
          const float* w = t.wt + (r * g.S + s) * kCb;
          for (int v = 0; v < NV; ++v)
            storev<B>(x + v * B, loadv<B>(x + v * B) + loadv<B>(w + v * B) * d[v]);
        }
      }
    }
  unpack_window<B == 16>(xb, t.pg, t.nc, kCb, t.dst, t.d_c, t.d_h, t.d_w, t.H, t.W);
}

// Tap row r of the grad weight with its S taps' sums in registers over the
// whole plane: each dy vector is loaded once for all of them.
template <int B, int S>
inline void dot_row(const DirectGeom& g, const float* xb, const float* db, int64_t r,
                    float* acc) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kCb / B;
  V a[S][NV];
  for (int s = 0; s < S; ++s)
    for (int v = 0; v < NV; ++v) a[s][v] = V{};
  for (int64_t p = 0; p < g.P; ++p) {
    const float* xr = xb + ((p * g.st_h + g.rb + r * g.dil_h) * g.Wp + g.cb) * kCb;
    const float* d = db + p * g.Q * kCb;
    for (int64_t q = 0; q < g.Q; ++q) {
      V dv[NV];
      for (int v = 0; v < NV; ++v) dv[v] = loadv<B>(d + q * kCb + v * B);
      const float* x = xr + q * g.st_w * kCb;
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
          a[s][v] += dv[v] * loadv<B>(x + s * g.dil_w * kCb + v * B);
    }
  }
  for (int s = 0; s < S; ++s)
    for (int v = 0; v < NV; ++v) {
      float* o = acc + (r * S + s) * kCb + v * B;
      storev<B>(o, loadv<B>(o) + a[s][v]);
    }
}

// 3 x 3: all nine tap sums in registers over the whole plane, nine
// independent chains (one tap row at a time left three, latency-bound on
// planes of 16 pixels); each dy vector loaded once for all of them.
template <int B>
inline void dot_3x3(const DwTask& t, const float* xb, const float* db, float* acc) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kCb / B;
  const DirectGeom& g = t.g;
  V a[9][NV];
  for (int j = 0; j < 9; ++j)
    for (int v = 0; v < NV; ++v) a[j][v] = V{};
  int64_t off[9];
  for (int j = 0; j < 9; ++j) off[j] = t.tap[j] * kCb;
  const int64_t PQ = g.P * g.Q;
  for (int64_t i = 0; i < PQ; ++i) {
    V dv[NV];
    for (int v = 0; v < NV; ++v) dv[v] = loadv<B>(db + i * kCb + v * B);
    const float* x = xb + t.pix[i] * kCb;
#pragma GCC unroll 9
    for (int j = 0; j < 9; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) a[j][v] += dv[v] * loadv<B>(x + off[j] + v * B);
  }
  for (int j = 0; j < 9; ++j)
    for (int v = 0; v < NV; ++v) {
      float* o = acc + j * kCb + v * B;
      storev<B>(o, loadv<B>(o) + a[j][v]);
    }
}

// Any other kernel width: the tap sums in acc (L1).
template <int B>
void dot_row_any(const DirectGeom& g, const float* xb, const float* db, int64_t r,
                 float* acc) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kCb / B;
  for (int64_t s = 0; s < g.S; ++s) {
    V a[NV];
    for (int v = 0; v < NV; ++v) a[v] = V{};
    for (int64_t p = 0; p < g.P; ++p) {
      const float* x = xb + ((p * g.st_h + g.rb + r * g.dil_h) * g.Wp + g.cb + s * g.dil_w) * kCb;
      const float* d = db + p * g.Q * kCb;
      for (int64_t q = 0; q < g.Q; ++q)
        for (int v = 0; v < NV; ++v)
          a[v] += loadv<B>(d + q * kCb + v * B) * loadv<B>(x + q * g.st_w * kCb + v * B);
    }
    for (int v = 0; v < NV; ++v) {
      float* o = acc + (r * g.S + s) * kCb + v * B;
      storev<B>(o, loadv<B>(o) + a[v]);
    }
  }
}

template <int B>
void dot(const DwTask& t, const float* dy, int64_t dy_c, int64_t dy_h, int64_t dy_w,
         float* acc, float* work) {
  const DirectGeom& g = t.g;
  float* xb = work;
  float* db = work + t.pg.Hp * t.pg.Wp * kCb;
  pack_window<B == 16>(t.src, t.s_c, t.s_h, t.s_w, t.H, t.W, t.nc, kCb, t.pg, xb);
  pack_window<B == 16>(dy, dy_c, dy_h, dy_w, g.P, g.Q, t.nc, kCb, PadGeom{0, g.P, 0, g.Q}, db);
  if (g.R == 3 && g.S == 3 && t.pix != nullptr) return dot_3x3<B>(t, xb, db, acc);
  for (int64_t r = 0; r < g.R; ++r) {
    switch (g.S) {
      case 1: dot_row<B, 1>(g, xb, db, r, acc); break;
      case 3: dot_row<B, 3>(g, xb, db, r, acc); break;
      case 5: dot_row<B, 5>(g, xb, db, r, acc); break;
      case 7: dot_row<B, 7>(g, xb, db, r, acc); break;
      default: dot_row_any<B>(g, xb, db, r, acc); break;
    }
  }
}

CONV_EXT_FLAT_AVX2 void correlate_avx2(const DwTask& t, float* w) { correlate<8>(t, w); }
CONV_EXT_FLAT_AVX512 void correlate_avx512(const DwTask& t, float* w) { correlate<16>(t, w); }
CONV_EXT_FLAT_AVX2 void scatter_avx2(const DwTask& t, float* w) { scatter<8>(t, w); }
CONV_EXT_FLAT_AVX512 void scatter_avx512(const DwTask& t, float* w) { scatter<16>(t, w); }
CONV_EXT_FLAT_AVX2 void dot_avx2(const DwTask& t, const float* dy, int64_t c, int64_t h,
                                 int64_t w, float* acc, float* work) {
  dot<8>(t, dy, c, h, w, acc, work);
}
CONV_EXT_FLAT_AVX512 void dot_avx512(const DwTask& t, const float* dy, int64_t c, int64_t h,
                                     int64_t w, float* acc, float* work) {
  dot<16>(t, dy, c, h, w, acc, work);
}

}  // namespace

void window_offsets(const DirectGeom& g, int64_t* pix, int64_t* tap) {
  for (int64_t p = 0; p < g.P; ++p)
    for (int64_t q = 0; q < g.Q; ++q)
      pix[p * g.Q + q] = (p * g.st_h + g.rb) * g.Wp + q * g.st_w + g.cb;
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) tap[r * g.S + s] = r * g.dil_h * g.Wp + s * g.dil_w;
}

void dw_blocked_correlate(Isa isa, const DwTask& t, float* work) {
  switch (isa) {
    case Isa::kAvx512: return correlate_avx512(t, work);
    case Isa::kAvx2: return correlate_avx2(t, work);
    default: return correlate<4>(t, work);
  }
}

void dw_blocked_scatter(Isa isa, const DwTask& t, float* work) {
  switch (isa) {
    case Isa::kAvx512: return scatter_avx512(t, work);
    case Isa::kAvx2: return scatter_avx2(t, work);
    default: return scatter<4>(t, work);
  }
}

void dw_blocked_dot(Isa isa, const DwTask& t, const float* dy, int64_t dy_c, int64_t dy_h,
                    int64_t dy_w, float* acc, float* work) {
  switch (isa) {
    case Isa::kAvx512: return dot_avx512(t, dy, dy_c, dy_h, dy_w, acc, work);
    case Isa::kAvx2: return dot_avx2(t, dy, dy_c, dy_h, dy_w, acc, work);
    default: return dot<4>(t, dy, dy_c, dy_h, dy_w, acc, work);
  }
}

}  // namespace conv_ext::cpu
