// Op schemas of the `dsconv` namespace and the Python module entry point.
// Backends register implementations with TORCH_LIBRARY_IMPL (cpu/register_cpu.cpp,
// cuda/register_cuda.cpp); the forward op's autograd in C++ (autograd.cpp); fake kernels and the
// backward op's autograd from Python (dsconv_ext/_fake.py, dsconv_ext/_autograd.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing dsconv_ext._C loads this library, which runs the static op registrations below.
// A bare module (no pybind11) keeps the build small; the ops are reached via torch.ops.dsconv.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(dsconv, m) {
  // padding is (top, bottom, left, right): asymmetric, so padding='same' with even kernels needs no copy.
  // Output shape and memory format follow F.conv2d(input, weight, bias, groups=C).
  m.def(
      "depthwise_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[4] padding, "
      "int[2] dilation) -> Tensor");
  // Returns (grad_input, grad_weight, grad_bias); an entry whose output_mask is false is an empty
  // tensor of shape (0,) (the Python autograd layer turns it into None).
  m.def(
      "depthwise_conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, "
      "int[4] padding, int[2] dilation, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}
