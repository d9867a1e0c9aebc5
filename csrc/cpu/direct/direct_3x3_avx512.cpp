// The 3 x 3, unit-stride direct correlation of direct_ring.h for float on
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

#include "direct_ring.h"

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
// correlate3x3_blocks in direct_ring.h: every loaded vector feeds each
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

namespace {

// Grad weight, one (output k, input c) pair over every image: the 9 tap
// sums of dy[p][q] * x[p + r][q + s] (rows and columns in the forward's
// geometry). Each source row h feeds the three dy rows p = h - r, so each
// block loads 3 source vectors (one per tap column) and 3 dy vectors for 9
// FMAs, where the dy-row-at-a-time form loads 10; the 9 sums stay in
// registers for the whole plane. dyrows[p] for p in [-2, P + 2) (a zero
// row outside [0, P)).
template <int NB>
CONV_EXT_AVX512_INLINE void dot3x3_blocks(
    const float* const* dyrows, const float* x0, int64_t xrs, int64_t hlo, int64_t hhi,
    int64_t h_of_p0, const BlockTaps* bt, int64_t col0, int64_t dw, __mmask16 tail,
    bool first, bool last, __m512* acc) {
  int64_t st[NB];
  for (int i = 0; i < NB; ++i) st[i] = bt[i].st;
  // Source rows p + r, p + r in [0, P + 2): only those on the image add.
  for (int64_t h = hlo; h < hhi; ++h) {
    const float* x = x0 + h * xrs + col0;
    const int64_t pr = h - h_of_p0;  // dy row of tap row 0
#pragma GCC unroll 4
    for (int i = 0; i < NB; ++i) {
      __m512 xv[3];
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s) {
        const float* xp = x + s * dw + st[i];
        if (first && i == 0) {
          xv[s] = _mm512_maskz_loadu_ps(bt[0].mask[s], xp);
        } else if (last && i == NB - 1) {
          xv[s] = _mm512_maskz_loadu_ps(bt[NB - 1].mask[s], xp);
        } else {
          xv[s] = _mm512_loadu_ps(xp);
        }
      }
#pragma GCC unroll 3
      for (int r = 0; r < 3; ++r) {
        const float* d = dyrows[pr - r] + st[i];
        const __m512 dv = last && i == NB - 1 ? _mm512_maskz_loadu_ps(tail, d)
                                              : _mm512_loadu_ps(d);
#pragma GCC unroll 3
        for (int s = 0; s < 3; ++s) acc[r * 3 + s] = _mm512_fmadd_ps(dv, xv[s], acc[r * 3 + s]);
      }
    }
  }
}

}  // namespace

CONV_EXT_AVX512 bool dot3x3_avx512(
    const DirectGeom& g, const PadGeom& pg, const float* x, const ImageStrides& xs,
    int64_t H, int64_t W, const float* dy, const ImageStrides& ys, int64_t N, int64_t Cg, int64_t Kg,
    float* out) {
  const int64_t nb = (g.Q + kLanes - 1) / kLanes;
  const int64_t col0 = pg.w0 + g.cb;
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
      if (b > 0 && b + 1 < nb && (col < 0 || col + kLanes > W)) return false;
    }
  }
  // The last block's lanes that its predecessor already covered.
  const int64_t seen = (nb - 1) * kLanes - bt[nb - 1].st;
  const __mmask16 tail = static_cast<__mmask16>(0xffffu & ~((1u << seen) - 1));
  thread_local std::vector<float> zeros;
  if (static_cast<int64_t>(zeros.size()) < g.Q) zeros.assign(g.Q, 0.f);
  thread_local std::vector<const float*> dyrows;
  dyrows.resize(g.P + 4);
  // Source row of (p, r): pg.h0 + g.rb + p + r; those on the image only.
  const int64_t h_of_p0 = pg.h0 + g.rb;
  const int64_t hlo = h_of_p0 > 0 ? h_of_p0 : 0;
  const int64_t hhi = h_of_p0 + g.P + 2 < H ? h_of_p0 + g.P + 2 : H;
  for (int64_t kk = 0; kk < Kg; ++kk)
    for (int64_t c = 0; c < Cg; ++c) {
      __m512 acc[9];
      for (int t = 0; t < 9; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t n = 0; n < N; ++n) {
        const float* d = dy + n * ys.n + kk * ys.c;
        for (int64_t p = -2; p < g.P + 2; ++p)
          dyrows[p + 2] = p >= 0 && p < g.P ? d + p * ys.h : zeros.data();
        const float* const* rows = dyrows.data() + 2;
        const float* xc = x + n * xs.n + c * xs.c;
        int64_t b = 0;
        for (; b + 4 <= nb; b += 4)
          dot3x3_blocks<4>(rows, xc, xs.h, hlo, hhi, h_of_p0, bt + b, col0, g.dil_w, tail,
                           b == 0, b + 4 == nb, acc);
        switch (nb - b) {
          case 3:
            dot3x3_blocks<3>(rows, xc, xs.h, hlo, hhi, h_of_p0, bt + b, col0, g.dil_w, tail,
                             b == 0, true, acc);
            break;
          case 2:
            dot3x3_blocks<2>(rows, xc, xs.h, hlo, hhi, h_of_p0, bt + b, col0, g.dil_w, tail,
                             b == 0, true, acc);
            break;
          case 1:
            dot3x3_blocks<1>(rows, xc, xs.h, hlo, hhi, h_of_p0, bt + b, col0, g.dil_w, tail,
                             b == 0, true, acc);
            break;
          default: break;
        }
      }
      // Lanes summed in a fixed order: the same result on every run.
      for (int t = 0; t < 9; ++t) {
        alignas(64) float l[kLanes];
        _mm512_store_ps(l, acc[t]);
        float sum = 0.f;
        for (int i = 0; i < kLanes; ++i) sum += l[i];
        out[(kk * Cg + c) * 9 + t] = sum;
      }
    }
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
bool dot3x3_avx512(
    const DirectGeom&, const PadGeom&, const float*, const ImageStrides&, int64_t, int64_t,
    const float*, const ImageStrides&, int64_t, int64_t, int64_t, float*) {
  return false;
}
}  // namespace conv_ext::cpu

#endif
