"""ONNX translations of conv_ext's ops, for torch.onnx.export(dynamo=True).

The exporter turns each node of the exported program into ONNX through a
registry of onnxscript functions; conv_ext's ops are not in it, so they are
handed over through the exporter's documented `custom_translation_table`:

    torch.onnx.export(model, (x,), dynamo=True,
                      custom_translation_table=conv_ext.onnx_translations())

torch 2.13 builds that registry afresh on every export call from its own
tables, and has no public hook to add to it once, so the table has to be
passed. Only the ops an inference graph can hold are translated: the two
forward ops, and conv2d_backward_input, on which a transposed convolution's
forward is built; the other backward ops and activation_backward appear only
in training graphs. onnx and onnxscript are imported when the table is asked
for, so conv_ext itself does not depend on them.
"""
import torch

_ACTIVATIONS = ("none", "relu", "leaky_relu", "sigmoid", "tanh")


def _conv(op, input, weight, bias, stride, padding, dilation, groups):
    # ONNX pads are (top, left, bottom, right); conv_ext's are symmetric. The
    # asymmetric padding='same' of even kernels reaches the graph as its own
    # pad node before the op (functional.py), and so does padding_mode.
    attrs = dict(
        strides=[int(s) for s in stride],
        pads=[int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])],
        dilations=[int(d) for d in dilation],
        group=int(groups),
    )
    if bias is None:
        return op.Conv(input, weight, **attrs)
    return op.Conv(input, weight, bias, **attrs)


def _activate(op, y, activation, negative_slope):
    if activation == "relu":
        return op.Relu(y)
    if activation == "leaky_relu":
        return op.LeakyRelu(y, alpha=float(negative_slope))
    if activation == "sigmoid":
        return op.Sigmoid(y)
    if activation == "tanh":
        return op.Tanh(y)
    if activation == "none":
        return y
    raise ValueError(f"conv_ext ONNX export: expected activation to be one of {_ACTIVATIONS}, got {activation!r}")


def _conv_transpose(op, grad_output, weight, input_size, stride, padding, dilation, groups):
    # conv2d_backward_input is the transposed convolution of grad_output by
    # the forward's (K, C/groups, R, S) weight, which is ConvTranspose's
    # (in, out/groups, kH, kW) layout. It is in an inference graph when a
    # transposed convolution is built from it. input_size fixes the rows and
    # columns that a stride > 1 leaves ambiguous: output_padding.
    kernel = weight.shape[2:] if weight.shape is not None else None
    if kernel is None or not all(isinstance(k, int) for k in kernel):
        raise ValueError("conv_ext ONNX export: conv2d_backward_input needs a weight of known kernel size")
    output_padding = []
    for size, k, s, p, d in zip(input_size[2:], kernel, stride, padding, dilation):
        out = (size + 2 * p - d * (k - 1) - 1) // s + 1
        output_padding.append(int(size - ((out - 1) * s - 2 * p + d * (k - 1) + 1)))
    return op.ConvTranspose(
        grad_output, weight,
        strides=[int(s) for s in stride],
        pads=[int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])],
        dilations=[int(d) for d in dilation],
        output_padding=output_padding,
        group=int(groups),
    )


def onnx_translations():
    """{op overload: onnxscript function} for the conv_ext ops of inference
    graphs, to pass as torch.onnx.export(..., dynamo=True,
    custom_translation_table=...).

    conv2d_forward becomes one ONNX Conv (strides, pads, dilations, group);
    conv2d_forward_activation a Conv followed by Relu, LeakyRelu (alpha =
    negative_slope), Sigmoid or Tanh; conv2d_backward_input a ConvTranspose.
    All are written in opset 18 ops, which the exporter's default opset (20)
    includes."""
    try:
        from onnxscript import opset18 as op
    except ImportError as e:
        raise ImportError(
            "conv_ext.onnx_translations needs onnxscript (and onnx) installed: pip install onnx onnxscript") from e

    def conv2d_forward(input, weight, bias, stride, padding, dilation, groups):
        return _conv(op, input, weight, bias, stride, padding, dilation, groups)

    def conv2d_forward_activation(input, weight, bias, stride, padding, dilation, groups, activation,
                                  negative_slope):
        y = _conv(op, input, weight, bias, stride, padding, dilation, groups)
        return _activate(op, y, activation, negative_slope)

    def conv2d_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups):
        return _conv_transpose(op, grad_output, weight, input_size, stride, padding, dilation, groups)

    return {
        torch.ops.conv_ext.conv2d_forward.default: conv2d_forward,
        torch.ops.conv_ext.conv2d_forward_activation.default: conv2d_forward_activation,
        torch.ops.conv_ext.conv2d_backward_input.default: conv2d_backward_input,
    }
