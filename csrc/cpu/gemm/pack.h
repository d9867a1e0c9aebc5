// Packing: how every operand reaches the micro-kernel's panel layout
// (microkernel.h). A packed block of `xlen` rows by `depth` holds panels of
// `width` rows (MR for A, NR for B), each panel depth x width with the rows
// interleaved, rows past xlen zero.
//
// bfloat16 panels (kPackPairs = 2) hold the depth in pairs: per pair of
// steps (k, k+1) the panel's `width` rows each give two adjacent values,
// (row 0: k, k+1), (row 1: k, k+1), ..., the operand layout of vdpbf16ps
// (microkernel_bf16.cpp). An odd depth is padded with a zero step, so a
// panel is round_up(depth, 2) x width values.
//
// Two sources:
//  - offset tables (pack_table): element (x, y) lives at src[xo[x] + yo[y]];
//    weights and plain strided matrices in any layout;
//  - im2col views (Im2col, pack_im2col): the convolution's patch matrix read
//    straight from the strided image, one contiguous run at a time (a run of
//    pixels along a row for taps ordered (c, r, s), a run of channels for taps
//    ordered (r, s, c) when channels are contiguous). Packing is the im2col.
#pragma once

#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace conv_ext::cpu {

// Reduction steps grouped per panel row: 2 for bfloat16 panels (the pairs
// vdpbf16ps takes), 1 for every other panel type.
template <typename T>
inline constexpr int64_t kPackPairs = 1;
template <>
inline constexpr int64_t kPackPairs<c10::BFloat16> = 2;

// True where a panel type holds a source type's bits unchanged, so that a
// unit-step run is a memcpy (the plain bfloat16 panels of pack_bf16.cpp,
// whose element-wise copy the compiler left scalar).
template <typename T, typename S>
inline constexpr bool kBitCopy = false;

// The depth a panel of `depth` steps occupies (odd bfloat16 depths padded).
template <typename T>
constexpr int64_t packed_depth(int64_t depth) {
  return (depth + kPackPairs<T> - 1) / kPackPairs<T> * kPackPairs<T>;
}

// Where a panel block's element (x, y) goes.
template <typename T>
struct PanelBlock {
  static constexpr int64_t kP = kPackPairs<T>;
  T* dst;
  int64_t width, depth;

  int64_t pdepth() const { return packed_depth<T>(depth); }

  // Offset of (x % width, y) inside a panel.
  int64_t in_panel(int64_t xr, int64_t y) const {
    return (y / kP) * width * kP + xr * kP + y % kP;
  }

  T* at(int64_t x, int64_t y) const {
    return dst + (x / width) * width * pdepth() + in_panel(x % width, y);
  }

  // Writes src[0], src[step], ... (n values) to (x0 .. x0+n-1, y), or zeros
  // when src is null: contiguous within a panel (kP apart for pairs), a jump
  // between panels. The unit-step case is a plain converting copy the
  // compiler vectorizes.
  template <typename scalar_t>
  void run_x(int64_t x0, int64_t y, int64_t n, const scalar_t* src, int64_t step) const {
    T* d = at(x0, y);
    int64_t room = width - x0 % width;
    const int64_t jump = width * pdepth() - width * kP;
    while (n > 0) {
      const int64_t len = std::min(room, n);
      if (src == nullptr) {
        for (int64_t j = 0; j < len; ++j) d[j * kP] = T(0);
      } else if (step == 1) {
        if constexpr (kP == 1 && kBitCopy<T, scalar_t>) {
          std::memcpy(static_cast<void*>(d), src, len * sizeof(T));
        } else {
          for (int64_t j = 0; j < len; ++j) d[j * kP] = static_cast<T>(src[j]);
        }
        src += len;
      } else {
        if constexpr (kP == 1 && kBitCopy<T, scalar_t>) {
          // 16-bit values: the compiler vectorizes stride 2 (stride-2
          // layers' patch runs) only when it is a constant.
          auto* dd = reinterpret_cast<uint16_t*>(d);
          auto* ss = reinterpret_cast<const uint16_t*>(src);
          if (step == 2) {
            for (int64_t j = 0; j < len; ++j) dd[j] = ss[2 * j];
          } else {
            for (int64_t j = 0; j < len; ++j) dd[j] = ss[j * step];
          }
        } else if (kP == 1 && step == 2) {
          // Constant stride 2 (stride-2 layers' patch runs along a row):
          // the compiler vectorizes it with two loads and a shuffle per
          // vector; a variable step stays element by element (AMD EPYC Zen
          // 3, AVX2: the packing was 23 % of (8, 64, 28, 28) -> 128 3 x 3
          // stride 2's forward).
          for (int64_t j = 0; j < len; ++j) d[j] = static_cast<T>(src[2 * j]);
        } else {
          for (int64_t j = 0; j < len; ++j) d[j * kP] = static_cast<T>(src[j * step]);
        }
        src += len * step;
      }
      n -= len;
      d += len * kP + jump;
      room = width;
    }
  }

  // The same to (x, y0 .. y0+n-1): stride width (pairs: adjacent, then a
  // stride of 2 width).
  template <typename scalar_t>
  void run_y(int64_t x, int64_t y0, int64_t n, const scalar_t* src, int64_t step) const {
    T* d = dst + (x / width) * width * pdepth() + (x % width) * kP;
    if constexpr (kP == 2 && std::is_same_v<scalar_t, T>) {
      // Two consecutive steps are adjacent in a pair: a unit-step run
      // moves 32 bits per pair (pixel runs along the grad-weight depth).
      if (src != nullptr && step == 1) {
        int64_t e = 0;
        if (y0 % 2 != 0 && n > 0) {
          d[in_panel(0, y0)] = src[0];
          e = 1;
        }
        T* q = d + (y0 + e) * width;  // pair (y0 + e) / 2, first half
        for (; e + 1 < n; e += 2, q += 2 * width) std::memcpy(q, src + e, 2 * sizeof(T));
        if (e < n) *q = src[e];
        return;
      }
    }
    if (src == nullptr) {
      for (int64_t e = 0; e < n; ++e) d[in_panel(0, y0 + e)] = T(0);
    } else {
      for (int64_t e = 0; e < n; ++e) d[in_panel(0, y0 + e)] = static_cast<T>(src[e * step]);
    }
  }

  // Zeroes rows xlen .. round_up(xlen, width) - 1 of the last panel and,
  // for pairs, the padding step of an odd depth in every panel.
  void zero_tail(int64_t xlen) const {
    const int64_t tail = xlen % width;
    if (tail != 0) {
      T* p = dst + (xlen / width) * width * pdepth();
      for (int64_t y = 0; y < pdepth(); ++y)
        for (int64_t x = tail; x < width; ++x) p[in_panel(x, y)] = T(0);
    }
    zero_depth_pad(xlen);
  }

  void zero_depth_pad(int64_t xlen) const {
    if constexpr (kP > 1) {
      if (depth % kP == 0) return;
      for (int64_t x = 0; x < xlen; ++x)
        for (int64_t y = depth; y < pdepth(); ++y) *at(x, y) = T(0);
    }
  }
};

// Panels of a matrix given by offset tables.
template <typename acc_t, typename scalar_t>
void pack_table(
    const scalar_t* src,
    const int64_t* xo,
    int64_t xlen,
    const int64_t* yo,
    int64_t ylen,
    int64_t width,
    acc_t* dst) {
  const PanelBlock<acc_t> pb{dst, width, ylen};
  // Unit stride along y (a contiguous weight read along its taps): read
  // along y, write with stride width.
  bool y_unit = true;
  for (int64_t y = 1; y < ylen && y_unit; ++y) y_unit = yo[y] == yo[0] + y;
  for (int64_t x0 = 0; x0 < xlen; x0 += width) {
    const int64_t w = std::min(width, xlen - x0);
    acc_t* panel = dst + x0 * pb.pdepth();
    if constexpr (PanelBlock<acc_t>::kP == 2 && std::is_same_v<acc_t, scalar_t>) {
      if (y_unit) {
        // A pair is two adjacent values of a column: 32 bits a move, a
        // panel row of pairs (2 width values) filled per step.
        const int64_t pairs = ylen / 2;
        for (int64_t p0 = 0; p0 < pairs; p0 += 32) {
          const int64_t p1 = std::min(pairs, p0 + 32);
          for (int64_t x = 0; x < w; ++x) {
            const scalar_t* col = src + xo[x0 + x] + yo[0];
            for (int64_t p = p0; p < p1; ++p)
              std::memcpy(panel + p * 2 * width + 2 * x, col + 2 * p, 2 * sizeof(acc_t));
          }
        }
        if (ylen % 2 != 0) {
          for (int64_t x = 0; x < w; ++x)
            panel[pb.in_panel(x, ylen - 1)] = src[xo[x0 + x] + yo[0] + ylen - 1];
        }
        continue;
      }
    }
    if (y_unit) {
      // In steps of 64 along y so the panel lines being filled stay in L1
      // (one pass over a 4608 x 32 panel per x thrashed it).
      for (int64_t y0 = 0; y0 < ylen; y0 += 64) {
        const int64_t y1 = std::min(ylen, y0 + 64);
        for (int64_t x = 0; x < w; ++x) {
          const scalar_t* col = src + xo[x0 + x] + yo[0];
          for (int64_t y = y0; y < y1; ++y)
            panel[pb.in_panel(x, y)] = static_cast<acc_t>(col[y]);
        }
      }
      continue;
    }
    for (int64_t y = 0; y < ylen; ++y) {
      const scalar_t* row = src + yo[y];
      for (int64_t x = 0; x < w; ++x)
        panel[pb.in_panel(x, y)] = static_cast<acc_t>(row[xo[x0 + x]]);
    }
  }
  pb.zero_tail(xlen);
}

// The patch matrix of one image and group: element (pixel i, tap t) is
// src[c, h, w] with, for destination pixel i = (p, q) and tap t = (c, r, s),
//   h = p * st_h + off_h + r * dil_h,   w = q * st_w + off_w + s * dil_w
// and 0 outside the image. Forward: src = input, off = -pad. Grad input at
// stride 1: src = grad_output, off = +pad, dil = -dil (the flipped kernel).
template <typename scalar_t>
struct Im2col {
  const scalar_t* src;  // image n, first channel of the group
  int64_t sc, sh, sw;   // element strides: channel, row, column
  int64_t C, H, W;      // channels (of the group) and extent of src
  int64_t Q;            // destination pixels per row
  int64_t st_h, st_w, off_h, off_w, dil_h, dil_w;
  int64_t R, S;
  bool rsc;  // taps ordered (r, s, c); else (c, r, s)

  int64_t taps() const { return C * R * S; }
};

// First e in [0, n) with 0 <= w0 + e*st < W, and one past the last.
inline void valid_range(int64_t w0, int64_t st, int64_t W, int64_t n, int64_t& lo, int64_t& hi) {
  lo = w0 >= 0 ? 0 : (-w0 + st - 1) / st;
  hi = w0 >= W ? 0 : std::min(n, (W - 1 - w0) / st + 1);
  if (lo > n) lo = n;
  if (hi < lo) hi = lo;
}

// Packs pixels m0 .. m0+mlen-1 by taps t0 .. t0+tlen-1 of the patch matrix.
// pixels_x: pixels index the panel rows (x) and taps the depth; else the
// reverse.
// With depth_total > 0 the block is part of a deeper one (pixels of several
// images along the depth): this call fills depth rows depth_off .. of it.
template <typename acc_t, typename scalar_t>
void pack_im2col(
    const Im2col<scalar_t>& g,
    int64_t m0,
    int64_t mlen,
    int64_t t0,
    int64_t tlen,
    bool pixels_x,
    int64_t width,
    acc_t* dst,
    int64_t depth_off = 0,
    int64_t depth_total = 0) {
  const PanelBlock<acc_t> pb{
      dst, width, depth_total > 0 ? depth_total : (pixels_x ? tlen : mlen)};
  // A run of n elements from src (step apart; zeros if null) for pixel
  // index i and tap index t (relative), along pixels or along taps.
  auto run = [&](bool along_pixels, int64_t i, int64_t t, int64_t n,
                 const scalar_t* src, int64_t step) {
    const int64_t x = pixels_x ? i : t, y = (pixels_x ? t : i) + depth_off;
    if (along_pixels == pixels_x) {
      pb.run_x(x, y, n, src, step);
    } else {
      pb.run_y(x, y, n, src, step);
    }
  };
  const scalar_t* none = nullptr;
  const int64_t RS = g.R * g.S;
  if (g.rsc) {
    // Runs of channels at one (pixel, r, s).
    int64_t p = m0 / g.Q, q = m0 % g.Q;
    for (int64_t i = 0; i < mlen; ++i) {
      const int64_t h0 = p * g.st_h + g.off_h, w0 = q * g.st_w + g.off_w;
      int64_t rs = t0 / g.C, c = t0 % g.C;
      for (int64_t t = 0; t < tlen;) {
        const int64_t n = std::min(g.C - c, tlen - t);
        const int64_t h = h0 + (rs / g.S) * g.dil_h;
        const int64_t w = w0 + (rs % g.S) * g.dil_w;
        if (h < 0 || h >= g.H || w < 0 || w >= g.W) {
          run(false, i, t, n, none, 0);
        } else {
          run(false, i, t, n, g.src + h * g.sh + w * g.sw + c * g.sc, g.sc);
        }
        t += n;
        c = 0;
        ++rs;
      }
      if (++q == g.Q) {
        q = 0;
        ++p;
      }
    }
  } else {
    // Runs of pixels along one output row at one tap (c, r, s).
    const int64_t p0 = m0 / g.Q, q0 = m0 % g.Q;
    int64_t c = t0 / RS, rs = t0 % RS;
    for (int64_t t = 0; t < tlen; ++t) {
      const int64_t dh = (rs / g.S) * g.dil_h + g.off_h;
      const int64_t dw = (rs % g.S) * g.dil_w + g.off_w;
      const scalar_t* sc = g.src + c * g.sc;
      // The output columns [qlo, qhi) whose input column is inside the
      // image, the same on every row: once per tap, not two divisions per
      // run (they were a tenth of the packing on 14-pixel rows, AVX2).
      int64_t qlo, qhi;
      valid_range(dw, g.st_w, g.W, g.Q, qlo, qhi);
      int64_t p = p0, q = q0;
      for (int64_t i = 0; i < mlen;) {
        const int64_t n = std::min(g.Q - q, mlen - i);
        const int64_t h = p * g.st_h + dh;
        if (h < 0 || h >= g.H) {
          run(true, i, t, n, none, 0);
        } else {
          const int64_t w0 = q * g.st_w + dw;
          const int64_t lo = std::min(n, std::max<int64_t>(0, qlo - q));
          const int64_t hi = std::max(lo, std::min(n, qhi - q));
          if (lo > 0) run(true, i, t, lo, none, 0);
          if (hi > lo)
            run(true, i + lo, t, hi - lo, sc + h * g.sh + (w0 + lo * g.st_w) * g.sw,
                g.st_w * g.sw);
          if (n > hi) run(true, i + hi, t, n - hi, none, 0);
        }
        i += n;
        q = 0;
        ++p;
      }
      if (++rs == RS) {
        rs = 0;
        ++c;
      }
    }
  }
  pb.zero_tail(pixels_x ? mlen : tlen);
}

// Vector instances (pack_vec.cpp); isa: 1 = AVX2 + FMA, 2 = AVX-512F.
void pack_im2col_vec(
    int isa, const Im2col<float>& g, int64_t m0, int64_t mlen, int64_t t0,
    int64_t tlen, bool pixels_x, int64_t width, float* dst, int64_t depth_off,
    int64_t depth_total);
void pack_im2col_vec(
    int isa, const Im2col<double>& g, int64_t m0, int64_t mlen, int64_t t0,
    int64_t tlen, bool pixels_x, int64_t width, double* dst, int64_t depth_off,
    int64_t depth_total);
// bfloat16 into pair panels: built for AVX-512 with BW (its 16-bit
// shuffles), run only on kAvx512Bf16 machines.
void pack_im2col_vec(
    int isa, const Im2col<c10::BFloat16>& g, int64_t m0, int64_t mlen, int64_t t0,
    int64_t tlen, bool pixels_x, int64_t width, c10::BFloat16* dst, int64_t depth_off,
    int64_t depth_total);

// pack_im2col in the widest vector build the CPU runs (vec_isa: 0 scalar,
// 1 AVX2, 2 AVX-512F) where source and panels share a type.
template <typename acc_t, typename scalar_t>
void pack_patches(
    int vec_isa, const Im2col<scalar_t>& g, int64_t m0, int64_t mlen, int64_t t0,
    int64_t tlen, bool pixels_x, int64_t width, acc_t* dst, int64_t depth_off = 0,
    int64_t depth_total = 0) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    if (vec_isa > 0) {
      pack_im2col_vec(vec_isa, g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off,
                      depth_total);
      return;
    }
  }
  pack_im2col(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
}

// pack_im2col over the depth range [d0, d0 + dlen) of pixels numbered
// across images (n * PQ + pixel), view(n) giving image n's patch matrix:
// the grad-weight reduction runs over all pixels of all images, and depth
// blocks that span images keep its micro-kernel calls deep for late layers
// with few pixels per image (7 x 7).
template <typename acc_t, typename scalar_t, typename View>
void pack_im2col_images(
    int vec_isa, View&& view, int64_t PQ, int64_t d0, int64_t dlen, int64_t t0,
    int64_t tlen, int64_t width, acc_t* dst) {
  int64_t done = 0;
  while (done < dlen) {
    const int64_t n = (d0 + done) / PQ, pq = (d0 + done) % PQ;
    const int64_t len = std::min(PQ - pq, dlen - done);
    const Im2col<scalar_t> g = view(n);
    pack_patches(vec_isa, g, pq, len, t0, tlen, false, width, dst, done, dlen);
    done += len;
  }
}

// c10::BFloat16(v) without its branch (NaN -> 0x7FC0, else round to
// nearest even), so that a run of conversions vectorizes: the bfloat16
// stores were 7 % of a r50_conv1 forward profile.
inline c10::BFloat16 to_bf16_rne(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  const uint16_t r = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  return c10::BFloat16(v != v ? uint16_t(0x7FC0) : r, c10::BFloat16::from_bits());
}

template <typename scalar_t, typename acc_t>
inline scalar_t convert_out(acc_t v) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16> && std::is_same_v<acc_t, float>) {
    return to_bf16_rne(v);
  } else {
    return static_cast<scalar_t>(v);
  }
}

// Writes rows x cols of C (leading dimension ldc) to dst[ro[i] + co[j]],
// converting, plus bias[i] or bias[j] where given.
template <typename scalar_t, typename acc_t>
void store_tile(
    const acc_t* C,
    int64_t ldc,
    int64_t rows,
    int64_t cols,
    const int64_t* ro,
    const int64_t* co,
    const acc_t* row_bias,
    const acc_t* col_bias,
    scalar_t* dst) {
  bool unit = true;  // columns land contiguously: a vectorizable copy
  for (int64_t j = 1; j < cols && unit; ++j) unit = co[j] == co[0] + j;
  for (int64_t i = 0; i < rows; ++i) {
    scalar_t* d = dst + ro[i];
    const acc_t* c = C + i * ldc;
    const acc_t rb = row_bias ? row_bias[i] : acc_t(0);
    if (unit) {
      scalar_t* du = d + co[0];
      if (col_bias) {
        for (int64_t j = 0; j < cols; ++j)
          du[j] = convert_out<scalar_t>(c[j] + rb + col_bias[j]);
      } else {
        for (int64_t j = 0; j < cols; ++j) du[j] = convert_out<scalar_t>(c[j] + rb);
      }
    } else if (col_bias) {
      for (int64_t j = 0; j < cols; ++j)
        d[co[j]] = static_cast<scalar_t>(c[j] + rb + col_bias[j]);
    } else {
      for (int64_t j = 0; j < cols; ++j)
        d[co[j]] = static_cast<scalar_t>(c[j] + rb);
    }
  }
}

}  // namespace conv_ext::cpu
