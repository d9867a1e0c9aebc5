"""restore_conv2d: every conv_ext module back to the plain torch module,
sharing its parameters, the model computing the same function."""
import pytest
import torch
from torch import nn

import conv_ext
from conv_ext import MyConv2d, replace_conv2d, restore_conv2d

MODES = ["zeros", "reflect", "replicate", "circular"]


def model_with_every_argument():
    """Every padding mode, strided, dilated, grouped, depthwise, 'same' with
    an even kernel, with and without bias, one level nested."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False),
                      nn.Conv2d(8, 8, (4, 2), padding="same", groups=8, padding_mode="reflect")),
        nn.Tanh(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2, padding_mode="replicate"),
        nn.Conv2d(8, 4, 3, padding=(2, 1), dilation=2, padding_mode="circular"))


def test_round_trip_computes_the_same_function():
    torch.manual_seed(0)
    model = model_with_every_argument().double()
    x = torch.randn(2, 3, 12, 11, dtype=torch.float64, requires_grad=True)
    expected = model(x)
    expected_grads = torch.autograd.grad(expected.sum(), [x, *model.parameters()])
    params = list(model.parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}

    replace_conv2d(model)
    assert sum(type(m) is MyConv2d for m in model.modules()) == 5
    assert restore_conv2d(model) is model
    assert sum(type(m) is nn.Conv2d for m in model.modules()) == 5
    assert not any(isinstance(m, MyConv2d) for m in model.modules())

    # Same tensors (an optimizer built before either swap keeps working), same state_dict keys.
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert list(model.state_dict()) == list(state)
    y = model(x)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(y.sum(), [x, *model.parameters()]), expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_restored_model_is_stock_torch_for_torchscript():
    torch.manual_seed(3)
    model = restore_conv2d(replace_conv2d(model_with_every_argument())).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 12, 11)
    torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("padding_mode", MODES)
def test_restored_layer_keeps_every_argument(padding_mode):
    ours = MyConv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2, bias=False,
                    padding_mode=padding_mode, dtype=torch.float64).eval()
    plain = restore_conv2d(ours)
    assert type(plain) is nn.Conv2d
    assert repr(plain) == repr(ours).replace("MyConv2d", "Conv2d")
    assert plain.weight is ours.weight and plain.bias is None
    assert not plain.training
    x = torch.randn(2, 4, 10, 9, dtype=torch.float64)
    torch.testing.assert_close(plain(x), ours(x), rtol=1e-12, atol=1e-12)


def test_leaves_other_modules_and_subclasses_alone():
    class Custom(MyConv2d):
        pass

    custom, plain = Custom(3, 3, 1), nn.Conv2d(3, 3, 1)
    model = nn.Sequential(custom, plain, nn.BatchNorm2d(3))
    restore_conv2d(model)
    assert model[0] is custom and model[1] is plain and type(model[2]) is nn.BatchNorm2d


ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_fused_activation(activation):
    torch.manual_seed(1)
    model = nn.Sequential(MyConv2d(3, 4, 3, activation=activation, negative_slope=0.2, dtype=torch.float64))
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    model.insert(0, MyConv2d(3, 3, 1, dtype=torch.float64))
    expected = model(x)
    with pytest.raises(ValueError, match=rf"restore_conv2d: 1 fuses activation='{activation}'.*fused_activation='sequential'"):
        restore_conv2d(model)
    assert type(model[0]) is MyConv2d  # checked before anything is swapped

    restore_conv2d(model, fused_activation="sequential")
    assert type(model[0]) is nn.Conv2d
    conv, act = model[1]
    assert type(conv) is nn.Conv2d and type(act) is ACTIVATIONS[activation]
    if activation == "leaky_relu":
        assert act.negative_slope == 0.2
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)


def test_bad_fused_activation_argument():
    with pytest.raises(ValueError, match="fused_activation to be 'error' or 'sequential', got 'drop'"):
        restore_conv2d(nn.Sequential(), fused_activation="drop")


def test_transposed_convolution_restored_when_conv_ext_has_one():
    cls = getattr(conv_ext, "MyConvTranspose2d", None) or getattr(conv_ext.modules, "MyConvTranspose2d", None)
    if cls is None:
        pytest.skip("conv_ext has no MyConvTranspose2d in this build")
    torch.manual_seed(2)
    ours = cls(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1, dtype=torch.float64)
    model = nn.Sequential(ours)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    expected = model(x)
    restore_conv2d(model)
    assert type(model[0]) is nn.ConvTranspose2d
    assert model[0].weight is ours.weight and model[0].bias is ours.bias
    assert model[0].output_padding == (1, 1)
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
