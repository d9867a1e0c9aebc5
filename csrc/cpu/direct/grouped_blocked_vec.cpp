// Vector builds of the grouped blocked kernels (grouped_blocked.h): 16
// destination channels are one AVX-512 vector, two AVX2 vectors or four
// SSE vectors of the baseline build; source values are broadcast. As in
// direct_rows_vec.cpp, `flatten` inlines the portable templates into
// functions compiled for AVX2 + FMA or AVX-512F.
#include <algorithm>
#include <cstdint>

#include "channel_blocks.h"
#include "grouped_blocked.h"

namespace conv_ext::cpu {
namespace {

constexpr int64_t kL = kGroupLanes;

inline int64_t padded(int64_t n) { return (n + kL - 1) / kL * kL; }

// Destination block kb of output pixels i0 .. i0+NP-1: NP * NV
// accumulators; each weight vector loaded once for the NP pixels.
template <int B, int NP, typename T>
inline void out_pixels(const GroupTask<T>& t, const float* xb, int64_t i0, int64_t kb, float* ob,
                       int64_t ldo) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kL / B;
  const int64_t RS = t.g.R * t.g.S, ns = t.ns;
  V acc[NP][NV];
  const float* x[NP];
  for (int k = 0; k < NP; ++k) {
    x[k] = xb + t.pix[i0 + k] * ns;
    for (int v = 0; v < NV; ++v) acc[k][v] = t.init ? loadv<B>(t.init + kb * kL + v * B) : V{};
  }
  const float* w = t.wt + kb * RS * ns * kL;
  for (int64_t j = 0; j < RS; ++j) {
    const int64_t off = t.tap[j] * ns;
    const float* wj = w + j * ns * kL;
    for (int64_t c = 0; c < ns; ++c) {
      V wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = loadv<B>(wj + c * kL + v * B);
#pragma GCC unroll 8
      for (int k = 0; k < NP; ++k) {
        const float b = x[k][off + c];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[k][v] += wv[v] * b;
      }
    }
  }
  for (int k = 0; k < NP; ++k)
    for (int v = 0; v < NV; ++v) storev<B>(ob + (i0 + k) * ldo + kb * kL + v * B, acc[k][v]);
}

template <int B, typename T>
void correlate(const GroupTask<T>& t, float* work) {
  const DirectGeom& g = t.g;
  const int64_t ldo = padded(t.nd), PQ = g.P * g.Q;
  float* xb = work;
  float* ob = work + t.pg.Hp * t.pg.Wp * t.ns;
  pack_window<B>(t.src, t.s_c, t.s_h, t.s_w, t.H, t.W, t.ns, t.ns, t.pg, xb);
  constexpr int NP = B / 2 > 1 ? B / 2 : 1;
  for (int64_t kb = 0; kb < ldo / kL; ++kb) {
    int64_t i = 0;
    for (; i + NP <= PQ; i += NP) out_pixels<B, NP>(t, xb, i, kb, ob, ldo);
    for (; i < PQ; ++i) out_pixels<B, 1>(t, xb, i, kb, ob, ldo);
  }
  unpack_window<B>(ob, PadGeom{0, g.P, 0, g.Q}, t.nd, ldo, t.dst, t.d_c, t.d_h, t.d_w, g.P, g.Q);
}

// The contributions of NPX grad_output pixels (d + x*ns, base + x*bs) to
// NT taps' 16 destination channels, summed over the ns source channels in
// registers (NPX * NT independent chains, each weight vector loaded once
// for the NPX pixels), then added into the zeroed window once.
template <int B, int NT, int NPX, typename T>
inline void scatter_taps(const GroupTask<T>& t, const float* d, float* base, int64_t bs,
                         int64_t j0, int64_t cb, int64_t ldx) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kL / B;
  const int64_t RS = t.g.R * t.g.S, ns = t.ns;
  V a[NPX][NT][NV];
  for (int x = 0; x < NPX; ++x)
    for (int u = 0; u < NT; ++u)
      for (int v = 0; v < NV; ++v) a[x][u][v] = V{};
  const float* w = t.wt + (cb * RS + j0) * ns * kL;
  for (int64_t k = 0; k < ns; ++k) {
    float b[NPX];
    for (int x = 0; x < NPX; ++x) b[x] = d[x * ns + k];
#pragma GCC unroll 4
    for (int u = 0; u < NT; ++u)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const V wv = loadv<B>(w + (u * ns + k) * kL + v * B);
#pragma GCC unroll 2
        for (int x = 0; x < NPX; ++x) a[x][u][v] += wv * b[x];
      }
  }
  for (int x = 0; x < NPX; ++x)
    for (int u = 0; u < NT; ++u) {
      float* o = base + x * bs + t.tap[j0 + u] * ldx + cb * kL;
      for (int v = 0; v < NV; ++v) storev<B>(o + v * B, loadv<B>(o + v * B) + a[x][u][v]);
    }
}

template <int B, int NPX, typename T>
inline void scatter_pixels(const GroupTask<T>& t, const float* db, float* xb, int64_t i,
                           int64_t ldx) {
  constexpr int NT = B == 16 ? 4 : 2;
  const int64_t RS = t.g.R * t.g.S;
  float* base = xb + t.pix[i] * ldx;
  const int64_t bs = NPX > 1 ? (t.pix[i + NPX - 1] - t.pix[i]) / (NPX - 1) * ldx : 0;
  for (int64_t cb = 0; cb < ldx / kL; ++cb) {
    int64_t j = 0;
    for (; j + NT <= RS; j += NT)
      scatter_taps<B, NT, NPX>(t, db + i * t.ns, base, bs, j, cb, ldx);
    for (; j < RS; ++j) scatter_taps<B, 1, NPX>(t, db + i * t.ns, base, bs, j, cb, ldx);
  }
}

template <int B, typename T>
void scatter(const GroupTask<T>& t, float* work) {
  const DirectGeom& g = t.g;
  const int64_t ldx = padded(t.nd);
  float* xb = work;
  float* db = work + t.pg.Hp * t.pg.Wp * ldx;
  std::fill_n(xb, t.pg.Hp * t.pg.Wp * ldx, 0.f);
  pack_window<B>(t.src, t.s_c, t.s_h, t.s_w, g.P, g.Q, t.ns, t.ns, PadGeom{0, g.P, 0, g.Q}, db);
  // Pairs of neighbours in a row (their windows a column stride apart).
  // The order of the additions into each window element depends on the
  // geometry alone, not on the threads: deterministic.
  for (int64_t p = 0; p < g.P; ++p) {
    int64_t q = 0;
    for (; q + 2 <= g.Q; q += 2) scatter_pixels<B, 2>(t, db, xb, p * g.Q + q, ldx);
    for (; q < g.Q; ++q) scatter_pixels<B, 1>(t, db, xb, p * g.Q + q, ldx);
  }
  unpack_window<B>(xb, t.pg, t.nd, ldx, t.dst, t.d_c, t.d_h, t.d_w, t.H, t.W);
}

// CC source channels c0 .. of tap j against destination block kb, summed
// over all output pixels in registers.
template <int B, int CC, typename T>
inline void dot_channels(const GroupTask<T>& t, const float* xb, const float* db, int64_t j,
                         int64_t kb, int64_t c0, float* acc) {
  using V = typename Vec<float, B>::type;
  constexpr int NV = kL / B;
  const int64_t ldd = padded(t.nd), PQ = t.g.P * t.g.Q, ns = t.ns;
  V a[CC][NV];
  for (int u = 0; u < CC; ++u)
    for (int v = 0; v < NV; ++v) a[u][v] = V{};
  const int64_t off = t.tap[j] * ns + c0;
  for (int64_t i = 0; i < PQ; ++i) {
    V dv[NV];
    for (int v = 0; v < NV; ++v) dv[v] = loadv<B>(db + i * ldd + kb * kL + v * B);
    const float* x = xb + t.pix[i] * ns + off;
#pragma GCC unroll 8
    for (int u = 0; u < CC; ++u) {
      const float b = x[u];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) a[u][v] += dv[v] * b;
    }
  }
  for (int u = 0; u < CC; ++u)
    for (int v = 0; v < NV; ++v) {
      float* o = acc + (j * ns + c0 + u) * ldd + kb * kL + v * B;
      storev<B>(o, loadv<B>(o) + a[u][v]);
    }
}

template <int B, typename T>
void dot(const GroupTask<T>& t, const T* dy, int64_t dy_c, int64_t dy_h, int64_t dy_w,
         float* acc, float* work) {
  const DirectGeom& g = t.g;
  const int64_t ldd = padded(t.nd), RS = g.R * g.S;
  float* xb = work;
  float* db = work + t.pg.Hp * t.pg.Wp * t.ns;
  pack_window<B>(t.src, t.s_c, t.s_h, t.s_w, t.H, t.W, t.ns, t.ns, t.pg, xb);
  pack_window<B>(dy, dy_c, dy_h, dy_w, g.P, g.Q, t.nd, ldd, PadGeom{0, g.P, 0, g.Q}, db);
  constexpr int CC = B / 2 > 1 ? B / 2 : 1;
  for (int64_t j = 0; j < RS; ++j)
    for (int64_t kb = 0; kb < ldd / kL; ++kb) {
      int64_t c = 0;
      for (; c + CC <= t.ns; c += CC) dot_channels<B, CC>(t, xb, db, j, kb, c, acc);
      for (; c < t.ns; ++c) dot_channels<B, 1>(t, xb, db, j, kb, c, acc);
    }
}

// The builds for one data type T per target.
#define CONV_EXT_GROUP_BLOCKED(T)                                                           \
  CONV_EXT_FLAT_AVX2 void correlate_avx2(const GroupTask<T>& t, float* w) {                \
    correlate<8>(t, w);                                                                    \
  }                                                                                        \
  CONV_EXT_FLAT_AVX512 void correlate_avx512(const GroupTask<T>& t, float* w) {            \
    correlate<16>(t, w);                                                                   \
  }                                                                                        \
  CONV_EXT_FLAT_AVX2 void scatter_avx2(const GroupTask<T>& t, float* w) {                  \
    scatter<8>(t, w);                                                                      \
  }                                                                                        \
  CONV_EXT_FLAT_AVX512 void scatter_avx512(const GroupTask<T>& t, float* w) {              \
    scatter<16>(t, w);                                                                     \
  }                                                                                        \
  CONV_EXT_FLAT_AVX2 void dot_avx2(const GroupTask<T>& t, const T* dy, int64_t c,          \
                                   int64_t h, int64_t w, float* acc, float* work) {        \
    dot<8>(t, dy, c, h, w, acc, work);                                                     \
  }                                                                                        \
  CONV_EXT_FLAT_AVX512 void dot_avx512(const GroupTask<T>& t, const T* dy, int64_t c,      \
                                       int64_t h, int64_t w, float* acc, float* work) {    \
    dot<16>(t, dy, c, h, w, acc, work);                                                    \
  }

CONV_EXT_GROUP_BLOCKED(float)
CONV_EXT_GROUP_BLOCKED(c10::BFloat16)
CONV_EXT_GROUP_BLOCKED(c10::Half)

}  // namespace

template <typename T>
void group_blocked_correlate(Isa isa, const GroupTask<T>& t, float* work) {
  switch (isa) {
    case Isa::kAvx512: return correlate_avx512(t, work);
    case Isa::kAvx2: return correlate_avx2(t, work);
    default: return correlate<4>(t, work);
  }
}

template <typename T>
void group_blocked_scatter(Isa isa, const GroupTask<T>& t, float* work) {
  switch (isa) {
    case Isa::kAvx512: return scatter_avx512(t, work);
    case Isa::kAvx2: return scatter_avx2(t, work);
    default: return scatter<4>(t, work);
  }
}

template <typename T>
void group_blocked_dot(Isa isa, const GroupTask<T>& t, const T* dy, int64_t dy_c,
                       int64_t dy_h, int64_t dy_w, float* acc, float* work) {
  switch (isa) {
    case Isa::kAvx512: return dot_avx512(t, dy, dy_c, dy_h, dy_w, acc, work);
    case Isa::kAvx2: return dot_avx2(t, dy, dy_c, dy_h, dy_w, acc, work);
    default: return dot<4>(t, dy, dy_c, dy_h, dy_w, acc, work);
  }
}

#define CONV_EXT_GROUP_BLOCKED_ENTRIES(T)                                                   \
  template void group_blocked_correlate<T>(Isa, const GroupTask<T>&, float*);              \
  template void group_blocked_scatter<T>(Isa, const GroupTask<T>&, float*);                \
  template void group_blocked_dot<T>(Isa, const GroupTask<T>&, const T*, int64_t, int64_t, \
                                     int64_t, float*, float*);
CONV_EXT_GROUP_BLOCKED_ENTRIES(float)
CONV_EXT_GROUP_BLOCKED_ENTRIES(c10::BFloat16)
CONV_EXT_GROUP_BLOCKED_ENTRIES(c10::Half)

}  // namespace conv_ext::cpu
