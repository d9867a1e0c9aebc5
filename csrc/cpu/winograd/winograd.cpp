// The driver of the F(2 x 2, 3 x 3) Winograd convolution (winograd.h):
// transformed kernel once per call, then blocks of output tiles, each block
// transformed in, multiplied (16 GEMMs) and transformed out by one thread.
#include "winograd.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "../gemm/conv_gemm.h"
#include "../epilogue/epilogue.h"

namespace conv_ext::cpu {
namespace {

constexpr int64_t kXi = 16;  // transformed values per tile: 4 x 4

// A block's transformed input (16 * C floats per tile) stays within this
// many bytes, and its products (16 * K per tile) are made kProductBytes at
// a time, so both are still in L2 (2 MiB per core here) when the GEMMs and
// the output transform read them back.
constexpr int64_t kBlockBytes = 1 << 20;
constexpr int64_t kProductBytes = 1 << 19;

// U[x] = (G g G^T)[x] for every (k, c), written as the A panels of the GEMM
// of x: element (k, c) at (k / MR) * MR * C + c * MR + k % MR, rows past K
// zero. The kernels of a panel are first gathered tap by tap, so the
// transform itself runs on unit-stride runs in the panel's own order.
template <typename T>
void transform_taps(
    const WinogradProblem<T>& pb, const WinogradKernels& wk, int64_t MR, int64_t Kpad,
    float* U) {
  const int64_t C = pb.C, len = MR * C;
  at::parallel_for(0, Kpad / MR, grain_for(len * 64), [&](int64_t begin, int64_t end) {
    float* const g = scratch<float>(2, 9 * len);
    for (int64_t panel = begin; panel < end; ++panel) {
      for (int64_t kk = 0; kk < MR; ++kk) {
        const int64_t k = panel * MR + kk;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t rs = 0; rs < 9; ++rs)
            g[rs * len + c * MR + kk] = k < pb.K
                ? static_cast<float>(
                      pb.taps[k * pb.tk + c * pb.tc + (rs / 3) * pb.tr + (rs % 3) * pb.ts])
                : 0.f;
      }
      wk.kernel(g, len, len, U + panel * len, Kpad * C);
    }
  });
}

// Calls f(n, ty, tx0, len, tb) for the runs of tiles t0 .. t1-1 (numbered
// image by image, row by row) that lie in one tile row; tb is the run's
// first tile relative to t0.
template <typename F>
void for_tile_runs(int64_t t0, int64_t t1, int64_t TY, int64_t TX, F&& f) {
  for (int64_t t = t0; t < t1;) {
    const int64_t n = t / (TY * TX), ty = (t / TX) % TY, tx = t % TX;
    const int64_t len = std::min(TX - tx, t1 - t);
    f(n, ty, tx, len, t - t0);
    t += len;
  }
}

// How the tiles are cut into blocks and the blocks' output channels into
// parts: a task is one part of one block. Blocks hold at most `fit` tiles;
// when there are fewer blocks than threads (a late layer: 7 x 7 images, 32
// tiles in all) each block's output channels are split, every part
// transforming the block's input for itself (cheap next to its GEMMs).
struct Split {
  int64_t nb, blocks, parts;
};

// Chooses the split whose busiest thread runs the fewest padded tiles
// (blocks round up to whole NR-tile panels, each part also reads its share
// of U, counted as 8 tiles), the larger block on ties.
Split split_tiles(int64_t T, int64_t fit, int64_t NR, int64_t threads) {
  Split best{1, T, 1};
  double best_cost = 0;
  for (int64_t nb = std::min(fit, T); nb >= 1; --nb) {
    const int64_t blocks = (T + nb - 1) / nb;
    const int64_t parts = std::max<int64_t>(1, threads / blocks);
    const int64_t rounds = (blocks * parts + threads - 1) / threads;
    const double cost = double(rounds) * double(round_up(nb, NR) + 8) / double(parts);
    if (nb == std::min(fit, T) || cost < best_cost) {
      best = {nb, blocks, parts};
      best_cost = cost;
    }
  }
  return best;
}

}  // namespace

template <typename scalar_t>
void winograd_correlate(const WinogradProblem<scalar_t>& pb, Isa isa) {
  // Named in torch.profiler's trace: the tests check that the path runs.
  RECORD_FUNCTION("conv_ext::cpu::winograd_correlate", std::vector<c10::IValue>());
  const WinogradKernels& wk = winograd_kernels(isa);
  const WinogradCopies<scalar_t>& wc = winograd_copies<scalar_t>(isa);
  const GemmKernel<float> kernel = select_microkernel<float>(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t C = pb.C, K = pb.K;
  // Image i of the tiles is phase sub-grid (a, b) of image n: i = (n d + a) d + b.
  const int64_t d = pb.dil, P = pb.P / d, Q = pb.Q / d, H = pb.H / d, W = pb.W / d;
  const int64_t pad_h = pb.pad_h / d, pad_w = pb.pad_w / d;
  const int64_t TY = (P + 1) / 2, TX = (Q + 1) / 2, T = pb.N * d * d * TY * TX;
  auto src_of = [&](int64_t i) { return pb.src + i / (d * d) * pb.sn + i / d % d * pb.sh + i % d; };
  auto out_of = [&](int64_t i) { return pb.out + i / (d * d) * pb.on + i / d % d * pb.oh + i % d; };
  const int64_t Kpad = round_up(K, MR);
  float* const U = scratch<float>(3, kXi * Kpad * C);
  transform_taps(pb, wk, MR, Kpad, U);

  const int64_t fit = std::max<int64_t>(NR, kBlockBytes / 4 / (kXi * C));
  const Split split = split_tiles(T, fit, NR, at::get_num_threads());
  const int64_t nb = split.nb;
  const int64_t ld = round_up(nb, NR);  // row length of every per-block array
  const int64_t kb = std::min(Kpad, std::max<int64_t>(MR, kProductBytes / 4 / (kXi * ld) / MR * MR));
  const int64_t kpart = round_up((K + split.parts - 1) / split.parts, MR);

  at::parallel_for(0, split.blocks * split.parts, 1, [&](int64_t begin, int64_t end) {
    float* const V = scratch<float>(1, kXi * C * ld);
    float* const M = scratch<float>(0, kXi * kb * ld);
    float* const D = scratch<float>(2, kXi * ld + 4 * ld);  // gathered tiles, then outputs
    float* const Y = D + kXi * ld;
    int64_t transformed = -1;  // the block whose input V holds
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / split.parts;
      const int64_t k_lo = task % split.parts * kpart, k_hi = std::min(K, k_lo + kpart);
      const int64_t t0 = b * nb, t1 = std::min(T, t0 + nb), nt = t1 - t0;
      if (k_lo >= k_hi) continue;
      if (b != transformed) {
        // Tiles past nt in the last panel transform zeros into zeros.
        for (int64_t x = 0; x < kXi; ++x) std::fill(D + x * ld + nt, D + x * ld + round_up(nt, NR), 0.f);
        for (int64_t c = 0; c < C; ++c) {
          for_tile_runs(t0, t1, TY, TX, [&](int64_t n, int64_t ty, int64_t tx0, int64_t len, int64_t tb) {
            wc.gather(src_of(n) + c * pb.sc, pb.sh * d, d, H, W, 2 * ty - pad_h,
                      2 * tx0 - pad_w, len, D + tb, ld);
          });
          // Into the B panels of each x: tile t of channel c at
          // x * C * ld + (t / NR) * NR * C + c * NR + t % NR.
          for (int64_t p = 0; p < nt; p += NR)
            wk.input(D + p, ld, NR, V + p * C + c * NR, C * ld);
        }
        transformed = b;
      }
      for (int64_t k0 = k_lo; k0 < k_hi; k0 += kb) {
        const int64_t kn = std::min(kb, k_hi - k0);
        const Blocking blk{std::min(round_up(kn, MR), kWeightRows), ld, kernel.kc};
        for (int64_t x = 0; x < kXi; ++x) {
          const float* Ux = U + x * Kpad * C + k0 * C;
          const float* Vx = V + x * C * ld;
          auto pack_a = [&](int64_t ic, int64_t, int64_t pc, int64_t) {
            return Panels<float>{Ux + ic * C + pc * MR, MR * C};
          };
          auto pack_b = [&](int64_t jc, int64_t, int64_t pc, int64_t) {
            return Panels<float>{Vx + jc * C + pc * NR, NR * C};
          };
          gemm_packed(kernel, kn, nt, C, blk, pack_a, pack_b, M + x * kb * ld, ld, false,
                      /*b_outer=*/true);
        }
        for (int64_t k = k0; k < k0 + kn; ++k) {
          wk.output(M + (k - k0) * ld, kb * ld, nt, pb.bias ? pb.bias[k] : 0.f, Y, ld);
          for_tile_runs(t0, t1, TY, TX, [&](int64_t n, int64_t ty, int64_t tx0, int64_t len, int64_t tb) {
            scalar_t* y0 = out_of(n) + k * pb.ok + 2 * ty * pb.oh * d + 2 * tx0 * d;
            wc.scatter(Y + tb, ld, len, y0, 2 * ty + 1 < P ? y0 + pb.oh * d : nullptr,
                       Q - 2 * tx0, d);
          });
        }
        // The fused activation on the rows just written, still in cache.
        if (pb.epilogue != nullptr && pb.epilogue->act != Activation::None) {
          for_tile_runs(t0, t1, TY, TX, [&](int64_t n, int64_t ty, int64_t tx0, int64_t len, int64_t) {
            const int64_t cols = std::min(2 * len, Q - 2 * tx0);
            for (int64_t a = 0; a < 2 && 2 * ty + a < P; ++a)
              activate_tile(out_of(n) + k0 * pb.ok + (2 * ty + a) * pb.oh * d + 2 * tx0 * d, kn,
                            cols, pb.ok, d, *pb.epilogue);
          });
        }
      }
    }
  });
}

}  // namespace conv_ext::cpu

namespace conv_ext::cpu {

template <typename scalar_t>
void winograd_weight_grad(
    const WinogradProblem<scalar_t>& pb, const scalar_t* grad, scalar_t* dw, Isa isa) {
  RECORD_FUNCTION("conv_ext::cpu::winograd_weight_grad", std::vector<c10::IValue>());
  const WinogradKernels& wk = winograd_kernels(isa);
  const WinogradCopies<scalar_t>& wc = winograd_copies<scalar_t>(isa);
  const GemmKernel<float> kernel = select_microkernel<float>(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t C = pb.C, K = pb.K, Kpad = round_up(K, MR), Cpad = round_up(C, NR);
  const int64_t d = pb.dil, P = pb.P / d, Q = pb.Q / d, H = pb.H / d, W = pb.W / d;
  const int64_t pad_h = pb.pad_h / d, pad_w = pb.pad_w / d;
  const int64_t TY = (P + 1) / 2, TX = (Q + 1) / 2, T = pb.N * d * d * TY * TX;
  auto src_of = [&](int64_t i) { return pb.src + i / (d * d) * pb.sn + i / d % d * pb.sh + i % d; };
  auto grad_of = [&](int64_t i) { return grad + i / (d * d) * pb.on + i / d % d * pb.oh + i % d; };

  // Tiles per block: the depth of one GEMM call; each thread's panels of
  // its x values (A: K x TB, B: C x TB each) then take 2 MiB for 8 x values
  // of a 256 -> 256 layer.
  constexpr int64_t TB = 128;
  std::vector<float> S(kXi * K * C);  // S[x][k][c], accumulated block by block
  const int64_t xparts = std::min<int64_t>(kXi, at::get_num_threads());
  at::parallel_for(0, xparts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part) {
      const int64_t x0 = part * kXi / xparts, x1 = (part + 1) * kXi / xparts, nx = x1 - x0;
      // Zero-initialized: rows k >= K and columns c >= C are never written.
      std::vector<float> A(nx * Kpad * TB), Bp(nx * Cpad * TB);
      std::vector<float> D(kXi * TB), Z(kXi * TB);
      for (int64_t t0 = 0; t0 < T; t0 += TB) {
        const int64_t nt = std::min(TB, T - t0);
        // Products' gradients (A dY A^T) into A panels: (k, t) of x at
        // (k / MR) * MR * TB + t * MR + k % MR.
        for (int64_t k = 0; k < K; ++k) {
          for_tile_runs(t0, t0 + nt, TY, TX, [&](int64_t n, int64_t ty, int64_t tx0, int64_t len, int64_t tb) {
            wc.gather_output(grad_of(n) + k * pb.ok, pb.oh * d, d, P, Q, 2 * ty, 2 * tx0, len,
                             D.data() + tb, TB);
          });
          wk.grad_output(D.data(), TB, nt, Z.data(), TB);
          for (int64_t xi = 0; xi < nx; ++xi) {
            const float* z = Z.data() + (x0 + xi) * TB;
            float* a = A.data() + xi * Kpad * TB + k / MR * MR * TB + k % MR;
            for (int64_t t = 0; t < nt; ++t) a[t * MR] = z[t];
          }
        }
        // Transformed input tiles (B^T d B) into B panels: (c, t) of x at
        // (c / NR) * NR * TB + t * NR + c % NR.
        for (int64_t c = 0; c < C; ++c) {
          for_tile_runs(t0, t0 + nt, TY, TX, [&](int64_t n, int64_t ty, int64_t tx0, int64_t len, int64_t tb) {
            wc.gather(src_of(n) + c * pb.sc, pb.sh * d, d, H, W, 2 * ty - pad_h, 2 * tx0 - pad_w,
                      len, D.data() + tb, TB);
          });
          wk.input(D.data(), TB, nt, Z.data(), TB);
          for (int64_t xi = 0; xi < nx; ++xi) {
            const float* z = Z.data() + (x0 + xi) * TB;
            float* b = Bp.data() + xi * Cpad * TB + c / NR * NR * TB + c % NR;
            for (int64_t t = 0; t < nt; ++t) b[t * NR] = z[t];
          }
        }
        for (int64_t xi = 0; xi < nx; ++xi) {
          const float* Ax = A.data() + xi * Kpad * TB;
          const float* Bx = Bp.data() + xi * Cpad * TB;
          auto pack_a = [&](int64_t ic, int64_t, int64_t pc, int64_t) {
            return Panels<float>{Ax + ic * TB + pc * MR, MR * TB};
          };
          auto pack_b = [&](int64_t jc, int64_t, int64_t pc, int64_t) {
            return Panels<float>{Bx + jc * TB + pc * NR, NR * TB};
          };
          gemm_packed(kernel, K, C, nt, Blocking{std::min(Kpad, kWeightRows), Cpad, TB},
                      pack_a, pack_b, S.data() + (x0 + xi) * K * C, C, t0 > 0);
        }
      }
    }
  });
  // dW = G^T S G per (k, c); then (k, c, r, s) order.
  const int64_t pairs = K * C;
  at::parallel_for(0, (pairs + 255) / 256, 1, [&](int64_t begin, int64_t end) {
    float g[9 * 256];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t i0 = blk * 256, len = std::min<int64_t>(256, pairs - i0);
      wk.kernel_grad(S.data() + i0, pairs, len, g, 256);
      for (int64_t i = 0; i < len; ++i)
        for (int64_t rs = 0; rs < 9; ++rs) dw[(i0 + i) * 9 + rs] = static_cast<scalar_t>(g[rs * 256 + i]);
    }
  });
}

template void winograd_correlate<float>(const WinogradProblem<float>&, Isa);
template void winograd_correlate<c10::BFloat16>(const WinogradProblem<c10::BFloat16>&, Isa);
template void winograd_correlate<c10::Half>(const WinogradProblem<c10::Half>&, Isa);
template void winograd_weight_grad<float>(const WinogradProblem<float>&, const float*, float*,
                                          Isa);
template void winograd_weight_grad<c10::BFloat16>(
    const WinogradProblem<c10::BFloat16>&, const c10::BFloat16*, c10::BFloat16*, Isa);
template void winograd_weight_grad<c10::Half>(const WinogradProblem<c10::Half>&,
                                              const c10::Half*, c10::Half*, Isa);

}  // namespace conv_ext::cpu
