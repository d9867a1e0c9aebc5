// Plane kernels of the direct (no GEMM) convolution used for depthwise and
// few-channels-per-group layers (depthwise_direct.h), vectorized along the
// output row. The kernels read zero-padded source rows, so they have no
// edge cases and half / bfloat16 inputs take the same vector code as float:
// whole padded planes (pad_plane, in the accumulation type) here, or a ring
// of padded rows (direct_ring.h).
//
//   correlate_padded: out[p][q] = init + sum_{i, r, s} wts[i][r][s] *
//                       plane_i[p*st_h + r*dil_h + rb][q*st_w + s*dil_w + cb]
//   dot_padded:       lanes[r][s][l] += sum over (p, q) of
//                       dy[p][q] * plane[p*st_h + r*dil_h + rb][q*st_w + s*dil_w + cb]
//
// Blocks of output rows and blocks along a row are held in registers
// (several independent FMA chains); grad weight keeps all 3 x 3 tap sums
// in registers for a whole plane.
//
// All are plain templates; direct_rows_vec.cpp builds AVX2 + FMA and
// AVX-512 instances by inlining them into functions compiled for those
// targets, so the rest of the library keeps the baseline instruction set.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

namespace conv_ext::cpu {

constexpr int64_t kRowBlock = 16;  // the widest block: 16 floats = one zmm

// B lanes of T as one GCC/Clang vector; B * sizeof(T) is the register width
// of the target the code is built for (16, 32 or 64 bytes). Plain arrays of
// 16 were left scalar by the vectorizer (7 GFLOP/s on mbv2_dw_3x3).
template <typename T, int B>
struct Vec {
  typedef T type __attribute__((vector_size(B * sizeof(T))));
};

template <int B, typename T>
inline typename Vec<T, B>::type loadv(const T* p) {
  typename Vec<T, B>::type v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// v, opaque to the optimizer: a loaded vector that feeds several FMAs is
// otherwise folded back into each as a memory operand, one load per FMA
// again (GCC 12; in the 3 x 3 kernel, whose loads are mostly unaligned and
// split across cache lines, a 56 x 56 plane took 2046 cycles that way and
// 1610 with the vector kept).
template <typename V>
inline void keep_in_register(V& v) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  asm("" : "+x"(v));
#else
  (void)v;
#endif
}

template <int B, typename T>
inline void storev(T* p, typename Vec<T, B>::type v) {
  __builtin_memcpy(p, &v, sizeof v);
}

// The part of a source plane a correlation touches, with its padding:
// rows h0 .. h0+Hp-1 and columns w0 .. w0+Wp-1 of the source.
struct PadGeom {
  int64_t h0, Hp, w0, Wp;
};

// Source index t = o*st + off + k*dil for o in [0, O), k in [0, K).
inline void touched(int64_t O, int64_t st, int64_t off, int64_t dil, int64_t K,
                    int64_t& lo, int64_t& n) {
  const int64_t span = (K - 1) * dil;
  lo = off + (span < 0 ? span : 0);
  const int64_t hi = (O - 1) * st + off + (span > 0 ? span : 0);
  n = hi - lo + 1;
}

// Geometry of one direct correlation in padded coordinates.
struct DirectGeom {
  int64_t P, Q;                // output extent
  int64_t st_h, dil_h, rb, R;  // row of (p, r): p*st_h + r*dil_h + rb
  int64_t st_w, dil_w, cb, S;  // column of (q, s): q*st_w + s*dil_w + cb
  int64_t Wp, plane;           // padded row length and plane size
};

inline DirectGeom direct_geom(
    int64_t P, int64_t Q, int64_t st_h, int64_t off_h, int64_t dil_h, int64_t R,
    int64_t st_w, int64_t off_w, int64_t dil_w, int64_t S, PadGeom& pg) {
  touched(P, st_h, off_h, dil_h, R, pg.h0, pg.Hp);
  touched(Q, st_w, off_w, dil_w, S, pg.w0, pg.Wp);
  return DirectGeom{P, Q, st_h, dil_h, off_h - pg.h0, R,
                    st_w, dil_w, off_w - pg.w0, S, pg.Wp, pg.Hp * pg.Wp};
}

// d[0 .. n) = s[0 .. n) in 64-byte moves, the last one overlapping: a
// memcpy call per row cost 3x as much for 56 floats (20 against ~6 cycles).
template <typename T>
inline void copy_run(T* d, const T* s, int64_t n) {
  constexpr int64_t C = 64 / sizeof(T);
  if (n < C) {
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
    return;
  }
  int64_t i = 0;
  for (; i + C <= n; i += C) __builtin_memcpy(d + i, s + i, 64);
  if (i < n) __builtin_memcpy(d + n - C, s + n - C, 64);
}

// Padded row i of the touched window (source row h0 + i, columns w0 ..
// w0+Wp-1) into d: zeros outside the source.
template <typename acc_t, typename scalar_t>
inline void pad_row(const scalar_t* src, int64_t sh, int64_t cs, int64_t H, int64_t W,
                    const PadGeom& pg, int64_t i, acc_t* d) {
  const int64_t h = pg.h0 + i;
  if (h < 0 || h >= H) {
    for (int64_t j = 0; j < pg.Wp; ++j) d[j] = acc_t(0);
    return;
  }
  // Zeros, the row, zeros: three branch-free loops (a per-element bounds
  // test here was a visible share of the depthwise passes).
  const int64_t jl = pg.w0 < 0 ? (-pg.w0 < pg.Wp ? -pg.w0 : pg.Wp) : 0;
  int64_t jr = W - pg.w0;
  jr = jr < jl ? jl : (jr > pg.Wp ? pg.Wp : jr);
  for (int64_t j = 0; j < jl; ++j) d[j] = acc_t(0);
  const scalar_t* row = src + h * sh + (pg.w0 + jl) * cs;
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    // A plain copy: the element loop cost 3x memcpy's time (1073 against
    // 366 cycles for the 58 rows of a 56 x 56 plane).
    if (cs == 1) {
      copy_run(d + jl, row, jr - jl);
      for (int64_t j = jr; j < pg.Wp; ++j) d[j] = acc_t(0);
      return;
    }
  }
  if (cs == 1) {
    for (int64_t j = jl; j < jr; ++j) d[j] = static_cast<acc_t>(row[j - jl]);
  } else {
    for (int64_t j = jl; j < jr; ++j) d[j] = static_cast<acc_t>(row[(j - jl) * cs]);
  }
  for (int64_t j = jr; j < pg.Wp; ++j) d[j] = acc_t(0);
}

// Copies the touched window of a source plane (H x W, strides sh, cs) into
// dst (Hp x Wp), zeros outside the source.
template <typename acc_t, typename scalar_t>
void pad_plane(const scalar_t* src, int64_t sh, int64_t cs, int64_t H, int64_t W,
               const PadGeom& pg, acc_t* dst) {
  for (int64_t i = 0; i < pg.Hp; ++i) pad_row(src, sh, cs, H, W, pg, i, dst + i * pg.Wp);
}

// NB consecutive blocks of RB output rows (block b starts at b*B, the last
// shifted left to end at Q), one register accumulator each: RB * NB
// independent FMA chains. One row alone left 4 chains of R*S dependent
// FMAs each, latency-bound (3x3 at 4 cycles per FMA: 36 cycles a row for 36
// FMAs; mbv2_dw_3x3 forward 0.61 ms on one thread with the data in L1).
// rows[(k*nsrc + c)*R + r] is the source row of (output row k, source c,
// tap row r), already offset by the column base; output row k is at
// o + k*os. The shifted last block recomputes a few outputs of its
// predecessor with the same operations in the same order, so storing it
// whole writes the same values again.
template <int RB, int NB, int B, typename T>
inline void correlate_blocks(
    const DirectGeom& g, int64_t b0, int64_t nsrc, const T* const* rows, const T* wts,
    T init, T* o, int64_t os) {
  using V = typename Vec<T, B>::type;
  int64_t st[NB];
  V a[RB][NB];
  for (int i = 0; i < NB; ++i) {
    const int64_t q = (b0 + i) * B;
    st[i] = q + B <= g.Q ? q : g.Q - B;
    for (int k = 0; k < RB; ++k) a[k][i] = V{} + init;
  }
  const int64_t nrow = nsrc * g.R;
  for (int64_t c = 0; c < nsrc; ++c)
    for (int64_t r = 0; r < g.R; ++r) {
      const T* x0[RB];
      for (int k = 0; k < RB; ++k) x0[k] = rows[k * nrow + c * g.R + r];
      const T* w = wts + (c * g.R + r) * g.S;
      for (int64_t s = 0; s < g.S; ++s) {
        const T wv = w[s];
        const int64_t off = s * g.dil_w;
#pragma GCC unroll 4
        for (int k = 0; k < RB; ++k)
#pragma GCC unroll 4
          for (int i = 0; i < NB; ++i) a[k][i] += wv * loadv<B>(x0[k] + off + st[i]);
      }
    }
  for (int k = 0; k < RB; ++k)
    for (int i = 0; i < NB; ++i) storev<B>(o + k * os + st[i], a[k][i]);
}

// RB output rows o + k*os, k < RB, each o[q] = init + sum over sources c
// and taps (r, s) of wts[c][r][s] * rows[(k*nsrc + c)*R + r][q*st_w +
// s*dil_w].
template <int RB, typename T, int B>
inline void correlate_rows(
    const DirectGeom& g, int64_t nsrc, const T* const* rows, const T* wts, T init, T* o,
    int64_t os) {
  if (g.st_w == 1 && g.Q >= B) {
    const int64_t nb = (g.Q + B - 1) / B;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) correlate_blocks<RB, 4, B>(g, b, nsrc, rows, wts, init, o, os);
    switch (nb - b) {
      case 3: correlate_blocks<RB, 3, B>(g, b, nsrc, rows, wts, init, o, os); break;
      case 2: correlate_blocks<RB, 2, B>(g, b, nsrc, rows, wts, init, o, os); break;
      case 1: correlate_blocks<RB, 1, B>(g, b, nsrc, rows, wts, init, o, os); break;
      default: break;
    }
    return;
  }
  for (int k = 0; k < RB; ++k)
    for (int64_t q = 0; q < g.Q; ++q) {
      T a = init;
      for (int64_t c = 0; c < nsrc; ++c)
        for (int64_t r = 0; r < g.R; ++r) {
          const T* x = rows[(k * nsrc + c) * g.R + r] + q * g.st_w;
          const T* w = wts + (c * g.R + r) * g.S;
          for (int64_t s = 0; s < g.S; ++s) a += w[s] * x[s * g.dil_w];
        }
      o[k * os + q] = a;
    }
}

// Output rows per register block: about 12 accumulators (blocks of rows
// times blocks of B along a row) hide the FMA latency and still fit the 16
// vector registers of AVX2 with the broadcast weight.
template <int B>
inline int row_block(int64_t Q) {
  const int64_t nb = (Q + B - 1) / B;
  return nb >= 4 ? 3 : 4;
}
constexpr int64_t kMaxRowBlock = 6;  // the most rows any kernel blocks

// Calls correlate_rows for rows p0 .. p0+n-1, n <= kMaxRowBlock.
template <typename T, int B>
inline void correlate_rows_n(
    int n, const DirectGeom& g, int64_t nsrc, const T* const* rows, const T* wts, T init,
    T* o, int64_t os) {
  switch (n) {
    case 4: return correlate_rows<4, T, B>(g, nsrc, rows, wts, init, o, os);
    case 3: return correlate_rows<3, T, B>(g, nsrc, rows, wts, init, o, os);
    case 2: return correlate_rows<2, T, B>(g, nsrc, rows, wts, init, o, os);
    default: return correlate_rows<1, T, B>(g, nsrc, rows, wts, init, o, os);
  }
}

// Row tables up to this size live on the stack.
constexpr int64_t kMaxRows = 256;

// planes: nsrc padded planes; wts: nsrc x R x S; out: P x Q (row stride Q).
template <typename T, int B>
void correlate_padded(
    const DirectGeom& g, int64_t nsrc, const T* planes, const T* wts, T init,
    T* out) {
  const int rb = row_block<B>(g.Q);
  const int64_t nrow = nsrc * g.R;
  const T* table[kMaxRows];
  std::vector<const T*> big;
  const T** rows = table;
  if (rb * nrow > kMaxRows) {
    big.resize(rb * nrow);
    rows = big.data();
  }
  for (int64_t p0 = 0; p0 < g.P; p0 += rb) {
    const int n = static_cast<int>(g.P - p0 < rb ? g.P - p0 : rb);
    for (int k = 0; k < n; ++k)
      for (int64_t c = 0; c < nsrc; ++c)
        for (int64_t r = 0; r < g.R; ++r)
          rows[k * nrow + c * g.R + r] = planes + c * g.plane +
              ((p0 + k) * g.st_h + g.rb + r * g.dil_h) * g.Wp + g.cb;
    correlate_rows_n<T, B>(n, g, nsrc, rows, wts, init, out + p0 * g.Q, g.Q);
  }
}

// dot_padded for an R x S kernel known at compile time: each dy block is
// loaded once and multiplied into all R*S taps, whose sums stay in
// registers for the whole plane (one pass over dy and the padded plane
// instead of one per tap).
template <int R, int S, typename T, int B>
void dot_taps(const DirectGeom& g, const T* dy, const T* plane, T* lanes) {
  using V = typename Vec<T, B>::type;
  const int64_t nb = (g.Q + B - 1) / B;
  const int64_t last = g.Q - B;
  V mask = V{};
  for (int64_t l = 0; l < B; ++l) mask[l] = last + l >= (nb - 1) * B ? T(1) : T(0);
  V a[R * S];
  for (int t = 0; t < R * S; ++t) a[t] = V{};
  for (int64_t p = 0; p < g.P; ++p) {
    const T* x = plane + (p * g.st_h + g.rb) * g.Wp + g.cb;
    const T* d = dy + p * g.Q;
    for (int64_t b = 0; b < nb; ++b) {
      const bool tail = b + 1 == nb;
      const int64_t q = tail ? last : b * B;
      V dv = loadv<B>(d + q);
      if (tail) dv *= mask;
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
        for (int s = 0; s < S; ++s)
          a[r * S + s] += dv * loadv<B>(x + r * g.dil_h * g.Wp + s * g.dil_w + q);
    }
  }
  for (int t = 0; t < R * S; ++t)
    for (int64_t l = 0; l < B; ++l) lanes[t * kRowBlock + l] += a[t][l];
}

// dy: P x Q (row stride Q); plane: one padded source plane; lanes:
// R x S x kRowBlock partial sums (the first B used). Every position feeds a
// fixed lane, so the final lane sum is the same on every run.
template <typename T, int B>
void dot_padded(const DirectGeom& g, const T* dy, const T* plane, T* lanes) {
  using V = typename Vec<T, B>::type;
  const bool vec = g.st_w == 1 && g.Q >= B;
  if (vec && g.R == 3 && g.S == 3) return dot_taps<3, 3, T, B>(g, dy, plane, lanes);
  const int64_t nb = (g.Q + B - 1) / B;
  const int64_t last = g.Q - B;
  V mask = V{};
  if (vec)
    for (int64_t l = 0; l < B; ++l) mask[l] = last + l >= (nb - 1) * B ? T(1) : T(0);
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) {
      T* ls = lanes + (r * g.S + s) * kRowBlock;
      const T* x0 = plane + (g.rb + r * g.dil_h) * g.Wp + g.cb + s * g.dil_w;
      if (vec) {
        // Four accumulators in rotation: four FMA chains in flight.
        V a0 = V{}, a1 = V{}, a2 = V{}, a3 = V{};
        int64_t i = 0;
        for (int64_t p = 0; p < g.P; ++p) {
          const T* x = x0 + p * g.st_h * g.Wp;
          const T* d = dy + p * g.Q;
          for (int64_t b = 0; b < nb; ++b, ++i) {
            V prod;
            if (b + 1 < nb) {
              prod = loadv<B>(d + b * B) * loadv<B>(x + b * B);
            } else {
              prod = (loadv<B>(d + last) * mask) * loadv<B>(x + last);
            }
            switch (i & 3) {
              case 0: a0 += prod; break;
              case 1: a1 += prod; break;
              case 2: a2 += prod; break;
              default: a3 += prod; break;
            }
          }
        }
        const V sum = (a0 + a1) + (a2 + a3);
        for (int64_t l = 0; l < B; ++l) ls[l] += sum[l];
      } else {
        for (int64_t p = 0; p < g.P; ++p) {
          const T* x = x0 + p * g.st_h * g.Wp;
          const T* d = dy + p * g.Q;
          for (int64_t q = 0; q < g.Q; ++q) ls[q % B] += d[q] * x[q * g.st_w];
        }
      }
    }
}

// Vector instances (direct_rows_vec.cpp); isa: 1 = AVX2 + FMA, 2 = AVX-512F.
void correlate_padded_vec(int isa, const DirectGeom& g, int64_t nsrc,
                          const float* planes, const float* wts, float init, float* out);
void correlate_padded_vec(int isa, const DirectGeom& g, int64_t nsrc,
                          const double* planes, const double* wts, double init, double* out);
void dot_padded_vec(int isa, const DirectGeom& g, const float* dy, const float* plane,
                    float* lanes);
void dot_padded_vec(int isa, const DirectGeom& g, const double* dy, const double* plane,
                    double* lanes);

}  // namespace conv_ext::cpu
