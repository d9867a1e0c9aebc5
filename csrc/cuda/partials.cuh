// The second pass of every chunked reduction (grad weight, grad bias): a
// scratch buffer of per-chunk partial sums, and the launch that adds them in
// chunk order into the destination.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>

#include "conv_params.cuh"
#include "launch.cuh"
#include "reductions.cuh"

namespace conv_ext::cuda {

// The scratch buffer: allocated from PyTorch's caching allocator on the
// current stream, so it is safe to release as soon as the launches are
// queued, and graph capture sees no cudaMalloc.
template <typename scalar_t>
at::Tensor partial_buffer(const at::Tensor& like, int64_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  return at::empty(
      {numel}, like.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
}

template <typename scalar_t, class Launch>
void launch_reduce_partials(
    const Launch& launch,
    const at::Tensor& partial,
    int64_t chunks,
    at::Tensor& out,
    Strides4 os,
    int64_t crs,
    int64_t rs,
    int64_t S) {
  ReducePartialsParams<scalar_t> p{};
  p.partial = partial.const_data_ptr<at::opmath_type<scalar_t>>();
  p.chunks = chunks;
  p.count = out.numel();
  p.out = out.mutable_data_ptr<scalar_t>();
  p.os = os;
  p.crs = crs;
  p.rs = rs;
  p.S = S;
  launch(reduce_partials_kernel<scalar_t>,
         grid_stride_blocks(p.count, kReduceThreads), kReduceThreads, p);
}

}  // namespace conv_ext::cuda
