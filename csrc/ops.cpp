// The op schemas, in one place. Kernels register per device at the bottom of
// their own files (csrc/cpu/, csrc/cuda/); the Python layer adds fake kernels
// and autograd (conv_ext/_ops.py).
#include <Python.h>
#include <torch/library.h>

// Importing conv_ext._C loads this library, which runs the registrations.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(conv_ext, m) {
  m.def(
      "conv2d_forward(Tensor input, Tensor weight, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def(
      "conv2d_backward_input(Tensor grad_output, Tensor weight, "
      "int[4] input_size, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups) -> Tensor");
  m.def(
      "conv2d_backward_weight(Tensor grad_output, Tensor input, "
      "int[4] weight_size, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups) -> Tensor");
  m.def("conv2d_backward_bias(Tensor grad_output) -> Tensor");
  // conv2d_forward with an activation applied in the kernel's epilogue
  // ('none', 'relu', 'leaky_relu', 'sigmoid', 'tanh'), and the activation's
  // gradient computed from that output.
  m.def(
      "conv2d_forward_activation(Tensor input, Tensor weight, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "str activation, float negative_slope) -> Tensor");
  m.def(
      "activation_backward(Tensor grad_output, Tensor output, str activation, "
      "float negative_slope) -> Tensor");
}
