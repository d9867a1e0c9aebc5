// Whether float32 convolutions may run on TF32 tensor cores, read at call
// time from torch.backends.cudnn.allow_tf32 (in torch's newer spelling,
// torch.backends.cudnn.conv.fp32_precision), as nn.Conv2d reads it.
#pragma once

#include <ATen/Context.h>

namespace conv_ext::cuda {

inline bool tf32_allowed() {
  return at::globalContext().allowTF32CuDNN(at::Float32Op::CONV);
}

}  // namespace conv_ext::cuda
