// Cache-blocked GEMM over packed panels (the GotoBLAS / BLIS loop nest):
//   C[M x N] (+)= A[M x K] * B[K x N]
// The caller supplies the packers, which is where each convolution pass puts
// its im2col: an A or B panel is gathered straight from the strided tensor,
// so no full im2col matrix ever exists. A packer returns the panels of one
// (rows, depth) block; pre-packed operands (weights) just point into their
// buffer.
//
// Loop order pc -> ic -> jc -> jr -> ir: one packed A block (mc x kc) stays
// in L2 while every B micro-panel (kc x nr, 16-32 KiB) is reused from L1 by
// mc/mr micro-kernel calls. With b_outer the ic and jc loops swap, so a B
// block that is costly to pack (or shared by all of A) is packed once per
// (pc, jc) instead of once per ic.
#pragma once

#include <algorithm>
#include <cstdint>

#include "microkernel.h"

namespace conv_ext::cpu {

// Micro-panel p of a packed block starts at ptr + p * stride; each holds
// depth x width values, width = MR (A) or NR (B).
template <typename T>
struct Panels {
  const T* ptr;
  int64_t stride;
};

struct Blocking {
  int64_t MC, NC, KC;  // MC a multiple of MR, NC of NR
};

// C is M x N with leading dimension ldc; it may be the destination tensor
// itself. Full tiles go straight to C; edge tiles through a local tile, so
// nothing past M x N is written (the packed panels are zero-padded, so the
// kernel always runs full tiles). T is C's type, P the panels' (bfloat16
// pairs for a float C, else T); the packers return Panels<P>.
template <typename T, typename P, typename PackA, typename PackB>
void gemm_packed(
    const GemmKernel<T, P>& kernel,
    int64_t M,
    int64_t N,
    int64_t K,
    const Blocking& blk,
    PackA&& pack_a,
    PackB&& pack_b,
    T* C,
    int64_t ldc,
    bool accumulate,
    bool b_outer = false) {
  const int64_t MR = kernel.mr, NR = kernel.nr;
  constexpr int64_t kMaxTile = 6 * 32;  // the largest mr x nr of microkernel.h
  auto tile = [&](const Panels<P>& a, const Panels<P>& b, int64_t ic,
                  int64_t mc, int64_t jc, int64_t nc, int64_t kc, bool acc) {
    for (int64_t jr = 0; jr < nc; jr += NR) {
      const P* bp = b.ptr + (jr / NR) * b.stride;
      const int64_t nv = std::min(NR, N - jc - jr);
      for (int64_t ir = 0; ir < mc; ir += MR) {
        const int64_t mv = std::min(MR, M - ic - ir);
        T* c = C + (ic + ir) * ldc + jc + jr;
        const P* ap = a.ptr + (ir / MR) * a.stride;
        if (mv == MR && nv == NR) {
          kernel.fn(kc, ap, bp, c, ldc, acc);
          continue;
        }
        T t[kMaxTile];
        if (acc)
          for (int64_t i = 0; i < mv; ++i)
            for (int64_t j = 0; j < nv; ++j) t[i * NR + j] = c[i * ldc + j];
        kernel.fn(kc, ap, bp, t, NR, acc);
        for (int64_t i = 0; i < mv; ++i)
          for (int64_t j = 0; j < nv; ++j) c[i * ldc + j] = t[i * NR + j];
      }
    }
  };
  for (int64_t pc = 0; pc < K; pc += blk.KC) {
    const int64_t kc = std::min(blk.KC, K - pc);
    const bool acc = accumulate || pc > 0;
    if (b_outer) {
      for (int64_t jc = 0; jc < N; jc += blk.NC) {
        const int64_t nc = std::min(blk.NC, N - jc);
        const Panels<P> b = pack_b(jc, nc, pc, kc);
        for (int64_t ic = 0; ic < M; ic += blk.MC) {
          const int64_t mc = std::min(blk.MC, M - ic);
          tile(pack_a(ic, mc, pc, kc), b, ic, mc, jc, nc, kc, acc);
        }
      }
    } else {
      for (int64_t ic = 0; ic < M; ic += blk.MC) {
        const int64_t mc = std::min(blk.MC, M - ic);
        const Panels<P> a = pack_a(ic, mc, pc, kc);
        for (int64_t jc = 0; jc < N; jc += blk.NC) {
          const int64_t nc = std::min(blk.NC, N - jc);
          tile(a, pack_b(jc, nc, pc, kc), ic, mc, jc, nc, kc, acc);
        }
      }
    }
  }
}

inline int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

}  // namespace conv_ext::cpu
