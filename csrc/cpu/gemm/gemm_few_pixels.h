// Late layers at small batch (7 x 7 pixels, 512 -> 512 channels, batch 2)
// have more weight than pixels: a 4608 x 512 kernel against 98 output
// pixels. Tiling the pixels, as the other GEMM passes do, gives each thread
// one image and makes every thread stream the whole packed kernel, packed
// beforehand in a pass of its own (r50_res5_3x3 forward: 3.3 ms, 0.54x
// torch). Here the output channels are split between the threads instead,
// all images' pixels are the rows of one GEMM, and each thread packs only
// its channels' weights, one depth block at a time, just before using
// them: the kernel is read from memory once in all, and its packed blocks
// stay in L2. When each channel's weights are one contiguous run in tap
// order (the forward on a contiguous kernel), they are not packed at all:
// the channels are the rows of the micro-kernel, read in place
// (microkernel_rows.cpp), and the pixels its packed columns.
// The images' pixels follow each other without padding (image n's pixel i
// is column n * pixels + i): padding each image to a whole panel left half
// of every 32-wide panel empty on 4 x 4 planes, and 31 of 32 lanes on the
// 1 x 1 planes of squeeze-excite layers.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "conv_gemm.h"

namespace conv_ext::cpu {

// Rows of all images together that keep the packed patch block (rows x kc)
// and the result tile in L2.
constexpr int64_t kFewPixelRows = 384;

// Each thread takes at least one NR-wide panel of channels; with fewer
// channels than 2 NR per thread, planes of one pixel (squeeze-excite,
// 1152 -> 48 channels) went to tiles of one image, one pixel each (0.3x
// torch, 1 thread).
inline bool few_pixels(int64_t images, int64_t pixels, int64_t channels, int64_t MR, int64_t NR,
                       int64_t limit = kFewPixelRows) {
  return images * round_up(pixels, MR) <= limit && channels >= NR * at::get_num_threads();
}

// The forward takes the few-pixel GEMM up to 512 rows: batch 8 at 7 x 7
// (432 rows at mr = 6) gains there, the grad input's gather does not (the
// limit above). 2 threads, AMD EPYC Zen 3 (AVX2), min of 20-30 calls
// interleaved with torch, 384 -> 512 rows: 1 x 1 (8, 576, 7, 7) -> 96
// 0.65x -> 1.14x torch, (8, 384, 7, 7) -> 64 0.66x -> 1.24x, (8, 160, 7, 7)
// -> 400 0.76x -> 1.15x, (8, 96, 7, 7) -> 576 1.26x either way; 3 x 3
// stride 2 to 7 x 7: (8, 128, 14, 14) -> 256 0.71x -> 1.09x, (8, 256, 14,
// 14) -> 512 0.84x -> 1.19x, (8, 64, 14, 14) -> 128 0.85 -> 0.72 ms.
constexpr int64_t kFewPixelRowsForward = 512;

// Patch panels of taps pc .. pc+kc-1 for all images' pixels one after
// another: image n's pixel i is panel row (x) n * pixels + i, width-wide
// panels of depth kc, rows past images * pixels zero. Each image is packed
// as one pixels-wide panel into tmp (pixels * kc) and its rows copied to
// where they fall.
template <typename T, typename View>
void pack_images_x(
    int vec_isa, View&& view, int64_t images, int64_t pixels, int64_t pc, int64_t kc,
    int64_t width, T* tmp, T* dst) {
  const PanelBlock<T> pb{dst, width, kc};
  constexpr int64_t kP = kPackPairs<T>;  // tmp is one panel: pairs kP apart
  for (int64_t n = 0; n < images; ++n) {
    if (pixels % width == 0) {  // whole panels per image: packed in place
      pack_patches(vec_isa, view(n), 0, pixels, pc, kc, true, width,
                   dst + n * pixels * pb.pdepth());
      continue;
    }
    pack_patches(vec_isa, view(n), 0, pixels, pc, kc, true, pixels, tmp);
    for (int64_t y = 0; y < kc; ++y)
      pb.run_x(n * pixels, y, pixels, tmp + (y / kP) * pixels * kP + y % kP, kP);
  }
  pb.zero_tail(images * pixels);
}

// The images of a patch matrix copied into zero frames, so that tap
// (c, r, s) of output row p is one run of Q values, no bounds to test: the
// generic packer's per-row range checks were most of the packing on 4 x 4
// planes (runs of 4 pixels): CPU time per call, 1 thread, A/B interleaved
// in one process, dense3_s1_c512_k512_4x4 forward -9 %,
// dense3_s2_c256_k512_7x7 -6 %, 1 x 1 on 4 x 4 planes -3 %. Works for any
// offsets and dilation signs.
// A 1 x 1, stride-1 layer without padding on images of the panels' type
// whose rows follow each other is its own frame: its images are read in
// place, each tap one run of all pixels (the copy and the runs of Q were
// as much time as the products of pw_c960_k160_4x4's forward, AVX2).
template <typename T>
struct FramedImages {
  std::vector<T> data;
  int64_t h0, w0, Hf, Wf, C, P;  // frame origin in image coordinates, extent
  std::vector<const T*> in_place;  // image n's first channel, or empty
  int64_t in_place_sc = 0;

  template <typename View>
  FramedImages(View&& view, int64_t images, int64_t pixels) {
    const auto g = view(0);
    C = g.C;
    P = pixels / g.Q;
    using Src = std::remove_cv_t<std::remove_pointer_t<decltype(g.src)>>;
    if constexpr (std::is_same_v<Src, T>) {
      if (g.R == 1 && g.S == 1 && g.st_h == 1 && g.st_w == 1 && g.off_h == 0 &&
          g.off_w == 0 && g.sw == 1 && g.sh == g.W && g.W == g.Q && g.H == P) {
        for (int64_t n = 0; n < images; ++n) in_place.push_back(view(n).src);
        in_place_sc = g.sc;
        return;
      }
    }
    auto span = [](int64_t n, int64_t st, int64_t off, int64_t k, int64_t dil, int64_t& lo) {
      const int64_t a = off + std::min<int64_t>(0, (k - 1) * dil);
      const int64_t b = (n - 1) * st + off + std::max<int64_t>(0, (k - 1) * dil);
      lo = a;
      return b - a + 1;
    };
    Hf = span(P, g.st_h, g.off_h, g.R, g.dil_h, h0);
    Wf = span(g.Q, g.st_w, g.off_w, g.S, g.dil_w, w0);
    data.assign(images * C * Hf * Wf, T(0));
    at::parallel_for(0, images * C, grain_for(Hf * Wf), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const auto gi = view(task / C);
        const int64_t c = task % C;
        T* f = data.data() + task * Hf * Wf;
        for (int64_t hf = 0; hf < Hf; ++hf) {
          const int64_t h = hf + h0;
          if (h < 0 || h >= gi.H) continue;
          for (int64_t wf = 0; wf < Wf; ++wf) {
            const int64_t w = wf + w0;
            if (w >= 0 && w < gi.W) f[hf * Wf + wf] = static_cast<T>(gi.src[c * gi.sc + h * gi.sh + w * gi.sw]);
          }
        }
      }
    });
  }

  // Taps pc .. pc+kc-1 of image n into rows n * pixels .. of pb.
  template <typename G>
  void pack(const G& g, int64_t n, int64_t pixels, int64_t pc, int64_t kc,
            const PanelBlock<T>& pb) const {
    if (!in_place.empty()) {
      for (int64_t y = 0; y < kc; ++y)
        pb.run_x(n * pixels, y, pixels, in_place[n] + (pc + y) * in_place_sc, 1);
      return;
    }
    const int64_t RS = g.R * g.S;
    const T* img = data.data() + n * C * Hf * Wf;
    for (int64_t y = 0; y < kc; ++y) {
      const int64_t t = pc + y, c = t / RS, r = (t % RS) / g.S, sx = t % g.S;
      const T* src = img + c * Hf * Wf + (g.off_h + r * g.dil_h - h0) * Wf +
          (g.off_w + sx * g.dil_w - w0);
      for (int64_t p = 0; p < P; ++p)
        pb.run_x(n * pixels + p * g.Q, y, g.Q, src + p * g.st_h * Wf, g.st_w);
    }
  }
};

// Every depth block of pack_images_x, packed once for all threads (each
// thread packing every block for its own part of the channels doubled the
// packing at 2 threads: 12 % of a dense 3 x 3 4 x 4 forward). Block pc
// (taps pc .. pc+kc-1) starts at dst + pc * round_up(images * pixels,
// width). One task per block, so the calling thread's scratch slot 3 holds
// the result and the workers' slot 2 their one-image staging. Taps in
// (c, r, s) order come from zero-framed copies of the images instead
// (FramedImages).
template <typename T, typename View>
T* pack_all_images(
    int vec_isa, View&& view, int64_t images, int64_t pixels, int64_t taps, int64_t KC,
    int64_t width) {
  // Blocks start at pc * rows: KC is even, so only the last block's depth
  // rounds up to whole bfloat16 pairs.
  const int64_t rows = round_up(images * pixels, width);
  T* const dst = scratch<T>(3, rows * packed_depth<T>(taps));
  const int64_t blocks = (taps + KC - 1) / KC;
  const auto g = view(0);
  if (!g.rsc) {
    const FramedImages<T> framed(view, images, pixels);
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t pc = b * KC, kc = std::min(KC, taps - pc);
        const PanelBlock<T> pb{dst + pc * rows, width, kc};
        for (int64_t n = 0; n < images; ++n) framed.pack(g, n, pixels, pc, kc, pb);
        pb.zero_tail(images * pixels);
      }
    });
    return dst;
  }
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    T* const tmp = scratch<T>(2, pixels * KC);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t pc = b * KC, kc = std::min(KC, taps - pc);
      pack_images_x(vec_isa, view, images, pixels, pc, kc, width, tmp, dst + pc * rows);
    }
  });
  return dst;
}

// The channels-as-rows few-pixel GEMM: channels are split in parts of whole
// MR-row panels; all images' pixels are the columns, packed once
// (pack_all_images). tile(j, pc, kc, bp, c, ldc, accumulate) multiplies
// channel rows j .. j+MR-1 (rows past `channels` may repeat or be zero, the
// store skips them) at taps pc .. pc+kc-1 by the packed panel bp into c.
// T: the accumulator, P: the panels' type, S: the destination's.
template <typename T, typename P, typename S, typename View, typename Tile>
void few_pixels_channel_rows(
    const GemmKernel<T, P>& kernel, int vec_isa, int64_t images, int64_t pixels, View&& view,
    int64_t channels, int64_t taps, const T* bias, S* dst, int64_t image_stride,
    const int64_t* po, const int64_t* co, int64_t threads, const Epilogue* epilogue,
    Tile&& tile) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t cols = round_up(images * pixels, NR);
  const int64_t part = round_up((channels + threads - 1) / threads, MR);
  const int64_t parts = (channels + part - 1) / part;
  const P* const bfull = pack_all_images<P>(vec_isa, view, images, pixels, taps, KC, NR);
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    T* const cbuf = scratch<T>(0, part * cols);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t j0 = p * part, nj = std::min(part, channels - j0);
      for (int64_t pc = 0; pc < taps; pc += KC) {
        const int64_t kc = std::min(KC, taps - pc), kp = packed_depth<P>(kc);
        const P* const bbuf = bfull + pc * cols;
        for (int64_t jr = 0; jr < cols; jr += NR)
          for (int64_t ir = 0; ir < nj; ir += MR)  // cbuf has whole MR-row panels
            tile(j0 + ir, pc, kc, bbuf + jr * kp, cbuf + ir * cols + jr, cols, pc > 0);
      }
      const T* none = nullptr;
      for (int64_t n = 0; n < images; ++n) {
        T* c = cbuf + n * pixels;
        const T* rb = bias ? bias + j0 : nullptr;
        if (epilogue && bias_activation_in_place(c, cols, nj, pixels, rb, none, *epilogue)) rb = none;
        store_tile(c, cols, nj, pixels, co + j0, po, rb, none, dst + n * image_stride);
      }
    }
  });
}

// few_pixels_channel_rows with the weights read in place: w + wo[j] is
// channel j's run of taps (the row-pointer micro-kernel). bfloat16 pairs:
// a row's steps (k, k+1) are already adjacent in place.
template <typename T, typename P, typename S, typename View>
void gemm_few_pixels_rows(
    const GemmKernel<T, P>& kernel, int vec_isa, int64_t images, int64_t pixels, View&& view,
    const P* w, const int64_t* wo, int64_t channels, int64_t taps, const T* bias, S* dst,
    int64_t image_stride, const int64_t* po, const int64_t* co, int64_t threads,
    const Epilogue* epilogue) {
  const int64_t MR = kernel.mr;
  few_pixels_channel_rows(
      kernel, vec_isa, images, pixels, view, channels, taps, bias, dst, image_stride, po, co,
      threads, epilogue,
      [&](int64_t j, int64_t pc, int64_t kc, const P* bp, T* c, int64_t ldc, bool acc) {
        const int64_t mv = std::min(MR, channels - j);
        const P* a[6];
        for (int64_t i = 0; i < MR; ++i)  // rows past the channels repeat the last
          a[i] = w + wo[j + std::min(i, mv - 1)] + pc;
        kernel.rows_fn(kc, a, bp, nullptr, 0, c, ldc, acc);
      });
}

// few_pixels_channel_rows with the weights packed beforehand into MR-row
// panels, `taps` deep, rows past `channels` zero (pack_table_parallel):
// for weights whose taps are not one run per channel, such as W^T of a
// 1 x 1 grad input, where each panel row k is MR adjacent values of W.
template <typename T, typename S, typename View>
void gemm_few_pixels_panels(
    const GemmKernel<T, T>& kernel, int vec_isa, int64_t images, int64_t pixels, View&& view,
    const T* panels, int64_t channels, int64_t taps, S* dst, int64_t image_stride,
    const int64_t* po, const int64_t* co) {
  const int64_t MR = kernel.mr;
  few_pixels_channel_rows(
      kernel, vec_isa, images, pixels, view, channels, taps, static_cast<const T*>(nullptr),
      dst, image_stride, po, co, at::get_num_threads(), nullptr,
      [&](int64_t j, int64_t pc, int64_t kc, const T* bp, T* c, int64_t ldc, bool acc) {
        kernel.fn(kc, panels + j * taps + pc * MR, bp, c, ldc, acc);
      });
}

// out(n, pixel i, channel j) = bias[j] + sum_t patch(n)(i, t) * w[wo[j] + to[t]]
// for j < channels, written to dst + n * image_stride + po[i] + co[j];
// view(n) is image n's patch matrix (pack.h), taps in its order.
// pack_t: bfloat16 pairs or acc_t (microkernel.h). With `epilogue` (low
// precision outputs), the bias and activation are applied in acc_t before
// the store rounds.
template <typename scalar_t, typename acc_t, typename pack_t, typename View>
void gemm_few_pixels(
    int vec_isa, const GemmKernel<acc_t, pack_t>& kernel, int64_t images, int64_t pixels,
    View&& view, const scalar_t* w, const int64_t* wo, int64_t channels,
    const int64_t* to, int64_t taps, const acc_t* bias, scalar_t* dst,
    int64_t image_stride, const int64_t* po, const int64_t* co,
    const Epilogue* epilogue = nullptr) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t threads = at::get_num_threads();
  // In place where the weights are the panels' type: float, or bfloat16
  // pairs when every depth block is whole pairs (an even tap count).
  if constexpr (std::is_same_v<scalar_t, pack_t>) {
    bool in_place = kPackPairs<pack_t> == 1 || taps % 2 == 0;
    for (int64_t t = 0; t < taps && in_place; ++t) in_place = to[t] == to[0] + t;
    if (in_place) {
      gemm_few_pixels_rows(kernel, vec_isa, images, pixels, view, w + to[0], wo, channels,
                           taps, bias, dst, image_stride, po, co, threads, epilogue);
      return;
    }
  }
  const int64_t rows = round_up(images * pixels, MR);
  const int64_t part = round_up((channels + threads - 1) / threads, NR);
  const int64_t parts = (channels + part - 1) / part;
  const pack_t* const afull = pack_all_images<pack_t>(vec_isa, view, images, pixels, taps, KC, MR);
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    acc_t* const cbuf = scratch<acc_t>(0, rows * part);
    pack_t* const bbuf = scratch<pack_t>(1, part * KC);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t j0 = p * part, nj = std::min(part, channels - j0);
      auto pack_a = [&](int64_t, int64_t, int64_t pc, int64_t kc) {
        return Panels<pack_t>{afull + pc * rows, MR * packed_depth<pack_t>(kc)};
      };
      auto pack_b = [&](int64_t, int64_t, int64_t pc, int64_t kc) {
        pack_table(w, wo + j0, nj, to + pc, kc, NR, bbuf);
        return Panels<pack_t>{bbuf, NR * packed_depth<pack_t>(kc)};
      };
      gemm_packed(kernel, images * pixels, nj, taps, Blocking{rows, part, KC}, pack_a, pack_b,
                  cbuf, part, false);
      const acc_t* none = nullptr;
      for (int64_t n = 0; n < images; ++n) {
        acc_t* c = cbuf + n * pixels * part;
        const acc_t* cb = bias ? bias + j0 : nullptr;
        if (epilogue && bias_activation_in_place(c, part, pixels, nj, none, cb, *epilogue)) cb = none;
        store_tile(c, part, pixels, nj, po, co + j0, none, cb, dst + n * image_stride);
      }
    }
  });
}

}  // namespace conv_ext::cpu

namespace conv_ext::cpu {

// The grad weight of the same layers: dW[K x taps] = dy[K x pixels] *
// patches[pixels x taps] with all images' pixels as one depth block, so
// each element of dW is written once, in place (the general path sums into
// a transposed buffer and transposes it: 9.4 MB twice more for a 512 ->
// 512 3 x 3 kernel). dy's rows are read in place by the row-pointer
// micro-kernel after one copy into [K][images * pixels]; the taps are
// split between the threads, each packing its own patch panels.
// Up to 512 pixels in the batch: batch 8 at 7 x 7 (392) gains as much as
// the smaller layers did. 2 threads, AMD EPYC Zen 3 (AVX2), min of 40
// calls interleaved with torch, general GEMM -> this path: 1 x 1 (8, 96,
// 7, 7) -> 576 1.20 -> 0.86 ms (torch 0.89); (8, 64, 7, 7) -> 384 0.60 ->
// 0.35 (0.40); (8, 160, 7, 7) -> 960 2.27 -> 1.86 (1.86); 3 x 3 (8, 256, 7,
// 7) -> 512 1.64 -> 1.02 (1.04).
constexpr int64_t kFewPixelDepth = 512;

// c[mv x nv] (leading dimension ldc) = a's rows times the packed panel bp
// (kc deep), plus c where accumulate; a tile short of MR x NR goes through
// `edge` (MR x NR) so the micro-kernel never writes past it.
template <typename T>
inline void rows_tile_into(
    const GemmKernel<T>& kernel, int64_t kc, const T* const* a, const T* bp, int64_t mv,
    int64_t nv, T* c, int64_t ldc, bool accumulate, T* edge) {
  const int64_t MR = kernel.mr, NR = kernel.nr;
  if (mv == MR && nv == NR) {
    kernel.rows_fn(kc, a, bp, nullptr, 0, c, ldc, accumulate);
    return;
  }
  kernel.rows_fn(kc, a, bp, nullptr, 0, edge, NR, false);
  for (int64_t m = 0; m < mv; ++m)
    for (int64_t j = 0; j < nv; ++j)
      c[m * ldc + j] = accumulate ? c[m * ldc + j] + edge[m * NR + j] : edge[m * NR + j];
}

inline bool few_pixels_weight_grad(int64_t images, int64_t pixels, int64_t taps, int64_t NR) {
  return images * pixels <= kFewPixelDepth && taps >= 2 * NR * at::get_num_threads();
}

// dw (dense K x taps) = sum over images n and pixels i of
// dy(n)[k][i] * patch(n)(i, t); dy(n) + k * dk + i * di addresses dy.
template <typename T, typename View, typename Dy>
void weight_grad_few_pixels(
    const GemmKernel<T>& kernel, int vec_isa, int64_t images, int64_t pixels, View&& view,
    Dy&& dy, int64_t K, int64_t taps, T* dw) {
  const int64_t MR = kernel.mr, NR = kernel.nr, depth = images * pixels;
  std::vector<T> rows(K * depth);
  at::parallel_for(0, K, grain_for(depth), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k)
      for (int64_t n = 0; n < images; ++n)
        for (int64_t i = 0; i < pixels; ++i) rows[k * depth + n * pixels + i] = dy(n, k, i);
  });
  // Few tap panels (1 x 1 layers: 160 taps are 5 panels, cut 3 + 2) are
  // not split between the threads, the output channels are: each thread
  // then packs every tap's panel, at most depth x 256 values.
  const int64_t threads = at::get_num_threads();
  const int64_t tpanels = (taps + NR - 1) / NR;
  const int64_t tparts = tpanels >= 4 * threads ? threads : 1;
  const int64_t kparts = std::max<int64_t>(1, threads / tparts);
  const int64_t tpart = round_up((taps + tparts - 1) / tparts, NR);
  const int64_t kpart = round_up((K + kparts - 1) / kparts, MR);
  const int64_t tcount = (taps + tpart - 1) / tpart, kcount = (K + kpart - 1) / kpart;
  at::parallel_for(0, tcount * kcount, 1, [&](int64_t begin, int64_t end) {
    T* const bbuf = scratch<T>(1, depth * tpart);
    T edge[6 * 64];  // mr x nr of the largest tile
    for (int64_t p = begin; p < end; ++p) {
      const int64_t t0 = (p / kcount) * tpart, nt = std::min(tpart, taps - t0);
      const int64_t k0 = (p % kcount) * kpart, k1 = std::min(K, k0 + kpart);
      pack_im2col_images<T, T>(vec_isa, view, pixels, 0, depth, t0, nt, NR, bbuf);
      for (int64_t jr = 0; jr < nt; jr += NR) {
        const int64_t nv = std::min(NR, nt - jr);
        const T* bp = bbuf + jr * depth;
        for (int64_t ir = k0; ir < k1; ir += MR) {
          const int64_t mv = std::min(MR, k1 - ir);
          const T* a[6];
          for (int64_t m = 0; m < MR; ++m)  // rows past the part repeat its last
            a[m] = rows.data() + (ir + std::min(m, mv - 1)) * depth;
          rows_tile_into(kernel, depth, a, bp, mv, nv, dw + ir * taps + t0 + jr, taps, false, edge);
        }
      }
    }
  });
}

}  // namespace conv_ext::cpu

namespace conv_ext::cpu {

// The grad weight of 1 x 1, stride-1 NCHW layers with many pixels (the
// expansions and projections of MobileNet and RegNet on 56 x 56 and 28 x 28
// planes): dW[K x C] = sum over images n of dy(n)[K x PQ] * x(n)[C x PQ]^T
// as the GEMM above, but in depth blocks of KC pixels of one image: dy's
// rows are read in place (a plane is a contiguous run of PQ), only x is
// packed, into NR-wide panels of channels, and each block adds into dW.
// The general path packs both operands and transposes its result; with
// 16-32 channels its transposing pack of dy was most of the time (2
// threads, AMD EPYC Zen 3, AVX2: (8, 16, 56, 56) -> 96 5.4 ms, torch 3.3).
// The output channels are split between the threads (whole MR-row tiles),
// each packing every panel of x, or, with fewer than 4 tiles a thread, the
// panels of x are (each thread packing its own; (8, 32, 56, 56) -> 16, 3
// tiles: 1.58 -> 1.0 ms). Every element's sum runs over the same blocks
// in the same order whatever the thread count.
inline bool weight_grad_1x1_by_rows(int64_t images, int64_t pixels, int64_t K) {
  return images * pixels > kFewPixelDepth && K >= 12;
}

// dw (dense K x C) = sum_n dy(n) * x(n)^T; dy(n) plane k at dy + n * dn +
// k * dk (PQ contiguous values), view(n) image n's 1 x 1 patch matrix.
template <typename T, typename View>
void weight_grad_1x1_rows(
    const GemmKernel<T>& kernel, int vec_isa, int64_t images, int64_t PQ, View&& view,
    const T* dy, int64_t dn, int64_t dk, int64_t K, int64_t C, T* dw) {
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t threads = at::get_num_threads();
  const int64_t tiles = (K + MR - 1) / MR, panels = (C + NR - 1) / NR;
  const int64_t cparts = tiles >= 4 * threads ? 1 : std::min(threads, panels);
  const int64_t kparts = std::min(tiles, std::max<int64_t>(1, threads / cparts));
  const int64_t blocks_per_image = (PQ + KC - 1) / KC;
  at::parallel_for(0, kparts * cparts, 1, [&](int64_t begin, int64_t end) {
    T* const bbuf = scratch<T>(1, round_up(C, NR) * KC);
    T edge[6 * 64];  // mr x nr of the largest tile
    for (int64_t part = begin; part < end; ++part) {
      const int64_t kp = part / cparts, cp = part % cparts;
      const int64_t k0 = kp * tiles / kparts * MR;
      const int64_t k1 = std::min(K, (kp + 1) * tiles / kparts * MR);
      const int64_t c0 = cp * panels / cparts * NR;
      const int64_t c1 = std::min(C, (cp + 1) * panels / cparts * NR);
      for (int64_t blk = 0; blk < images * blocks_per_image; ++blk) {
        const int64_t n = blk / blocks_per_image, i0 = blk % blocks_per_image * KC;
        const int64_t kc = std::min(KC, PQ - i0);
        const bool accumulate = blk > 0;
        pack_im2col_images<T, T>(vec_isa, view, PQ, n * PQ + i0, kc, c0, c1 - c0, NR, bbuf);
        for (int64_t jr = c0; jr < c1; jr += NR) {
          const int64_t nv = std::min(NR, c1 - jr);
          const T* bp = bbuf + (jr - c0) * kc;
          for (int64_t ir = k0; ir < k1; ir += MR) {
            const int64_t mv = std::min(MR, k1 - ir);
            const T* a[6];
            for (int64_t m = 0; m < MR; ++m)  // rows past the part repeat its last
              a[m] = dy + n * dn + (ir + std::min(m, mv - 1)) * dk + i0;
            rows_tile_into(kernel, kc, a, bp, mv, nv, dw + ir * C + jr, C, accumulate, edge);
          }
        }
      }
    }
  });
}

}  // namespace conv_ext::cpu
