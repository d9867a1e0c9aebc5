// Activations fused into the forward kernels' epilogue, and their gradients,
// written once for host and device code.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <string>

namespace conv_ext {

enum class Activation : int { None, ReLU, LeakyReLU, Sigmoid, Tanh };

// What a forward kernel applies to each accumulator before its store.
struct Epilogue {
  Activation act = Activation::None;
  double negative_slope = 0.01;  // LeakyReLU only
};

// "none", "relu", "leaky_relu", "sigmoid" or "tanh"; anything else raises a
// RuntimeError naming the argument. LeakyReLU needs negative_slope >= 0 so
// that its gradient can be read off the activated output (as torch's
// in-place leaky_relu_ requires).
Epilogue make_epilogue(const std::string& activation, double negative_slope);

template <typename T>
C10_HOST_DEVICE inline T activate(T v, const Epilogue& e) {
  switch (e.act) {
    case Activation::ReLU:
      return v > T(0) ? v : T(0);
    case Activation::LeakyReLU:
      return v > T(0) ? v : v * static_cast<T>(e.negative_slope);
    case Activation::Sigmoid:
      return T(1) / (T(1) + std::exp(-v));
    case Activation::Tanh:
      return std::tanh(v);
    default:
      return v;
  }
}

// d activation / d pre-activation, from the activated value y alone, so
// backward needs only the forward's output, not a second copy of its input.
template <typename T>
C10_HOST_DEVICE inline T activation_grad(T y, const Epilogue& e) {
  switch (e.act) {
    case Activation::ReLU:
      return y > T(0) ? T(1) : T(0);
    case Activation::LeakyReLU:
      return y > T(0) ? T(1) : static_cast<T>(e.negative_slope);
    case Activation::Sigmoid:
      return y * (T(1) - y);
    case Activation::Tanh:
      return T(1) - y * y;
    default:
      return T(1);
  }
}

}  // namespace conv_ext
