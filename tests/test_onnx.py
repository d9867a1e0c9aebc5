"""ONNX export of models holding MyConv2d (torch.onnx.export, dynamo=True,
with conv_ext.onnx_translations()), run in onnxruntime and compared with
the PyTorch outputs in float32."""
import logging

import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import conv_ext
from conv_ext import MyConv2d

# Conv through onnxruntime's MLAS kernels against ours: float32 rounding of
# sums of at most a few hundred products.
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _quiet_exporter():
    # The exporter logs a warning per torchvision op it cannot find.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def export(model, x, **kwargs):
    return torch.onnx.export(
        model, (x,), dynamo=True, verbose=False, custom_translation_table=conv_ext.onnx_translations(), **kwargs)


def run_onnxruntime(program, x):
    onnx.checker.check_model(program.model_proto, full_check=True)
    session = onnxruntime.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(y)


def node_types(program):
    return [(n.domain, n.op_type) for n in program.model_proto.graph.node]


def check_model(model, x, n_convs, **kwargs):
    """Exports `model`, checks that its graph holds `n_convs` standard Conv
    nodes and nothing of conv_ext's, and that onnxruntime agrees with it."""
    model.eval()
    program = export(model, x, **kwargs)
    types = node_types(program)
    assert all(domain in ("", "ai.onnx") for domain, _ in types), types
    assert sum(t == "Conv" for _, t in types) == n_convs, types
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(run_onnxruntime(program, x), expected, **TOL)
    return program


# ------------------------------------------------------------------- layers
ACTIVATION_NODES = {None: None, "relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


@pytest.mark.parametrize("activation", list(ACTIVATION_NODES))
def test_fused_activation_exports_as_conv_then_activation(activation):
    torch.manual_seed(0)
    layer = MyConv2d(3, 5, 3, padding=1, stride=2, activation=activation, negative_slope=0.3)
    x = torch.randn(2, 3, 11, 10)
    program = check_model(layer, x, n_convs=1)
    types = [t for _, t in node_types(program)]
    assert types == ["Conv"] + ([ACTIVATION_NODES[activation]] if activation else []), types
    if activation == "leaky_relu":
        (alpha,) = [a.f for n in program.model_proto.graph.node if n.op_type == "LeakyRelu" for a in n.attribute]
        assert alpha == pytest.approx(0.3)


@pytest.mark.parametrize(
    "padding_mode, kwargs",
    [("zeros", dict(padding=(2, 1), stride=(2, 1), dilation=(1, 2), groups=2)),
     ("zeros", dict(padding="same", dilation=2, bias=False)),
     ("reflect", dict(padding="same", groups=2)),
     ("replicate", dict(padding=(2, 1), stride=(2, 1), dilation=(1, 2), groups=2)),
     ("circular", dict(padding="valid", groups=4))],
    ids=["zeros_strided_dilated_grouped", "zeros_same_dilated_nobias", "reflect_same_grouped",
         "replicate_strided_dilated_grouped", "circular_valid_depthwise"],
)
def test_layer_arguments(padding_mode, kwargs):
    torch.manual_seed(1)
    # A 4x2 kernel: padding='same' pads it asymmetrically (its even side).
    layer = MyConv2d(4, 8, (4, 2), padding_mode=padding_mode, **kwargs)
    check_model(layer, torch.randn(2, 4, 13, 12), n_convs=1)


def test_float16():
    torch.manual_seed(6)
    layer = MyConv2d(8, 8, 3, padding=1, groups=2, activation="relu").half().eval()
    x = torch.randn(2, 8, 9, 9, dtype=torch.float16)
    y = run_onnxruntime(export(layer, x), x)
    assert y.dtype == torch.float16
    with torch.no_grad():
        exact = torch.nn.functional.conv2d(x.double(), layer.weight.double(), layer.bias.double(), padding=1,
                                           groups=2).relu()
    # Outputs of magnitude about 1, whose float16 ulp is 1e-3: a couple of
    # ulps from the float64 result and from each other.
    torch.testing.assert_close(y.double(), exact, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(y, layer(x), rtol=2e-3, atol=2e-3)


def test_conv_attributes_are_the_layers():
    layer = MyConv2d(6, 4, (3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    program = export(layer.eval(), torch.randn(1, 6, 16, 17))
    (conv,) = [n for n in program.model_proto.graph.node if n.op_type == "Conv"]
    attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in conv.attribute}
    assert attrs["strides"] == [2, 3]
    assert attrs["pads"] == [1, 2, 1, 2]
    assert attrs["dilations"] == [2, 1]
    assert attrs["group"] == 2


# ------------------------------------------------------------------- models
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


def resnet_like():
    """ResNet-18's layout at toy width: 7x7/2 stem, max pool, basic blocks
    with strided 1x1 shortcuts, global pool, classifier (8 convolutions)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        BasicBlock(8, 8, 1), BasicBlock(8, 16, 2), BasicBlock(16, 16, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class InvertedResidual(nn.Module):
    """MobileNetV2's block written with MyConv2d directly: 1x1 expansion with
    a fused activation, depthwise 3x3 (strided or dilated, any padding
    mode), linear 1x1 projection."""

    def __init__(self, cin, cout, stride=1, dilation=1, activation="relu", padding_mode="zeros"):
        super().__init__()
        hidden = 4 * cin
        self.expand = MyConv2d(cin, hidden, 1, bias=False, activation=activation, negative_slope=0.1)
        self.depthwise = MyConv2d(hidden, hidden, 3, stride=stride, padding=dilation, dilation=dilation,
                                  groups=hidden, padding_mode=padding_mode, activation=activation,
                                  negative_slope=0.1)
        self.project = MyConv2d(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def mobilenet_like():
    return nn.Sequential(
        MyConv2d(3, 8, 3, stride=2, padding=1, activation="relu"),
        InvertedResidual(8, 8, activation="relu"),
        InvertedResidual(8, 12, stride=2, activation="leaky_relu", padding_mode="reflect"),
        InvertedResidual(12, 12, dilation=2, activation="tanh", padding_mode="replicate"),
        InvertedResidual(12, 12, activation="sigmoid", padding_mode="circular"),
        # grouped (not depthwise) and an even kernel with padding='same'
        MyConv2d(12, 16, 2, padding="same", groups=4, activation="relu"),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_resnet_like_swapped_model():
    torch.manual_seed(2)
    model = resnet_like()
    # Trained-looking batch-norm statistics, so the comparison is not dominated by the init's identity.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    conv_ext.replace_conv2d(model)
    assert sum(isinstance(m, MyConv2d) for m in model.modules()) == 8
    # A dynamic batch: the exported graph serves other batch sizes.
    batch = torch.export.Dim("batch", min=1, max=64)
    program = check_model(model, torch.randn(2, 3, 32, 32), n_convs=8, dynamic_shapes=({0: batch},))
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(run_onnxruntime(program, x), expected, **TOL)


def test_mobilenet_like_model(tmp_path):
    torch.manual_seed(3)
    model = mobilenet_like()
    check_model(model, torch.randn(2, 3, 32, 32), n_convs=14)
    # The README's command, through a file, as a deployment reads it.
    x = torch.randn(3, 3, 32, 32)
    path = str(tmp_path / "model.onnx")
    torch.onnx.export(model, (x,), path, dynamo=True, verbose=False,
                      custom_translation_table=conv_ext.onnx_translations())
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(x), **TOL)


def test_restored_model_exports_without_the_table():
    torch.manual_seed(7)
    model = conv_ext.restore_conv2d(mobilenet_like(), fused_activation="sequential").eval()
    x = torch.randn(2, 3, 32, 32)
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    with torch.no_grad():
        torch.testing.assert_close(run_onnxruntime(program, x), model(x), **TOL)


# ------------------------------------------------- transposed convolution
class BackwardInput(nn.Module):
    """conv2d_backward_input as a layer: what a transposed convolution built
    from it puts in an inference graph."""

    def __init__(self, weight, input_size, stride, padding, dilation, groups):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.args = (input_size, stride, padding, dilation, groups)

    def forward(self, grad_output):
        return torch.ops.conv_ext.conv2d_backward_input(grad_output, self.weight, *self.args)


@pytest.mark.parametrize(
    "input_hw, stride, padding, dilation, groups",
    # (13, 12) at stride (2, 3): rows and columns the stride leaves over, so
    # output_padding is (0, 2) and must come from input_size.
    [((13, 12), (2, 3), (1, 0), (1, 2), 2), ((9, 9), (1, 1), (2, 2), (2, 2), 1)],
)
def test_backward_input_exports_as_conv_transpose(input_hw, stride, padding, dilation, groups):
    torch.manual_seed(4)
    weight = torch.randn(6, 4 // groups, 3, 3)
    h, w = input_hw
    out_h = (h + 2 * padding[0] - dilation[0] * 2 - 1) // stride[0] + 1
    out_w = (w + 2 * padding[1] - dilation[1] * 2 - 1) // stride[1] + 1
    layer = BackwardInput(weight, [2, 4, h, w], list(stride), list(padding), list(dilation), groups)
    program = check_model(layer, torch.randn(2, 6, out_h, out_w), n_convs=0)
    assert [t for _, t in node_types(program)] == ["ConvTranspose"]


def test_transposed_module_when_conv_ext_has_one():
    cls = getattr(conv_ext, "MyConvTranspose2d", None)
    if cls is None:
        pytest.skip("conv_ext has no MyConvTranspose2d in this build")
    torch.manual_seed(5)
    model = nn.Sequential(MyConv2d(3, 8, 3, stride=2, padding=1, activation="relu"),
                          cls(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2))
    check_model(model, torch.randn(2, 3, 16, 15), n_convs=1)


def test_translations_cover_the_inference_ops():
    table = conv_ext.onnx_translations()
    assert set(table) == {torch.ops.conv_ext.conv2d_forward.default,
                          torch.ops.conv_ext.conv2d_forward_activation.default,
                          torch.ops.conv_ext.conv2d_backward_input.default}
