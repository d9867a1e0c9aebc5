"""MyConv2d as a drop-in nn.Conv2d, and replace_conv2d on a model."""
import pytest
import torch
from torch import nn

import conv_ext
from conv_ext import MyConv2d, replace_conv2d

MODES = ["zeros", "reflect", "replicate", "circular"]


@pytest.mark.parametrize("padding_mode", MODES)
@pytest.mark.parametrize(
    "kwargs",
    [dict(padding=1), dict(padding=(2, 1), stride=2, dilation=(1, 2)), dict(padding="same", groups=2),
     dict(padding="valid", bias=False)],
)
def test_matches_nn_conv2d(padding_mode, kwargs, device):
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, (3, 2), padding_mode=padding_mode, **kwargs).double().to(device)
    ours = MyConv2d(4, 6, (3, 2), padding_mode=padding_mode, **kwargs).double().to(device)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64, device=device, requires_grad=True)
    y_ref, y = ref(x), ours(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y)
    ref_grads = torch.autograd.grad(y_ref, [x, *ref.parameters()], g)
    grads = torch.autograd.grad(y, [x, *ours.parameters()], g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_is_a_conv2d_with_its_defaults_and_repr():
    torch.manual_seed(1)
    ref = nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=False)
    torch.manual_seed(1)
    ours = MyConv2d(3, 8, 5, stride=2, padding=2, bias=False)
    assert isinstance(ours, nn.Conv2d)
    assert repr(ours) == repr(ref).replace("Conv2d", "MyConv2d")
    assert list(ours.state_dict()) == list(ref.state_dict())
    torch.testing.assert_close(ours.weight, ref.weight)  # same initialisation
    assert ours.padding_mode == "zeros" and ours.dilation == (1, 1) and ours.groups == 1


def test_state_dict_round_trips_both_ways():
    ref = nn.Conv2d(2, 3, 3)
    ours = MyConv2d(2, 3, 3)
    ours.load_state_dict(ref.state_dict())
    back = nn.Conv2d(2, 3, 3)
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back.weight, ref.weight)


def test_unbatched_input():
    m = MyConv2d(3, 2, 3, padding=1)
    x = torch.randn(3, 5, 5)
    torch.testing.assert_close(m(x), nn.Conv2d.forward(m, x))
    assert m(x).shape == (2, 5, 5)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.ReLU()),
        nn.Conv2d(8, 4, 3, stride=2), nn.Flatten(), nn.LazyLinear(3),
    )


def test_replace_conv2d_trains_identically():
    torch.manual_seed(0)
    x, target = torch.randn(8, 1, 12, 12), torch.randint(0, 3, (8,))
    ref = small_cnn()
    ref(x)  # materialise the lazy layer
    ours = small_cnn()
    ours(x)
    ours.load_state_dict(ref.state_dict())
    opt = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)  # built before the swap
    assert replace_conv2d(ours) is ours
    assert sum(type(m) is MyConv2d for m in ours.modules()) == 3
    assert not any(type(m) is nn.Conv2d for m in ours.modules())
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for _ in range(4):
        losses = []
        for model, o in ((ref, ref_opt), (ours, opt)):
            o.zero_grad()
            loss = nn.functional.cross_entropy(model(x), target)
            loss.backward()
            o.step()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_from_conv2d_shares_parameters():
    conv = nn.Conv2d(2, 4, 3, padding_mode="reflect", padding=1).eval()
    m = MyConv2d.from_conv2d(conv)
    assert m.weight is conv.weight and m.bias is conv.bias
    assert not m.training and m.padding_mode == "reflect"
    x = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(m(x), conv(x))
    assert replace_conv2d(conv).weight is conv.weight  # a bare conv: its replacement is returned
    with pytest.raises(TypeError, match="expected an nn.Conv2d"):
        MyConv2d.from_conv2d(nn.Linear(2, 2))


def test_functional_matches_for_every_argument_form():
    x, w = torch.randn(1, 2, 7, 7, dtype=torch.float64), torch.randn(2, 2, 3, 3, dtype=torch.float64)
    for kw in [dict(stride=[2, 1]), dict(padding=(1, 0)), dict(dilation=2), dict(padding="same")]:
        torch.testing.assert_close(conv_ext.conv2d(x, w, **kw), nn.functional.conv2d(x, w, **kw))
