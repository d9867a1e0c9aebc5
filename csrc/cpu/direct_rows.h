// Plane kernels of the direct (no GEMM) convolution used for depthwise and
// few-channels-per-group layers (depthwise_direct.h), vectorized along the
// output row. The source planes are first copied into zero-padded planes
// (pad_plane) in the accumulation type, so the kernels below have no edge
// cases and half / bfloat16 inputs take the same vector code as float.
//
//   correlate_padded: out[p][q] = init + sum_{i, r, s} wts[i][r][s] *
//                       plane_i[p*st_h + r*dil_h + rb][q*st_w + s*dil_w + cb]
//   dot_padded:       lanes[r][s][l] += sum over (p, q) of
//                       dy[p][q] * plane[p*st_h + r*dil_h + rb][q*st_w + s*dil_w + cb]
//
// Both are plain templates; direct_rows_vec.cpp builds AVX2 + FMA and
// AVX-512 instances by inlining them into functions compiled for those
// targets, so the rest of the library keeps the baseline instruction set.
#pragma once

#include <cstdint>

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

// Copies the touched window of a source plane (H x W, strides sh, cs) into
// dst (Hp x Wp), zeros outside the source.
template <typename acc_t, typename scalar_t>
void pad_plane(const scalar_t* src, int64_t sh, int64_t cs, int64_t H, int64_t W,
               const PadGeom& pg, acc_t* dst) {
  for (int64_t i = 0; i < pg.Hp; ++i) {
    acc_t* d = dst + i * pg.Wp;
    const int64_t h = pg.h0 + i;
    if (h < 0 || h >= H) {
      for (int64_t j = 0; j < pg.Wp; ++j) d[j] = acc_t(0);
      continue;
    }
    // Zeros, the row, zeros: three branch-free loops (a per-element bounds
    // test here was a visible share of the depthwise passes).
    const int64_t jl = pg.w0 < 0 ? (-pg.w0 < pg.Wp ? -pg.w0 : pg.Wp) : 0;
    int64_t jr = W - pg.w0;
    jr = jr < jl ? jl : (jr > pg.Wp ? pg.Wp : jr);
    for (int64_t j = 0; j < jl; ++j) d[j] = acc_t(0);
    const scalar_t* row = src + h * sh + (pg.w0 + jl) * cs;
    if (cs == 1) {
      for (int64_t j = jl; j < jr; ++j) d[j] = static_cast<acc_t>(row[j - jl]);
    } else {
      for (int64_t j = jl; j < jr; ++j) d[j] = static_cast<acc_t>(row[(j - jl) * cs]);
    }
    for (int64_t j = jr; j < pg.Wp; ++j) d[j] = acc_t(0);
  }
}

// NB consecutive blocks of one output row (block b starts at b*B, the last
// shifted left to end at Q and storing only what its predecessor did not),
// one register accumulator each: NB independent FMA chains.
template <int NB, int B, typename T>
inline void correlate_blocks(
    const DirectGeom& g, int64_t b0, int64_t nsrc, const T* row0, const T* wts,
    T init, T* o) {
  using V = typename Vec<T, B>::type;
  int64_t st[NB];
  V a[NB];
  for (int i = 0; i < NB; ++i) {
    const int64_t q = (b0 + i) * B;
    st[i] = q + B <= g.Q ? q : g.Q - B;
    a[i] = V{} + init;
  }
  for (int64_t c = 0; c < nsrc; ++c)
    for (int64_t r = 0; r < g.R; ++r) {
      const T* x0 = row0 + c * g.plane + r * g.dil_h * g.Wp;
      const T* w = wts + (c * g.R + r) * g.S;
      for (int64_t s = 0; s < g.S; ++s) {
        const T wv = w[s];
        const T* x = x0 + s * g.dil_w;
#pragma GCC unroll 4
        for (int i = 0; i < NB; ++i) a[i] += wv * loadv<B>(x + st[i]);
      }
    }
  for (int i = 0; i < NB; ++i) {
    const int64_t q = (b0 + i) * B;
    if (q == st[i]) {
      storev<B>(o + q, a[i]);
    } else {
      for (int64_t l = q - st[i]; l < B; ++l) o[st[i] + l] = a[i][l];
    }
  }
}

// planes: nsrc padded planes; wts: nsrc x R x S; out: P x Q (row stride Q).
template <typename T, int B>
void correlate_padded(
    const DirectGeom& g, int64_t nsrc, const T* planes, const T* wts, T init,
    T* out) {
  for (int64_t p = 0; p < g.P; ++p) {
    T* o = out + p * g.Q;
    const T* row0 = planes + (p * g.st_h + g.rb) * g.Wp + g.cb;
    if (g.st_w == 1 && g.Q >= B) {
      const int64_t nb = (g.Q + B - 1) / B;
      int64_t b = 0;
      for (; b + 4 <= nb; b += 4) correlate_blocks<4, B>(g, b, nsrc, row0, wts, init, o);
      switch (nb - b) {
        case 3: correlate_blocks<3, B>(g, b, nsrc, row0, wts, init, o); break;
        case 2: correlate_blocks<2, B>(g, b, nsrc, row0, wts, init, o); break;
        case 1: correlate_blocks<1, B>(g, b, nsrc, row0, wts, init, o); break;
        default: break;
      }
      continue;
    }
    for (int64_t q = 0; q < g.Q; ++q) {
      T a = init;
      for (int64_t c = 0; c < nsrc; ++c)
        for (int64_t r = 0; r < g.R; ++r) {
          const T* x = row0 + c * g.plane + r * g.dil_h * g.Wp + q * g.st_w;
          const T* w = wts + (c * g.R + r) * g.S;
          for (int64_t s = 0; s < g.S; ++s) a += w[s] * x[s * g.dil_w];
        }
      o[q] = a;
    }
  }
}

// dy: P x Q (row stride Q); plane: one padded source plane; lanes:
// R x S x kRowBlock partial sums (the first B used). Every position feeds a
// fixed lane, so the final lane sum is the same on every run.
template <typename T, int B>
void dot_padded(const DirectGeom& g, const T* dy, const T* plane, T* lanes) {
  using V = typename Vec<T, B>::type;
  const bool vec = g.st_w == 1 && g.Q >= B;
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
