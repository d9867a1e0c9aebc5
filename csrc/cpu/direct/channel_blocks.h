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
#include <cstring>
#include <type_traits>

#include "direct_rows.h"  // PadGeom

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CONV_EXT_BLOCKS_X86 1
#define CONV_EXT_BLOCKS_AVX512_FN __attribute__((target("avx512f"))) inline
#define CONV_EXT_BLOCKS_AVX2_FN __attribute__((target("avx2,fma"))) inline
#else
#define CONV_EXT_BLOCKS_X86 0
#endif

namespace conv_ext::cpu {

#if CONV_EXT_BLOCKS_X86
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

// 16-bit values q[0 .. m) zero-extended into 32-bit lanes (zeros past m)
// without reading past q[m - 1]: pairs through a masked 32-bit load, the
// last odd one on its own (masked 16-bit loads need AVX-512BW, and a copy
// through the stack stalls on store forwarding).
CONV_EXT_BLOCKS_AVX512_FN __m512i load_u16(const uint16_t* q, int64_t m) {
  if (m == 16) return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
  const __m512i pairs = _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << (m / 2)) - 1), q);
  const __m512i both = _mm512_permutexvar_epi32(
      _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0), pairs);
  // Even lanes the low half of their pair, odd lanes the high half.
  __m512i r = _mm512_mask_srli_epi32(_mm512_and_si512(both, _mm512_set1_epi32(0xffff)),
                                     static_cast<__mmask16>(0xaaaa), both, 16);
  if (m & 1) r = _mm512_mask_set1_epi32(r, static_cast<__mmask16>(1u << (m - 1)), q[m - 1]);
  return r;
}

// m <= 16 values of p widened to float (zeros past m): bfloat16 is the
// upper half of a float, half converts with vcvtph2ps (AVX-512F).
template <typename T>
CONV_EXT_BLOCKS_AVX512_FN __m512 load16(const T* p, int64_t m) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << m) - 1), p);
  } else {
    static_assert(sizeof(T) == 2);
    const __m512i u = load_u16(reinterpret_cast<const uint16_t*>(p), m);
    if constexpr (std::is_same_v<T, c10::Half>) {
      return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(u));
    } else {
      return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    }
  }
}

// The first m <= 16 lanes of v stored to p as T, rounded to nearest even
// (bfloat16 as c10::BFloat16 rounds: NaN stays a quiet NaN). The 16-bit
// lanes are written by a masked vpmovdw (AVX-512F).
template <typename T>
CONV_EXT_BLOCKS_AVX512_FN void store16(T* p, int64_t m, __m512 v) {
  const __mmask16 mask = static_cast<__mmask16>((1u << m) - 1);
  if constexpr (std::is_same_v<T, float>) {
    _mm512_mask_storeu_ps(p, mask, v);
  } else {
    __m512i r;
    if constexpr (std::is_same_v<T, c10::Half>) {
      r = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    } else {
      const __m512i bits = _mm512_castps_si512(v);
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
      r = _mm512_srli_epi32(
          _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
      const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc0));
    }
    _mm512_mask_cvtepi32_storeu_epi16(p, mask, r);
  }
}

// o[j*16 + c] = row[c*sc + j] for j < n, 16 channels, widened to float.
template <typename T>
CONV_EXT_BLOCKS_AVX512_FN void pack_run16(const T* row, int64_t sc, int64_t n, float* o) {
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t m = n - j0 < 16 ? n - j0 : 16;
    __m512 r[16];
    for (int c = 0; c < 16; ++c) r[c] = load16(row + c * sc + j0, m);
    transpose16(r);
    for (int64_t j = 0; j < m; ++j) _mm512_storeu_ps(o + (j0 + j) * 16, r[j]);
  }
}

// row[c*dc + j] = b[j*16 + c] for j < n, 16 channels, rounded to T.
template <typename T>
CONV_EXT_BLOCKS_AVX512_FN void unpack_run16(const float* b, int64_t n, T* row, int64_t dc) {
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t m = n - j0 < 16 ? n - j0 : 16;
    __m512 r[16];
    for (int64_t j = 0; j < 16; ++j)
      r[j] = j < m ? _mm512_loadu_ps(b + (j0 + j) * 16) : _mm512_setzero_ps();
    transpose16(r);
    for (int c = 0; c < 16; ++c) store16(row + c * dc + j0, m, r[c]);
  }
}

// The same copies with AVX2 for float and bfloat16 (the build has no F16C
// for half): 16 channels as two 8 x 8 transposes per 8 pixels. Without them
// the element-by-element copies were most of a small-plane depthwise
// forward (AMD EPYC Zen 3, 2 threads: dw3_s1_c576_7x7 0.81x torch,
// dw5_s1_c1152_4x4 0.75x), and bfloat16 ran at half float32's speed
// (mbv2_dw_3x3 at batch 8, each pass: 2.0-2.2x float32's time).
template <typename T>
inline constexpr bool kAvx2Widens = std::is_same_v<T, float> || std::is_same_v<T, c10::BFloat16>;

CONV_EXT_BLOCKS_AVX2_FN void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// Lanes below m <= 8 set: a maskload reads no element past them.
CONV_EXT_BLOCKS_AVX2_FN __m256i lanes8(int64_t m) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(m)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The first m <= 8 lanes of v stored to p, by halves, pairs and singles: a
// masked store (vmaskmovps) is microcoded on AMD Zen and took most of the
// unpacking's time (Zen 3: 14% of a (8, 192, 14, 14) depthwise forward).
CONV_EXT_BLOCKS_AVX2_FN void store_first8(float* p, int64_t m, __m256 v) {
  if (m == 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  __m128 x = _mm256_castps256_ps128(v);
  if (m >= 4) {
    _mm_storeu_ps(p, x);
    x = _mm256_extractf128_ps(v, 1);
    p += 4;
    m -= 4;
  }
  if (m >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), x);
    x = _mm_movehl_ps(x, x);
    p += 2;
    m -= 2;
  }
  if (m == 1) _mm_store_ss(p, x);
}

// m <= 8 values of p widened to float (zeros past m), reading nothing past
// p[m - 1]. bfloat16 is the upper half of a float: a zero extension and a
// shift; a short run loads its pairs through a masked 32-bit load and its
// last odd value on its own, as load_u16 does.
template <typename T>
CONV_EXT_BLOCKS_AVX2_FN __m256 load8(const T* p, int64_t m) {
  if constexpr (std::is_same_v<T, float>) {
    return m == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes8(m));
  } else {
    static_assert(std::is_same_v<T, c10::BFloat16>, "AVX2 widens float and bfloat16");
    const auto* q = reinterpret_cast<const uint16_t*>(p);
    __m128i v;
    if (m == 8) {
      v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    } else {
      const __m128i pairs = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(m / 2)),
                                            _mm_setr_epi32(0, 1, 2, 3));
      v = _mm_maskload_epi32(reinterpret_cast<const int*>(q), pairs);
      if (m % 2 != 0) {
        const __m128i last = _mm_cmpeq_epi16(_mm_set1_epi16(static_cast<short>(m - 1)),
                                             _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
        v = _mm_or_si128(v, _mm_and_si128(last, _mm_set1_epi16(static_cast<short>(q[m - 1]))));
      }
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  }
}

// The first m <= 8 lanes of v stored to p as T: float by store_first8;
// bfloat16 rounded to nearest even as c10::BFloat16 rounds (a NaN becomes
// 0x7FC0), by halves, pairs and singles of 16-bit values.
template <typename T>
CONV_EXT_BLOCKS_AVX2_FN void store8(T* p, int64_t m, __m256 v) {
  if constexpr (std::is_same_v<T, float>) {
    store_first8(p, m, v);
  } else {
    const __m256i b = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
    // 32 -> 16 bits per 128-bit half, then the two halves' low quarters together.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    __m128i x = _mm256_castsi256_si128(packed);
    auto* q = reinterpret_cast<uint16_t*>(p);
    if (m == 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q), x);
      return;
    }
    if (m >= 4) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q), x);
      x = _mm_srli_si128(x, 8);
      q += 4;
      m -= 4;
    }
    if (m >= 2) {
      const int pair = _mm_cvtsi128_si32(x);
      std::memcpy(q, &pair, sizeof pair);
      x = _mm_srli_si128(x, 4);
      q += 2;
      m -= 2;
    }
    if (m == 1) *q = static_cast<uint16_t>(_mm_extract_epi16(x, 0));
  }
}

// pack_run16 with AVX2, float and bfloat16.
template <typename T>
CONV_EXT_BLOCKS_AVX2_FN void pack_run16_avx2(const T* row, int64_t sc, int64_t n, float* o) {
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const int64_t m = n - j0 < 8 ? n - j0 : 8;
    for (int h = 0; h < 2; ++h) {
      __m256 r[8];
      for (int c = 0; c < 8; ++c) r[c] = load8(row + (8 * h + c) * sc + j0, m);
      transpose8(r);
      for (int64_t j = 0; j < m; ++j) _mm256_storeu_ps(o + (j0 + j) * 16 + 8 * h, r[j]);
    }
  }
}

// unpack_run16 with AVX2, float and bfloat16.
template <typename T>
CONV_EXT_BLOCKS_AVX2_FN void unpack_run16_avx2(const float* b, int64_t n, T* row, int64_t dc) {
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const int64_t m = n - j0 < 8 ? n - j0 : 8;
    for (int h = 0; h < 2; ++h) {
      __m256 r[8];
      for (int64_t j = 0; j < 8; ++j)
        r[j] = j < m ? _mm256_loadu_ps(b + (j0 + j) * 16 + 8 * h) : _mm256_setzero_ps();
      transpose8(r);
      for (int c = 0; c < 8; ++c) store8(row + (8 * h + c) * dc + j0, m, r[c]);
    }
  }
}
#endif

// Channels [0, nc) of the planes src + c*sc (rows sh, columns sw; H x W)
// over the window pg into buf [Hp][Wp][cs]: zeros outside the planes and
// in channels nc..cs-1, so the kernels have no edge cases.
// B: the float lanes of the caller's build, 16 for AVX-512F, 8 for AVX2
// (full blocks of 16 channels with unit column stride then go through
// transpose16, or two transpose8 for float and bfloat16), 0 for plain code.
template <int B = 0, typename T>
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
#if CONV_EXT_BLOCKS_X86
    if (nc == 16 && cs == 16 && sw == 1) {
      if constexpr (B == 16) {
        pack_run16(row, sc, n, o);
        continue;
      } else if constexpr (B == 8 && kAvx2Widens<T>) {
        pack_run16_avx2(row, sc, n, o);
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
// inside the window pg, 0 outside it; channels c < nc. B as in pack_window.
template <int B = 0, typename T>
inline void unpack_window(const float* buf, const PadGeom& pg, int64_t nc, int64_t cs, T* dst,
                          int64_t dc, int64_t dh, int64_t dw, int64_t H, int64_t W) {
  const int64_t wl = std::clamp<int64_t>(pg.w0, 0, W);
  const int64_t wr = std::clamp<int64_t>(pg.w0 + pg.Wp, wl, W);
#if CONV_EXT_BLOCKS_X86
  if constexpr (B == 16 || (B == 8 && kAvx2Widens<T>)) {
    if (nc == 16 && cs == 16 && dw == 1) {
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
        if constexpr (B == 16) {
          unpack_run16(b, wr - wl, row + wl, dc);
        } else {
          unpack_run16_avx2(b, wr - wl, row + wl, dc);
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
