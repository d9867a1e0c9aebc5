// The patch packer for bfloat16 pair panels (pack.h, kPackPairs) on
// AVX-512 BF16 machines. Writing the pair layout element by element puts
// consecutive values of a run two apart, which no vector store does: a
// 32-pixel run became 32 scalar stores, and packing took 44 % of a
// r50_res2_3x3 forward + backward profile (1 thread), more than the
// vdpbf16ps kernel. So where the runs go across the panel rows (pixels of
// an NCHW row, channels of an NHWC pixel), a block is first packed plain, panels of [depth][width]
// 16-bit values as the float panels are (the same vectorized runs, crossing
// panels), in a per-thread buffer, then each panel is interleaved into pairs
// two rows at a time with a permute.
#include <algorithm>
#include <vector>

#include "pack.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CONV_EXT_AVX512BW __attribute__((target("avx512f,avx512bw,avx512vl")))
#define CONV_EXT_FLAT_AVX512BW __attribute__((target("avx512f,avx512bw,avx512vl"), flatten))
#define CONV_EXT_HAVE_X86 1
#else
#define CONV_EXT_AVX512BW
#define CONV_EXT_FLAT_AVX512BW
#define CONV_EXT_HAVE_X86 0
#endif

namespace conv_ext::cpu {
namespace {

// bfloat16 bits in a plain (unpaired) panel: kPackPairs is 1 for this type,
// and converting from c10::BFloat16 copies the bits.
struct Bf16Bits {
  uint16_t x;
  Bf16Bits() = default;
  constexpr explicit Bf16Bits(int zero) : x(static_cast<uint16_t>(zero)) {}
  Bf16Bits(c10::BFloat16 v) : x(v.x) {}  // NOLINT: the packers' static_cast
};
static_assert(sizeof(Bf16Bits) == 2);

}  // namespace

template <>
inline constexpr bool kBitCopy<Bf16Bits, c10::BFloat16> = true;

namespace {

// Rows y in [ya, yb) of a plain panel (plain row y - ya) into the pair panel
// `out` (width rows): out[(y / 2) * 2 width + 2 x + y % 2] = plain[y - ya][x].
CONV_EXT_AVX512BW void interleave(
    const uint16_t* plain, int64_t ya, int64_t yb, int64_t width, uint16_t* out) {
  int64_t y = ya;
  if (y % 2 != 0 && y < yb) {  // second half of a pair begun by the previous call
    const uint16_t* r = plain + (y - ya) * width;
    uint16_t* o = out + (y / 2) * 2 * width + 1;
    for (int64_t x = 0; x < width; ++x) o[2 * x] = r[x];
    ++y;
  }
#if CONV_EXT_HAVE_X86
  if (width == 32) {
    const __m512i lo = _mm512_set_epi16(
        47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
        39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi = _mm512_set_epi16(
        63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24,
        55, 23, 54, 22, 53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);
    for (; y + 1 < yb; y += 2) {
      const __m512i r0 = _mm512_loadu_si512(plain + (y - ya) * 32);
      const __m512i r1 = _mm512_loadu_si512(plain + (y + 1 - ya) * 32);
      uint16_t* o = out + y * 32;
      _mm512_storeu_si512(o, _mm512_permutex2var_epi16(r0, lo, r1));
      _mm512_storeu_si512(o + 32, _mm512_permutex2var_epi16(r0, hi, r1));
    }
  }
  if (width < 16) {
    // A pair of rows is 2 width contiguous values on both sides, permuted
    // (out[2 x + h] = in[h width + x]): `groups` pairs of rows per vector.
    const int64_t group = 2 * width, groups = 32 / group, n = groups * group;
    alignas(64) uint16_t idx[32] = {};
    for (int64_t j = 0; j < n; ++j) {
      const int64_t r = j % group;
      idx[j] = static_cast<uint16_t>(j - r + (r % 2) * width + r / 2);
    }
    const __m512i perm = _mm512_load_si512(idx);
    const __mmask32 mask = static_cast<__mmask32>((uint64_t(1) << n) - 1);
    for (; y + 2 * groups <= yb; y += 2 * groups) {
      const __m512i v = _mm512_maskz_loadu_epi16(mask, plain + (y - ya) * width);
      _mm512_mask_storeu_epi16(out + y * width, mask, _mm512_permutexvar_epi16(perm, v));
    }
  }
#endif
  for (; y + 1 < yb; y += 2) {
    const uint16_t* r0 = plain + (y - ya) * width;
    const uint16_t* r1 = r0 + width;
    uint16_t* o = out + y * width;
    for (int64_t x = 0; x < width; ++x) {
      o[2 * x] = r0[x];
      o[2 * x + 1] = r1[x];
    }
  }
  if (y < yb) {  // first half of a pair the next call (or the padding) ends
    const uint16_t* r = plain + (y - ya) * width;
    uint16_t* o = out + y * width;
    for (int64_t x = 0; x < width; ++x) o[2 * x] = r[x];
  }
}

CONV_EXT_FLAT_AVX512BW void pack_pairs_avx512(
    const Im2col<c10::BFloat16>& g, int64_t m0, int64_t mlen, int64_t t0, int64_t tlen,
    bool pixels_x, int64_t width, c10::BFloat16* dst, int64_t depth_off,
    int64_t depth_total) {
  if (pixels_x == g.rsc) {
    // Runs go along the depth, where a pair's two steps are adjacent:
    // straight into the pairs (PanelBlock::run_y), no plain block.
    pack_im2col<c10::BFloat16, c10::BFloat16>(
        g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
    return;
  }
  const int64_t xlen = pixels_x ? mlen : tlen, ylen = pixels_x ? tlen : mlen;
  const int64_t depth = depth_total > 0 ? depth_total : ylen;
  const int64_t pdepth = packed_depth<c10::BFloat16>(depth);
  const int64_t panels = (xlen + width - 1) / width;
  thread_local std::vector<Bf16Bits> buf;
  if (static_cast<int64_t>(buf.size()) < panels * width * ylen) buf.resize(panels * width * ylen);
  Bf16Bits* const plain = buf.data();
  // One plain block (the runs cross panels as in the float packer), then
  // each of its panels interleaved into pairs.
  pack_im2col<Bf16Bits, c10::BFloat16>(g, m0, mlen, t0, tlen, pixels_x, width, plain);
  const int64_t ya = depth_off, yb = depth_off + ylen;
  for (int64_t i = 0; i < panels; ++i) {
    uint16_t* out = reinterpret_cast<uint16_t*>(dst + i * width * pdepth);
    interleave(reinterpret_cast<const uint16_t*>(plain + i * width * ylen), ya, yb, width, out);
    if (yb == depth && depth % 2 != 0) {  // the zero step of an odd depth
      uint16_t* o = out + (depth - 1) * width + 1;
      for (int64_t x = 0; x < width; ++x) o[2 * x] = 0;
    }
  }
}

}  // namespace

void pack_im2col_vec(
    int, const Im2col<c10::BFloat16>& g, int64_t m0, int64_t mlen, int64_t t0,
    int64_t tlen, bool pixels_x, int64_t width, c10::BFloat16* dst, int64_t depth_off,
    int64_t depth_total) {
  pack_pairs_avx512(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
}

}  // namespace conv_ext::cpu
