// The tile transforms of Winograd's F(2 x 2, 3 x 3) (winograd.h). With
//   B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1  |
// a 2 x 2 output tile of the correlation of a 4 x 4 input tile d with a
// 3 x 3 kernel g is  A^T [ (G g G^T) .* (B^T d B) ] A : 16 multiplies
// instead of 36, the rest additions shared by every kernel (the input's) or
// by every tile (the kernel's).
//
// Everything here runs over a flat run of tiles, value x of tile t at
// [x * ld + t], so the loops vectorize across tiles whatever the image
// width (a 14 x 14 layer has only 7 tiles per row). Only the gather of the
// input tiles and the scatter of the output tiles follow the image's rows.
// winograd_vec.cpp builds these for AVX2 and AVX-512.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "../simd.h"

namespace conv_ext::cpu::winograd {

using simd::Lanes;
using simd::load;
using simd::store;

// f.template operator()<V>(t) over t = 0, B, 2B, ... with B-lane vectors,
// then one tile at a time for the rest. The transforms are written once
// over the value type V (the vectorizer alone left them scalar: 16 strided
// rows per tile).
template <int B, typename F>
inline void over_tiles(int64_t len, F&& f) {
  int64_t t = 0;
  for (; t + B <= len; t += B) f.template operator()<typename Lanes<B>::type>(t);
  for (; t < len; ++t) f.template operator()<float>(t);
}

// The 4 x 4 input tiles of tiles 0 .. len-1 of one tile row: tile u covers
// rows h0 .. h0+3 and columns w0 + 2u .. w0 + 2u + 3 of a source plane
// (H x W, row stride sh, column stride sw), zero outside it.
// Writes d[(4 i + j) * ldd + u], widened to float (T is float, bfloat16 or
// half: the low-precision paths compute in float from here on).
template <typename T>
inline void gather_tiles(
    const T* plane, int64_t sh, int64_t sw, int64_t H, int64_t W, int64_t h0,
    int64_t w0, int64_t len, float* __restrict d, int64_t ldd) {
  // Tiles whose four columns all lie inside the row.
  int64_t lo = w0 >= 0 ? 0 : (1 - w0) / 2;
  int64_t hi = W - 4 - w0 >= 0 ? (W - 4 - w0) / 2 + 1 : 0;
  if (lo > len) lo = len;
  if (hi > len) hi = len;
  if (hi < lo) hi = lo;
  for (int64_t i = 0; i < 4; ++i) {
    float* __restrict d0 = d + (4 * i + 0) * ldd;
    float* __restrict d1 = d + (4 * i + 1) * ldd;
    float* __restrict d2 = d + (4 * i + 2) * ldd;
    float* __restrict d3 = d + (4 * i + 3) * ldd;
    const int64_t h = h0 + i;
    if (h < 0 || h >= H) {
      for (int64_t u = 0; u < len; ++u) d0[u] = d1[u] = d2[u] = d3[u] = 0.f;
      continue;
    }
    const T* row = plane + h * sh;
    auto edge = [&](int64_t u) {
      float* dj[4] = {d0, d1, d2, d3};
      for (int64_t j = 0; j < 4; ++j) {
        const int64_t w = w0 + 2 * u + j;
        dj[j][u] = w >= 0 && w < W ? static_cast<float>(row[w * sw]) : 0.f;
      }
    };
    for (int64_t u = 0; u < lo; ++u) edge(u);
    const T* r = row + w0 * sw;
    if (sw == 1) {
      for (int64_t u = lo; u < hi; ++u) {
        d0[u] = r[2 * u];
        d1[u] = r[2 * u + 1];
        d2[u] = r[2 * u + 2];
        d3[u] = r[2 * u + 3];
      }
    } else {
      for (int64_t u = lo; u < hi; ++u) {
        d0[u] = r[(2 * u) * sw];
        d1[u] = r[(2 * u + 1) * sw];
        d2[u] = r[(2 * u + 2) * sw];
        d3[u] = r[(2 * u + 3) * sw];
      }
    }
    for (int64_t u = hi; u < len; ++u) edge(u);
  }
}

// v[x * ldv + t] = (B^T d B)[x] for tiles t = 0 .. len-1.
template <int B>
inline void input_transform(const float* d, int64_t ldd, int64_t len, float* v, int64_t ldv) {
  over_tiles<B>(len, [&]<typename V>(int64_t t) {
    V z[4][4];
    for (int j = 0; j < 4; ++j) {  // rows: z = B^T d
      const V d0 = load<V>(d + (0 + j) * ldd + t), d1 = load<V>(d + (4 + j) * ldd + t);
      const V d2 = load<V>(d + (8 + j) * ldd + t), d3 = load<V>(d + (12 + j) * ldd + t);
      z[0][j] = d0 - d2;
      z[1][j] = d1 + d2;
      z[2][j] = d2 - d1;
      z[3][j] = d1 - d3;
    }
    for (int i = 0; i < 4; ++i) {  // columns: z B
      store<V>(v + (4 * i + 0) * ldv + t, z[i][0] - z[i][2]);
      store<V>(v + (4 * i + 1) * ldv + t, z[i][1] + z[i][2]);
      store<V>(v + (4 * i + 2) * ldv + t, z[i][2] - z[i][1]);
      store<V>(v + (4 * i + 3) * ldv + t, z[i][1] - z[i][3]);
    }
  });
}

// y[(2 a + b) * ldy + t] = (A^T m A)[a][b] + bias for tiles t = 0 .. len-1,
// from the products m[x * ldm + t].
template <int B>
inline void output_transform(
    const float* m, int64_t ldm, int64_t len, float bias, float* y, int64_t ldy) {
  over_tiles<B>(len, [&]<typename V>(int64_t t) {
    V s0[4], s1[4];
    for (int j = 0; j < 4; ++j) {  // rows: A^T m
      const V m0 = load<V>(m + (0 + j) * ldm + t), m1 = load<V>(m + (4 + j) * ldm + t);
      const V m2 = load<V>(m + (8 + j) * ldm + t), m3 = load<V>(m + (12 + j) * ldm + t);
      s0[j] = m0 + m1 + m2;
      s1[j] = m1 - m2 - m3;
    }
    store<V>(y + 0 * ldy + t, s0[0] + s0[1] + s0[2] + bias);  // columns: (A^T m) A
    store<V>(y + 1 * ldy + t, s0[1] - s0[2] - s0[3] + bias);
    store<V>(y + 2 * ldy + t, s1[0] + s1[1] + s1[2] + bias);
    store<V>(y + 3 * ldy + t, s1[1] - s1[2] - s1[3] + bias);
  });
}

// Writes the 2 x 2 tiles y[(2 a + b) * ldy + u] of tiles 0 .. len-1 of a
// tile row to output rows y0 (a = 0) and y1 (a = 1; null past the last
// row), columns 2u + b below q_end, column stride sw. Each value is rounded
// to T once, here.
template <typename T>
inline void scatter_tiles(
    const float* __restrict y, int64_t ldy, int64_t len, T* __restrict y0,
    T* __restrict y1, int64_t q_end, int64_t sw) {
  const int64_t pairs = q_end / 2 < len ? q_end / 2 : len;
  const bool half = pairs < len && 2 * pairs < q_end;  // odd width: one more column
  T* rows[2] = {y0, y1};
  for (int a = 0; a < 2; ++a) {
    T* __restrict dst = rows[a];
    if (dst == nullptr) continue;
    const float* __restrict e = y + (2 * a) * ldy;
    const float* __restrict o = y + (2 * a + 1) * ldy;
    if (sw == 1) {
      for (int64_t u = 0; u < pairs; ++u) {
        dst[2 * u] = static_cast<T>(e[u]);
        dst[2 * u + 1] = static_cast<T>(o[u]);
      }
    } else {
      for (int64_t u = 0; u < pairs; ++u) {
        dst[2 * u * sw] = static_cast<T>(e[u]);
        dst[(2 * u + 1) * sw] = static_cast<T>(o[u]);
      }
    }
    if (half) dst[2 * pairs * sw] = static_cast<T>(e[pairs]);
  }
}

// U[x * ldu + i] = (G g G^T)[x] for kernels i = 0 .. len-1 given as
// g[(3 r + s) * ldg + i]. The 1/2 factors of G are exact in floating point.
template <int B>
inline void kernel_transform(const float* g, int64_t ldg, int64_t len, float* u, int64_t ldu) {
  over_tiles<B>(len, [&]<typename V>(int64_t i) {
    V t[4][3];  // G g
    for (int s = 0; s < 3; ++s) {
      const V g0 = load<V>(g + (0 + s) * ldg + i), g1 = load<V>(g + (3 + s) * ldg + i);
      const V g2 = load<V>(g + (6 + s) * ldg + i);
      t[0][s] = g0;
      t[1][s] = 0.5f * (g0 + g1 + g2);
      t[2][s] = 0.5f * (g0 - g1 + g2);
      t[3][s] = g2;
    }
    for (int a = 0; a < 4; ++a) {  // (G g) G^T
      store<V>(u + (4 * a + 0) * ldu + i, t[a][0]);
      store<V>(u + (4 * a + 1) * ldu + i, 0.5f * (t[a][0] + t[a][1] + t[a][2]));
      store<V>(u + (4 * a + 2) * ldu + i, 0.5f * (t[a][0] - t[a][1] + t[a][2]));
      store<V>(u + (4 * a + 3) * ldu + i, t[a][2]);
    }
  });
}

// For the grad weight: the 2 x 2 grad_output tiles of tiles 0 .. len-1 of
// a tile row (rows p0, p0 + 1, columns q0 + 2u, q0 + 2u + 1 of a P x Q
// plane, row stride sh, column stride sw; zero past P or Q), to
// d[(2 a + b) * ldd + u], widened to float.
template <typename T>
inline void gather_output_tiles(
    const T* plane, int64_t sh, int64_t sw, int64_t P, int64_t Q, int64_t p0,
    int64_t q0, int64_t len, float* __restrict d, int64_t ldd) {
  for (int64_t a = 0; a < 2; ++a) {
    float* __restrict e = d + (2 * a) * ldd;
    float* __restrict o = d + (2 * a + 1) * ldd;
    const int64_t p = p0 + a;
    if (p >= P) {
      for (int64_t u = 0; u < len; ++u) e[u] = o[u] = 0.f;
      continue;
    }
    const T* row = plane + p * sh + q0 * sw;
    const int64_t full = (Q - q0) / 2 < len ? (Q - q0) / 2 : len;
    for (int64_t u = 0; u < full; ++u) {
      e[u] = static_cast<float>(row[2 * u * sw]);
      o[u] = static_cast<float>(row[(2 * u + 1) * sw]);
    }
    for (int64_t u = full; u < len; ++u) {
      e[u] = q0 + 2 * u < Q ? static_cast<float>(row[2 * u * sw]) : 0.f;
      o[u] = 0.f;
    }
  }
}

// m[x * ldm + t] = (A dy A^T)[x] for tiles t = 0 .. len-1 from the tiles
// dy[(2 a + b) * ldd + t]: the transpose of the output transform, which
// carries the gradient of the 2 x 2 outputs back to the 16 products.
template <int B>
inline void grad_output_transform(
    const float* d, int64_t ldd, int64_t len, float* m, int64_t ldm) {
  over_tiles<B>(len, [&]<typename V>(int64_t t) {
    const V y00 = load<V>(d + 0 * ldd + t), y01 = load<V>(d + 1 * ldd + t);
    const V y10 = load<V>(d + 2 * ldd + t), y11 = load<V>(d + 3 * ldd + t);
    // Rows: A dy (A = A^T transposed: rows (1 0), (1 1), (1 -1), (0 -1)).
    const V u[4][2] = {{y00, y01}, {y00 + y10, y01 + y11}, {y00 - y10, y01 - y11}, {-y10, -y11}};
    for (int i = 0; i < 4; ++i) {  // columns: (A dy) A^T
      store<V>(m + (4 * i + 0) * ldm + t, u[i][0]);
      store<V>(m + (4 * i + 1) * ldm + t, u[i][0] + u[i][1]);
      store<V>(m + (4 * i + 2) * ldm + t, u[i][0] - u[i][1]);
      store<V>(m + (4 * i + 3) * ldm + t, -u[i][1]);
    }
  });
}

// dg[(3 r + s) * ldo + i] = (G^T S G)[r][s] for kernels i = 0 .. len-1 from
// S[x * lds + i]: the transpose of kernel_transform, which carries the
// gradient of the 16 transformed values back to the 3 x 3 kernel.
template <int B>
inline void kernel_grad_transform(
    const float* S, int64_t lds, int64_t len, float* dg, int64_t ldo) {
  over_tiles<B>(len, [&]<typename V>(int64_t i) {
    V t[3][4];  // G^T S
    for (int b = 0; b < 4; ++b) {
      const V s0 = load<V>(S + (0 + b) * lds + i), s1 = load<V>(S + (4 + b) * lds + i);
      const V s2 = load<V>(S + (8 + b) * lds + i), s3 = load<V>(S + (12 + b) * lds + i);
      t[0][b] = s0 + 0.5f * (s1 + s2);
      t[1][b] = 0.5f * (s1 - s2);
      t[2][b] = 0.5f * (s1 + s2) + s3;
    }
    for (int r = 0; r < 3; ++r) {  // (G^T S) G
      store<V>(dg + (3 * r + 0) * ldo + i, t[r][0] + 0.5f * (t[r][1] + t[r][2]));
      store<V>(dg + (3 * r + 1) * ldo + i, 0.5f * (t[r][1] - t[r][2]));
      store<V>(dg + (3 * r + 2) * ldo + i, 0.5f * (t[r][1] + t[r][2]) + t[r][3]);
    }
  });
}

}  // namespace conv_ext::cpu::winograd
