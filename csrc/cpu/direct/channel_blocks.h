// Copies between NCHW planes and channel-interleaved buffers [row][column]
// [channel], the layout in which the blocked direct kernels
// (depthwise_blocked.h, grouped_blocked.h) read a pixel's channels as one
// run. Plain templates, inlined into each instruction set's build. The
// buffers hold float: bfloat16 and half planes are widened as they are
// copied in and rounded once as they are copied out.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "direct_rows.h"  // PadGeom

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CONV_EXT_BLOCKS_AVX512 1
#define CONV_EXT_BLOCKS_AVX512_FN __attribute__((target("avx512f"))) inline
#else
#define CONV_EXT_BLOCKS_AVX512 0
#endif

namespace conv_ext::cpu {

#if CONV_EXT_BLOCKS_AVX512
// r[i][j] <-> r[j][i] for 16 x 16 floats in registers: 64 shuffles where
// the element by element copies of a block cost 256 loads and stores (the
// copies were half of a 4 x 4 depthwise forward).
CONV_EXT_BLOCKS_AVX512_FN void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

// o[j*16 + c] = row[c*sc + j] for j < n, 16 channels.
CONV_EXT_BLOCKS_AVX512_FN void pack_run16(const float* row, int64_t sc, int64_t n, float* o) {
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t m = n - j0 < 16 ? n - j0 : 16;
    const __mmask16 mask = static_cast<__mmask16>((1u << m) - 1);
    __m512 r[16];
    for (int c = 0; c < 16; ++c) r[c] = _mm512_maskz_loadu_ps(mask, row + c * sc + j0);
    transpose16(r);
    for (int64_t j = 0; j < m; ++j) _mm512_storeu_ps(o + (j0 + j) * 16, r[j]);
  }
}

// row[c*dc + j] = b[j*16 + c] for j < n, 16 channels.
CONV_EXT_BLOCKS_AVX512_FN void unpack_run16(const float* b, int64_t n, float* row, int64_t dc) {
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t m = n - j0 < 16 ? n - j0 : 16;
    const __mmask16 mask = static_cast<__mmask16>((1u << m) - 1);
    __m512 r[16];
    for (int64_t j = 0; j < 16; ++j)
      r[j] = j < m ? _mm512_loadu_ps(b + (j0 + j) * 16) : _mm512_setzero_ps();
    transpose16(r);
    for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(row + c * dc + j0, mask, r[c]);
  }
}
#endif

// Channels [0, nc) of the planes src + c*sc (rows sh, columns sw; H x W)
// over the window pg into buf [Hp][Wp][cs]: zeros outside the planes and
// in channels nc..cs-1, so the kernels have no edge cases.
// AVX512: the caller is built for AVX-512F (full blocks of 16 channels with
// unit column stride then go through transpose16).
template <bool AVX512 = false, typename T>
inline void pack_window(const T* src, int64_t sc, int64_t sh, int64_t sw, int64_t H,
                        int64_t W, int64_t nc, int64_t cs, const PadGeom& pg,
                        float* buf) {
  const int64_t jl = std::clamp<int64_t>(-pg.w0, 0, pg.Wp);
  const int64_t jr = std::clamp<int64_t>(W - pg.w0, jl, pg.Wp);
  for (int64_t i = 0; i < pg.Hp; ++i) {
    float* d = buf + i * pg.Wp * cs;
    const int64_t h = pg.h0 + i;
    const bool inside = h >= 0 && h < H;
    if (!inside || nc < cs) {
      std::fill_n(d, pg.Wp * cs, 0.f);
      if (!inside) continue;
    } else {
      std::fill_n(d, jl * cs, 0.f);
      std::fill_n(d + jr * cs, (pg.Wp - jr) * cs, 0.f);
    }
    const T* row = src + h * sh + (pg.w0 + jl) * sw;
    float* o = d + jl * cs;
    const int64_t n = jr - jl;
#if CONV_EXT_BLOCKS_AVX512
    if constexpr (AVX512) {
      if (nc == 16 && cs == 16 && sw == 1) {
        if constexpr (std::is_same_v<T, float>) {
          pack_run16(row, sc, n, o);
        } else {
          // Widened row by row into unit-stride runs first (a loop the
          // compiler vectorizes), then the same transposes.
          thread_local std::vector<float> wide;
          wide.resize(16 * n);
          for (int64_t c = 0; c < 16; ++c)
            for (int64_t j = 0; j < n; ++j) wide[c * n + j] = static_cast<float>(row[c * sc + j]);
          pack_run16(wide.data(), n, n, o);
        }
        continue;
      }
    }
#endif
    // Channel by channel: each plane row is read once in order.
    for (int64_t c = 0; c < nc; ++c) {
      const T* r = row + c * sc;
      for (int64_t j = 0; j < n; ++j) o[j * cs + c] = static_cast<float>(r[j * sw]);
    }
  }
}

// dst(c)[h][w] = buf[((h - h0) * Wp + w - w0) * cs + c] for h < H, w < W
// inside the window pg, 0 outside it; channels c < nc.
template <bool AVX512 = false, typename T>
inline void unpack_window(const float* buf, const PadGeom& pg, int64_t nc, int64_t cs, T* dst,
                          int64_t dc, int64_t dh, int64_t dw, int64_t H, int64_t W) {
  const int64_t wl = std::clamp<int64_t>(pg.w0, 0, W);
  const int64_t wr = std::clamp<int64_t>(pg.w0 + pg.Wp, wl, W);
#if CONV_EXT_BLOCKS_AVX512
  if constexpr (AVX512) {
    if (nc == 16 && cs == 16 && dw == 1) {
      thread_local std::vector<float> narrow;
      for (int64_t h = 0; h < H; ++h) {
        T* row = dst + h * dh;
        const int64_t i = h - pg.h0;
        if (i < 0 || i >= pg.Hp) {
          for (int64_t c = 0; c < 16; ++c) std::fill_n(row + c * dc, W, T(0.f));
          continue;
        }
        for (int64_t c = 0; c < 16; ++c) {
          std::fill_n(row + c * dc, wl, T(0.f));
          std::fill_n(row + c * dc + wr, W - wr, T(0.f));
        }
        const float* b = buf + (i * pg.Wp + wl - pg.w0) * cs;
        const int64_t n = wr - wl;
        if constexpr (std::is_same_v<T, float>) {
          unpack_run16(b, n, row + wl, dc);
        } else {
          // Transposed into unit-stride float runs, then rounded run by run.
          narrow.resize(16 * n);
          unpack_run16(b, n, narrow.data(), n);
          for (int64_t c = 0; c < 16; ++c)
            for (int64_t j = 0; j < n; ++j) row[c * dc + wl + j] = static_cast<T>(narrow[c * n + j]);
        }
      }
      return;
    }
  }
#endif
  for (int64_t c = 0; c < nc; ++c) {
    T* plane = dst + c * dc;
    for (int64_t h = 0; h < H; ++h) {
      T* row = plane + h * dh;
      const int64_t i = h - pg.h0;
      if (i < 0 || i >= pg.Hp) {
        for (int64_t w = 0; w < W; ++w) row[w * dw] = T(0.f);
        continue;
      }
      for (int64_t w = 0; w < wl; ++w) row[w * dw] = T(0.f);
      const float* b = buf + (i * pg.Wp + wl - pg.w0) * cs + c;
      for (int64_t w = wl; w < wr; ++w) row[w * dw] = static_cast<T>(b[(w - wl) * cs]);
      for (int64_t w = wr; w < W; ++w) row[w * dw] = T(0.f);
    }
  }
}

}  // namespace conv_ext::cpu
