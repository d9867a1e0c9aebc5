// Plane kernels of the direct (no GEMM) convolution used for depthwise and
// few-channels-per-group layers, vectorized along the output row:
//
//   correlate_plane: out[p][q] = init + sum_{i, r, s} wts[i][r][s] *
//                      src_i[p*st_h + off_h + r*dil_h][q*st_w + off_w + s*dil_w]
//   dot_plane:       lanes[r][s][l] += sum over (p, q) of
//                      dy[p][q] * src[p*st_h + off_h + r*dil_h][q*st_w + off_w + s*dil_w]
//
// One call covers a whole output plane so the per-row set-up stays off the
// hot path (a 28-wide row holds only 84 multiply-adds per tap row).
// Both are plain C++ templates; AVX2 + FMA and AVX-512 instances come from
// direct_rows_avx2.cpp, which inlines them into functions compiled for those
// targets, so the rest of the library keeps the baseline instruction set.
#pragma once

#include <cstdint>

namespace conv_ext::cpu {

// Output positions q in [0, Q) whose taps s in [0, S) all land inside
// [0, W): [lo, hi), empty when none do.
inline void interior(
    int64_t Q, int64_t W, int64_t st, int64_t off, int64_t dil, int64_t S,
    int64_t& lo, int64_t& hi) {
  const int64_t tmin = off + (dil < 0 ? (S - 1) * dil : 0);
  const int64_t tmax = off + (dil < 0 ? 0 : (S - 1) * dil);
  lo = tmin >= 0 ? 0 : (-tmin + st - 1) / st;
  hi = tmax >= W ? 0 : (W - 1 - tmax) / st + 1;
  if (hi > Q) hi = Q;
  if (lo > Q) lo = Q;
  if (hi < lo) hi = lo;
}

constexpr int64_t kRowBlock = 16;  // outputs per register block

// Geometry of one direct correlation; src planes share strides.
struct DirectGeom {
  int64_t P, Q;                  // output extent
  int64_t H, W;                  // source extent
  int64_t sh, cs;                // source row and column strides
  int64_t st_h, off_h, dil_h, R;
  int64_t st_w, off_w, dil_w, S;
};

// srcs[i]: nsrc source planes; wts: nsrc x R x S; out: P x Q accumulator
// rows (row stride Q); rows, wrow: scratch for nsrc * R entries. Each block
// of kRowBlock outputs sums every tap in registers before one store.
template <typename acc_t, typename scalar_t>
void correlate_plane(
    const DirectGeom& g,
    int64_t nsrc,
    const scalar_t* const* srcs,
    const acc_t* wts,
    acc_t init,
    acc_t* out,
    const scalar_t** rows,
    const acc_t** wrow) {
  int64_t lo, hi;
  interior(g.Q, g.W, g.st_w, g.off_w, g.dil_w, g.S, lo, hi);
  const bool vec = g.st_w == 1 && g.cs == 1 && hi - lo >= kRowBlock;
  for (int64_t p = 0; p < g.P; ++p) {
    acc_t* o = out + p * g.Q;
    int64_t n = 0;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.st_h + g.off_h + r * g.dil_h;
      if (h < 0 || h >= g.H) continue;
      for (int64_t i = 0; i < nsrc; ++i) {
        rows[n] = srcs[i] + h * g.sh;
        wrow[n++] = wts + (i * g.R + r) * g.S;
      }
    }
    // Edges: every tap bounds-checked.
    for (int64_t q = 0; q < g.Q; ++q) {
      if (q == lo) q = hi;
      if (q >= g.Q) break;
      acc_t a = init;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t s = 0; s < g.S; ++s) {
          const int64_t x = q * g.st_w + g.off_w + s * g.dil_w;
          if (x >= 0 && x < g.W) a += wrow[j][s] * static_cast<acc_t>(rows[j][x * g.cs]);
        }
      o[q] = a;
    }
    if (vec) {
      // The last block is shifted left to end at hi and stores only the
      // positions its predecessor did not: no scalar tail.
      int64_t q = lo;
      while (q < hi) {
        const int64_t q0 = q + kRowBlock <= hi ? q : hi - kRowBlock;
        acc_t a[kRowBlock];
        for (int64_t l = 0; l < kRowBlock; ++l) a[l] = init;
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t* x0 = rows[j] + q0 + g.off_w;
          for (int64_t s = 0; s < g.S; ++s) {
            const acc_t wv = wrow[j][s];
            const scalar_t* x = x0 + s * g.dil_w;
            for (int64_t l = 0; l < kRowBlock; ++l)
              a[l] += wv * static_cast<acc_t>(x[l]);
          }
        }
        for (int64_t l = q - q0; l < kRowBlock; ++l) o[q0 + l] = a[l];
        q = q0 + kRowBlock;
      }
    } else {
      for (int64_t q = lo; q < hi; ++q) {
        acc_t a = init;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t s = 0; s < g.S; ++s)
            a += wrow[j][s] *
                static_cast<acc_t>(rows[j][(q * g.st_w + g.off_w + s * g.dil_w) * g.cs]);
        o[q] = a;
      }
    }
  }
}

// dy: P x Q plane (row stride ysh, column stride ycs); src: one source
// plane; lanes: R x S x kRowBlock partial sums. Position q of a row feeds
// lane (q - q0) of its block: a fixed assignment, so the final lane sum is
// the same on every run.
template <typename acc_t, typename scalar_t>
void dot_plane(
    const DirectGeom& g,
    const scalar_t* dy,
    int64_t ysh,
    int64_t ycs,
    const scalar_t* src,
    acc_t* lanes) {
  for (int64_t r = 0; r < g.R; ++r) {
    for (int64_t s = 0; s < g.S; ++s) {
      const int64_t o = g.off_w + s * g.dil_w;
      int64_t lo, hi;
      interior(g.Q, g.W, g.st_w, o, 0, 1, lo, hi);
      acc_t* ls = lanes + (r * g.S + s) * kRowBlock;
      acc_t a[kRowBlock] = {};
      const bool vec = g.st_w == 1 && g.cs == 1 && ycs == 1;
      for (int64_t p = 0; p < g.P; ++p) {
        const int64_t h = p * g.st_h + g.off_h + r * g.dil_h;
        if (h < 0 || h >= g.H) continue;
        const scalar_t* row = src + h * g.sh;
        const scalar_t* d = dy + p * ysh;
        int64_t q = lo;
        if (vec) {
          for (; q + kRowBlock <= hi; q += kRowBlock) {
            const scalar_t* x = row + q + o;
            for (int64_t l = 0; l < kRowBlock; ++l)
              a[l] += static_cast<acc_t>(d[q + l]) * static_cast<acc_t>(x[l]);
          }
          if (q + kRowBlock / 2 <= hi) {
            const scalar_t* x = row + q + o;
            for (int64_t l = 0; l < kRowBlock / 2; ++l)
              a[l] += static_cast<acc_t>(d[q + l]) * static_cast<acc_t>(x[l]);
            q += kRowBlock / 2;
          }
        }
        for (int64_t l = 0; q < hi; ++q, l = (l + 1) % kRowBlock)
          a[l] += static_cast<acc_t>(d[q * ycs]) *
              static_cast<acc_t>(row[(q * g.st_w + o) * g.cs]);
      }
      for (int64_t l = 0; l < kRowBlock; ++l) ls[l] += a[l];
    }
  }
}

// Vector instances (direct_rows_avx2.cpp); isa: 1 = AVX2 + FMA, 2 = AVX-512F.
void correlate_plane_vec(
    int isa, const DirectGeom& g, int64_t nsrc, const float* const* srcs,
    const float* wts, float init, float* out, const float** rows,
    const float** wrow);
void correlate_plane_vec(
    int isa, const DirectGeom& g, int64_t nsrc, const double* const* srcs,
    const double* wts, double init, double* out, const double** rows,
    const double** wrow);
void dot_plane_vec(
    int isa, const DirectGeom& g, const float* dy, int64_t ysh, int64_t ycs,
    const float* src, float* lanes);
void dot_plane_vec(
    int isa, const DirectGeom& g, const double* dy, int64_t ysh, int64_t ycs,
    const double* src, double* lanes);

}  // namespace conv_ext::cpu
