// Vector builds of the blocked depthwise kernels (depthwise_blocked.h):
// 16 channels of a pixel are one AVX-512 vector, two AVX2 vectors or four
// SSE vectors of the baseline build. As in direct_rows_vec.cpp, `flatten`
// inlines the portable templates into functions compiled for AVX2 + FMA or
// AVX-512F.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "channel_blocks.h"
#include "depthwise_blocked.h"

namespace conv_ext::cpu {
namespace {

constexpr int64_t kCb = kDwBlock;

// Output pixels i0 .. i0+NP-1 (in row-major order, so blocks span rows of
// small planes), all 16 channels: NP * NV independent accumulators (8
// vectors) hide the FMA latency.
template <int B, int NP, typename T>
inline void out_pixels(const DwTask<T>& t, const float* xb, int64_t i0, float* ob) {
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

template <int B, typename T>
void correlate(const DwTask<T>& t, float* work) {
  const DirectGeom& g = t.g;
  float* xb = work;
  float* ob = work + t.pg.Hp * t.pg.Wp * kCb;
  pack_window<B>(t.src, t.s_c, t.s_h, t.s_w, t.H, t.W, t.nc, kCb, t.pg, xb);
  constexpr int NP = B / 2 > 1 ? B / 2 : 1;
  const int64_t PQ = g.P * g.Q;
  int64_t i = 0;
  for (; i + NP <= PQ; i += NP) out_pixels<B, NP>(t, xb, i, ob);
  if (NP > 2 && i + NP / 2 <= PQ) {
    out_pixels<B, (NP > 2 ? NP / 2 : 1)>(t, xb, i, ob);
    i += NP / 2;
  }
  for (; i < PQ; ++i) out_pixels<B, 1>(t, xb, i, ob);
  unpack_window<B>(ob, PadGeom{0, g.P, 0, g.Q}, t.nc, kCb, t.dst, t.d_c, t.d_h, t.d_w, g.P, g.Q);
}

// Grad input at stride > 1 as a gather: window element (i, j) of the grad
// input sums w[r][s] * dy[p][q] over the tap rows (r, p) with p*st_h + rb +
// r*dil_h = i and the tap columns (s, q) with q*st_w + cb + s*dil_w = j,
// listed once per task. Every element is written once: no zeroed window,
// no read-modify-write per tap (a scatter through the taps did both: 5 x 5
// (8, 144, 28, 28) stride 2, 1 thread, 1.0 -> 0.85 ms).
template <int B, typename T>
void strided_input(const DwTask<T>& t, float* work) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kCb / B;
  const DirectGeom& g = t.g;
  const int64_t Hp = t.pg.Hp, Wp = t.pg.Wp;
  float* xb = work;
  float* db = work + Hp * Wp * kCb;
  pack_window<B>(t.src, t.s_c, t.s_h, t.s_w, g.P, g.Q, t.nc, kCb,
                       PadGeom{0, g.P, 0, g.Q}, db);
  // rows[rs[i] .. rs[i+1]): (weight row offset, dy row offset) pairs.
  thread_local std::vector<int64_t> rs, rows, cs, cols;
  auto list = [](int64_t n, int64_t O, int64_t st, int64_t base, int64_t dil, int64_t K,
                 int64_t wmul, int64_t dmul, std::vector<int64_t>& start,
                 std::vector<int64_t>& pairs) {
    start.assign(n + 1, 0);
    pairs.clear();
    for (int64_t e = 0; e < n; ++e) {
      start[e] = static_cast<int64_t>(pairs.size());
      for (int64_t k = 0; k < K; ++k) {
        const int64_t rem = e - base - k * dil;
        if (rem < 0 || rem % st != 0 || rem / st >= O) continue;
        pairs.push_back(k * wmul);
        pairs.push_back(rem / st * dmul);
      }
    }
    start[n] = static_cast<int64_t>(pairs.size());
  };
  list(Hp, g.P, g.st_h, g.rb, g.dil_h, g.R, g.S * kCb, g.Q * kCb, rs, rows);
  list(Wp, g.Q, g.st_w, g.cb, g.dil_w, g.S, kCb, kCb, cs, cols);
  for (int64_t i = 0; i < Hp; ++i)
    for (int64_t j = 0; j < Wp; ++j) {
      V acc[NV];
      for (int v = 0; v < NV; ++v) acc[v] = V{};
      for (int64_t a = rs[i]; a < rs[i + 1]; a += 2)
        for (int64_t b = cs[j]; b < cs[j + 1]; b += 2) {
          const float* w = t.wt + rows[a] + cols[b];
          const float* d = db + rows[a + 1] + cols[b + 1];
          for (int v = 0; v < NV; ++v) acc[v] += loadv<B>(w + v * B) * loadv<B>(d + v * B);
        }
      for (int v = 0; v < NV; ++v) storev<B>(xb + (i * Wp + j) * kCb + v * B, acc[v]);
    }
  unpack_window<B>(xb, t.pg, t.nc, kCb, t.dst, t.d_c, t.d_h, t.d_w, t.H, t.W);
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
template <int B, typename T>
inline void dot_3x3(const DwTask<T>& t, const float* xb, const float* db, float* acc) {
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

template <int B, typename T>
void dot(const DwTask<T>& t, const T* dy, int64_t dy_c, int64_t dy_h, int64_t dy_w,
         float* acc, float* work) {
  const DirectGeom& g = t.g;
  float* xb = work;
  float* db = work + t.pg.Hp * t.pg.Wp * kCb;
  pack_window<B>(t.src, t.s_c, t.s_h, t.s_w, t.H, t.W, t.nc, kCb, t.pg, xb);
  pack_window<B>(dy, dy_c, dy_h, dy_w, g.P, g.Q, t.nc, kCb, PadGeom{0, g.P, 0, g.Q}, db);
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

// The builds for one data type T per target.
#define CONV_EXT_DW_BLOCKED(T)                                                              \
  CONV_EXT_FLAT_AVX2 void correlate_avx2(const DwTask<T>& t, float* w) {                   \
    correlate<8>(t, w);                                                                    \
  }                                                                                        \
  CONV_EXT_FLAT_AVX512 void correlate_avx512(const DwTask<T>& t, float* w) {               \
    correlate<16>(t, w);                                                                   \
  }                                                                                        \
  CONV_EXT_FLAT_AVX2 void strided_input_avx2(const DwTask<T>& t, float* w) {               \
    strided_input<8>(t, w);                                                                \
  }                                                                                        \
  CONV_EXT_FLAT_AVX512 void strided_input_avx512(const DwTask<T>& t, float* w) {           \
    strided_input<16>(t, w);                                                               \
  }                                                                                        \
  CONV_EXT_FLAT_AVX2 void dot_avx2(const DwTask<T>& t, const T* dy, int64_t c, int64_t h,  \
                                   int64_t w, float* acc, float* work) {                   \
    dot<8>(t, dy, c, h, w, acc, work);                                                     \
  }                                                                                        \
  CONV_EXT_FLAT_AVX512 void dot_avx512(const DwTask<T>& t, const T* dy, int64_t c,         \
                                       int64_t h, int64_t w, float* acc, float* work) {    \
    dot<16>(t, dy, c, h, w, acc, work);                                                    \
  }

CONV_EXT_DW_BLOCKED(float)
CONV_EXT_DW_BLOCKED(c10::BFloat16)
CONV_EXT_DW_BLOCKED(c10::Half)

}  // namespace

void window_offsets(const DirectGeom& g, int64_t* pix, int64_t* tap) {
  for (int64_t p = 0; p < g.P; ++p)
    for (int64_t q = 0; q < g.Q; ++q)
      pix[p * g.Q + q] = (p * g.st_h + g.rb) * g.Wp + q * g.st_w + g.cb;
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) tap[r * g.S + s] = r * g.dil_h * g.Wp + s * g.dil_w;
}

template <typename T>
void dw_blocked_correlate(Isa isa, const DwTask<T>& t, float* work) {
  switch (isa) {
    case Isa::kAvx512: return correlate_avx512(t, work);
    case Isa::kAvx2: return correlate_avx2(t, work);
    default: return correlate<4>(t, work);
  }
}

template <typename T>
void dw_blocked_strided_input(Isa isa, const DwTask<T>& t, float* work) {
  switch (isa) {
    case Isa::kAvx512: return strided_input_avx512(t, work);
    case Isa::kAvx2: return strided_input_avx2(t, work);
    default: return strided_input<4>(t, work);
  }
}

template <typename T>
void dw_blocked_dot(Isa isa, const DwTask<T>& t, const T* dy, int64_t dy_c, int64_t dy_h,
                    int64_t dy_w, float* acc, float* work) {
  switch (isa) {
    case Isa::kAvx512: return dot_avx512(t, dy, dy_c, dy_h, dy_w, acc, work);
    case Isa::kAvx2: return dot_avx2(t, dy, dy_c, dy_h, dy_w, acc, work);
    default: return dot<4>(t, dy, dy_c, dy_h, dy_w, acc, work);
  }
}

#define CONV_EXT_DW_BLOCKED_ENTRIES(T)                                                      \
  template void dw_blocked_correlate<T>(Isa, const DwTask<T>&, float*);                    \
  template void dw_blocked_strided_input<T>(Isa, const DwTask<T>&, float*);                \
  template void dw_blocked_dot<T>(Isa, const DwTask<T>&, const T*, int64_t, int64_t,       \
                                  int64_t, float*, float*);
CONV_EXT_DW_BLOCKED_ENTRIES(float)
CONV_EXT_DW_BLOCKED_ENTRIES(c10::BFloat16)
CONV_EXT_DW_BLOCKED_ENTRIES(c10::Half)

}  // namespace conv_ext::cpu
