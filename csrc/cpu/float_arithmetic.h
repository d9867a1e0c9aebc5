// The data types of the CPU paths whose arithmetic is float32 (heuristic.h:
// float_arithmetic): float itself, and bfloat16 and half, which those paths
// widen to float in the copies they make (Winograd tiles, phase planes,
// blocked windows) and round once on the store.
#pragma once

#include <ATen/Dispatch.h>

// AT_DISPATCH over float, c10::BFloat16 and c10::Half: the body sees
// scalar_t; any other type raises naming `name`.
#define CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(type, name, ...)                 \
  AT_DISPATCH_SWITCH(type, name,                                           \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)             \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__)          \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__))
