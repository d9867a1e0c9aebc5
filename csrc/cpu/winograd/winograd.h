// Winograd's F(2 x 2, 3 x 3) for stride-1 3 x 3 convolutions: the
// forward, the grad input (the correlation of grad_output with the flipped,
// transposed kernel) and the grad weight (the transposed transforms, below). Per 2 x 2 output tile it
// replaces 36 multiply-adds per channel pair by 16 products in a transformed
// domain (winograd_transforms.h), 2.25x fewer, and those 16 products are 16
// independent GEMMs over channels:
//   M[x][k][tile] = sum_c U[x][k][c] * V[x][c][tile],   x = 0 .. 15
// U = the transformed kernel (once per call), V = the transformed input
// tiles. The GEMMs run on the packed micro-kernels (gemm_packed.h): U is
// written straight into A panels, a block of tiles' V straight into B panels,
// so there is no im2col at all. A block of tiles (they run across rows and
// images) is transformed, multiplied and transformed back by one thread
// while its V and M stay in L2.
//
// Accuracy: the transforms only add, subtract and halve, so the result stays
// within a few float32 ulps of the direct sum (tests/test_cpu_kernels.py
// compares both against float64). bfloat16 and half data (T) are widened
// to float as the tiles are gathered and rounded once as they are
// scattered to the output: everything between runs in float32.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "../../activation.h"
#include "../isa.h"

namespace conv_ext::cpu {

// out[n][k][p][q] = bias[k] + sum_{c, r, s} tap(k, c, r, s) *
//                   src[n][c][p + r dil - pad_h][q + s dil - pad_w]  (0 outside)
// with tap(k, c, r, s) = taps[k * tk + c * tc + r * tr + s * ts] (strides
// may be negative: the grad input reads the kernel flipped). A dilation d
// needs H, W, P, Q and the paddings divisible by d: the problem is then d^2
// undilated ones on the phase sub-grids (every d-th row and column, offset
// (a, b)), whose transformed kernel is the same. T: float, c10::BFloat16
// or c10::Half.
template <typename T>
struct WinogradProblem {
  const T* src;
  int64_t sn, sc, sh;  // source strides; columns are unit-stride
  int64_t N, C, H, W;
  const T* taps;
  int64_t tk, tc, tr, ts;
  const float* bias;  // K values or null
  T* out;
  int64_t on, ok, oh;  // output strides; columns are unit-stride
  int64_t K, P, Q, pad_h, pad_w;
  int64_t dil = 1;
  const Epilogue* epilogue = nullptr;  // fused activation of the output, or none
};

template <typename T>
void winograd_correlate(const WinogradProblem<T>& pb, Isa isa);

// The weight gradient of the forward WinogradProblem pb (its taps and bias
// unused), from grad (pb.out's layout, N x K x P x Q):
//   dW[k][c] = G^T ( sum_tiles (A dY A^T) .* (B^T d B) ) G,
// 16 GEMMs over the tiles, written to dw (dense K x C x 3 x 3). The sums run
// over tile blocks in a fixed order, each x on one thread: deterministic
// for any thread count.
template <typename T>
void winograd_weight_grad(const WinogradProblem<T>& pb, const T* grad, T* dw, Isa isa);

// The tile transforms (winograd_transforms.h) built for AVX2 or AVX-512
// (winograd_vec.cpp); Winograd runs only where one of them does.
struct WinogradKernels {
  void (*input)(const float* d, int64_t ldd, int64_t len, float* v, int64_t ldv);
  void (*output)(const float* m, int64_t ldm, int64_t len, float bias, float* y,
                 int64_t ldy);
  void (*kernel)(const float* g, int64_t ldg, int64_t len, float* u, int64_t ldu);
  // The grad weight's: grad_output tiles' transform, and the kernel's.
  void (*grad_output)(const float* d, int64_t ldd, int64_t len, float* m, int64_t ldm);
  void (*kernel_grad)(const float* S, int64_t lds, int64_t len, float* dg, int64_t ldo);
};

const WinogradKernels& winograd_kernels(Isa isa);

// The copies between the data (T) and the float tiles, per data type: the
// input tiles, the output tiles, and the grad weight's grad_output tiles.
template <typename T>
struct WinogradCopies {
  void (*gather)(const T* plane, int64_t sh, int64_t sw, int64_t H, int64_t W,
                 int64_t h0, int64_t w0, int64_t len, float* d, int64_t ldd);
  void (*scatter)(const float* y, int64_t ldy, int64_t len, T* y0, T* y1,
                  int64_t q_end, int64_t sw);
  void (*gather_output)(const T* plane, int64_t sh, int64_t sw, int64_t P, int64_t Q,
                        int64_t p0, int64_t q0, int64_t len, float* d, int64_t ldd);
};

template <typename T>
const WinogradCopies<T>& winograd_copies(Isa isa);
template <>
const WinogradCopies<float>& winograd_copies<float>(Isa isa);
template <>
const WinogradCopies<c10::BFloat16>& winograd_copies<c10::BFloat16>(Isa isa);
template <>
const WinogradCopies<c10::Half>& winograd_copies<c10::Half>(Isa isa);

}  // namespace conv_ext::cpu
