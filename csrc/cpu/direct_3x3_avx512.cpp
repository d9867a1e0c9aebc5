// The 3 x 3, unit-stride direct correlation of direct_rows.h for float on
// AVX-512, reading the source planes in place: the taps that fall on the
// padding are masked out of the loads (a masked-off lane reads no memory),
// so there is no padded copy of any row. The portable kernel builds each
// padded row in a ring first (correlate_ring); on a 56 x 56 plane in L1
// that copy took about 1100 of its 2600 cycles.
//
// Only this file's functions carry the AVX-512 target; the library stays
// built for the baseline instruction set and calls them when cpu_isa() says
// so.
#include <immintrin.h>

#include <vector>

#include "direct_rows.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CONV_EXT_AVX512 __attribute__((target("avx512f")))
#define CONV_EXT_AVX512_INLINE __attribute__((target("avx512f"), always_inline)) inline

namespace conv_ext::cpu {
namespace {

constexpr int kLanes = 16;

// Where block b of an output row reads: its first output column (the last
// block ends at Q) and, for a row's first and last blocks, the lanes whose
// source column (per tap column s) is inside [0, W).
struct BlockTaps {
  int64_t st;
  __mmask16 mask[3];
};

// RB output rows x NB blocks from RB + 2 source rows per source, as
// correlate3x3_blocks in direct_rows.h: every loaded vector feeds each
// output row it belongs to. rows[c*(RB+2) + j] + col0 is source c's row
// p0 + j at the first block's first tap column (a zero row off the image).
// Only a row's first block (FIRST: block 0 of this call) and last block
// (LAST: block NB-1) can reach the padding, and only their loads are
// masked (masked-off lanes read no memory). Measured on a 56 x 56 plane
// in L1, against 1475 cycles for the same kernel on a padded copy: masked
// loads in every block 2508 (a mask register reload per load); masked FMAs
// over plain loads of the neighbouring elements 2400 (GCC shuffles the
// accumulators around them); masked loads in the edge blocks only, 2200.
template <int RB, int NB, bool FIRST, bool LAST>
CONV_EXT_AVX512_INLINE void blocks3x3(
    const float* const* rows, int64_t nsrc, const float* wts, float init,
    const BlockTaps* bt, int64_t col0, int64_t dw, float* o, int64_t os) {
  __m512 a[RB][NB];
  int64_t st[NB];
#pragma GCC unroll 4
  for (int i = 0; i < NB; ++i) st[i] = bt[i].st;
#pragma GCC unroll 8
  for (int k = 0; k < RB; ++k)
#pragma GCC unroll 4
    for (int i = 0; i < NB; ++i) a[k][i] = _mm512_set1_ps(init);
  __mmask16 m0[3], m1[3];
  for (int s = 0; s < 3; ++s) {
    m0[s] = bt[0].mask[s];
    m1[s] = bt[NB - 1].mask[s];
  }
  for (int64_t c = 0; c < nsrc; ++c) {
    __m512 w[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) w[t] = _mm512_set1_ps(wts[c * 9 + t]);
#pragma GCC unroll 8
    for (int j = 0; j < RB + 2; ++j) {
      const float* x = rows[c * (RB + 2) + j] + col0;
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s)
#pragma GCC unroll 4
        for (int i = 0; i < NB; ++i) {
          const float* xp = x + s * dw + st[i];
          __m512 xv;
          if (FIRST && i == 0) {
            xv = _mm512_maskz_loadu_ps(m0[s], xp);
          } else if (LAST && i == NB - 1) {
            xv = _mm512_maskz_loadu_ps(m1[s], xp);
          } else {
            xv = _mm512_loadu_ps(xp);
          }
          // Keep the vector in a register for all its FMAs; GCC 12 folds
          // it back into each FMA as a memory operand otherwise.
          asm("" : "+v"(xv));
#pragma GCC unroll 8
          for (int k = 0; k < RB; ++k)
            if (j - k >= 0 && j - k < 3)
              a[k][i] = _mm512_fmadd_ps(w[(j - k) * 3 + s], xv, a[k][i]);
        }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < RB; ++k)
#pragma GCC unroll 4
    for (int i = 0; i < NB; ++i) _mm512_storeu_ps(o + k * os + st[i], a[k][i]);
}

template <int RB, int NB>
CONV_EXT_AVX512_INLINE void blocks3x3_edges(
    bool first, bool last, const float* const* rows, int64_t nsrc, const float* wts,
    float init, const BlockTaps* bt, int64_t col0, int64_t dw, float* o, int64_t os) {
  if (first && last) {
    blocks3x3<RB, NB, true, true>(rows, nsrc, wts, init, bt, col0, dw, o, os);
  } else if (first) {
    blocks3x3<RB, NB, true, false>(rows, nsrc, wts, init, bt, col0, dw, o, os);
  } else if (last) {
    blocks3x3<RB, NB, false, true>(rows, nsrc, wts, init, bt, col0, dw, o, os);
  } else {
    blocks3x3<RB, NB, false, false>(rows, nsrc, wts, init, bt, col0, dw, o, os);
  }
}

template <int RB>
CONV_EXT_AVX512_INLINE void rows3x3(
    const float* const* rows, int64_t nsrc, const float* wts, float init,
    const BlockTaps* bt, int64_t nb, int64_t col0, int64_t dw, float* o, int64_t os) {
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4)
    blocks3x3_edges<RB, 4>(b == 0, b + 4 == nb, rows, nsrc, wts, init, bt + b, col0, dw, o, os);
  switch (nb - b) {
    case 3:
      blocks3x3_edges<RB, 3>(b == 0, true, rows, nsrc, wts, init, bt + b, col0, dw, o, os);
      break;
    case 2:
      blocks3x3_edges<RB, 2>(b == 0, true, rows, nsrc, wts, init, bt + b, col0, dw, o, os);
      break;
    case 1:
      blocks3x3_edges<RB, 1>(b == 0, true, rows, nsrc, wts, init, bt + b, col0, dw, o, os);
      break;
    default: break;
  }
}

// One call's arguments, for run_rows.
struct RowsCall {
  const DirectGeom& g;
  const PadGeom& pg;
  const Planes<const float>& src;
  int64_t nsrc, H, nout;
  const float* wts;
  const float* init;
  const Planes<float>& dst;
  const BlockTaps* bt;
  int64_t nb, col0;
  const float* zeros;  // a zero row as long as a source row
};

const float* source_row(const RowsCall& a, int64_t c, int64_t h) {
  return h >= 0 && h < a.H ? a.src.data + c * a.src.ps + h * a.src.rs : a.zeros;
}

// Output rows p0 .. p0+n-1 (n = 6, 4 or 1) of every output.
CONV_EXT_AVX512 void run_rows(const RowsCall& a, int n, int64_t p0) {
  const float* rows[kMaxRows];
  for (int j = 0; j < n + 2; ++j) {
    const int64_t h = a.pg.h0 + a.g.rb + p0 + j;
    for (int64_t c = 0; c < a.nsrc; ++c) rows[c * (n + 2) + j] = source_row(a, c, h);
  }
  for (int64_t o = 0; o < a.nout; ++o) {
    const float* w = a.wts + o * a.nsrc * 9;
    const float b = a.init ? a.init[o] : 0.f;
    float* out = a.dst.data + o * a.dst.ps + p0 * a.dst.rs;
    const int64_t dw = a.g.dil_w;
    if (n == 6) rows3x3<6>(rows, a.nsrc, w, b, a.bt, a.nb, a.col0, dw, out, a.dst.rs);
    else if (n == 4) rows3x3<4>(rows, a.nsrc, w, b, a.bt, a.nb, a.col0, dw, out, a.dst.rs);
    else rows3x3<1>(rows, a.nsrc, w, b, a.bt, a.nb, a.col0, dw, out, a.dst.rs);
  }
}

}  // namespace

CONV_EXT_AVX512 bool correlate3x3_avx512(
    const DirectGeom& g, const PadGeom& pg, const Planes<const float>& src, int64_t nsrc,
    int64_t H, int64_t W, int64_t nout, const float* wts, const float* init,
    const Planes<float>& dst) {
  const int64_t nb = (g.Q + kLanes - 1) / kLanes;
  const int64_t col0 = pg.w0 + g.cb;  // source column of block 0, lane 0, tap 0
  BlockTaps bt[kMax3x3Blocks];
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t q = b * kLanes;
    bt[b].st = q + kLanes <= g.Q ? q : g.Q - kLanes;
    for (int s = 0; s < 3; ++s) {
      const int64_t col = col0 + bt[b].st + s * g.dil_w;
      const int64_t lo = col < 0 ? -col : 0;
      const int64_t hi = W - col < kLanes ? W - col : kLanes;
      bt[b].mask[s] = hi > lo ? static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1))
                              : static_cast<__mmask16>(0);
      // Blocks between a row's first and last are not masked: they must not
      // reach the padding (only padding wider than a block makes them).
      if (b > 0 && b + 1 < nb && (col < 0 || col + kLanes > W)) return false;
    }
  }
  thread_local std::vector<float> zeros;
  if (static_cast<int64_t>(zeros.size()) < W) zeros.assign(W, 0.f);
  const RowsCall call{g, pg, src, nsrc, H, nout, wts, init, dst, bt, nb, col0, zeros.data()};
  // 4 rows x 4 blocks (or 6 x 2) accumulators: enough independent FMA
  // chains, with the 9 weights, inside the 32 registers.
  const int rb = nb >= 3 ? 4 : 6;
  if (g.P < rb) {
    for (int64_t p = 0; p < g.P; ++p) run_rows(call, 1, p);
    return true;
  }
  // The last block of rows is shifted up to end at P: its first rows are
  // computed twice, the same operations in the same order, the same values.
  for (int64_t p0 = 0; p0 < g.P; p0 += rb) run_rows(call, rb, p0 + rb <= g.P ? p0 : g.P - rb);
  return true;
}

}  // namespace conv_ext::cpu

#else

namespace conv_ext::cpu {
bool correlate3x3_avx512(
    const DirectGeom&, const PadGeom&, const Planes<const float>&, int64_t, int64_t, int64_t,
    int64_t, const float*, const float*, const Planes<float>&) {
  return false;
}
}  // namespace conv_ext::cpu

#endif
