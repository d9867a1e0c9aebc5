#include "activation.h"

#include <c10/util/Exception.h>

namespace conv_ext {

Epilogue make_epilogue(const std::string& activation, double negative_slope) {
  Epilogue e;
  e.negative_slope = negative_slope;
  if (activation == "none") {
    e.act = Activation::None;
  } else if (activation == "relu") {
    e.act = Activation::ReLU;
  } else if (activation == "leaky_relu") {
    e.act = Activation::LeakyReLU;
    TORCH_CHECK(
        negative_slope >= 0, "expected negative_slope >= 0 for a fused ",
        "leaky_relu (its gradient is read off the output), got ",
        negative_slope);
  } else if (activation == "sigmoid") {
    e.act = Activation::Sigmoid;
  } else if (activation == "tanh") {
    e.act = Activation::Tanh;
  } else {
    TORCH_CHECK(
        false, "expected activation to be one of 'none', 'relu', ",
        "'leaky_relu', 'sigmoid', 'tanh', got '", activation, "'");
  }
  return e;
}

}  // namespace conv_ext
