"""torch.export of a model with MyConv2d swapped in, and its AOTInductor
round trip: compile and package, load in a fresh process, compare."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import conv_ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SmallNet(nn.Module):
    """Strided, grouped, depthwise and fused-activation layers, a residual
    add and a classifier head: every conv_ext forward op in one graph."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.depthwise = conv_ext.MyConv2d(8, 8, 3, padding=2, dilation=2, groups=8, activation="relu")
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        y = F.relu(self.stem(x))
        y = y + self.depthwise(self.grouped(y))
        return self.head(y.mean((2, 3)))


def swapped_model():
    torch.manual_seed(0)
    return conv_ext.replace_conv2d(SmallNet()).eval()


def conv_targets(program):
    return [str(n.target) for n in program.graph.nodes
            if n.op == "call_function" and "conv" in str(n.target)]


def test_export_holds_conv_ext_ops_and_runs():
    model = swapped_model()
    x = torch.randn(2, 3, 16, 16)
    batch = torch.export.Dim("batch", min=1, max=32)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    assert sorted(conv_targets(program)) == sorted(
        ["conv_ext.conv2d_forward.default"] * 2 + ["conv_ext.conv2d_forward_activation.default"])
    for n in (2, 5):
        x = torch.randn(n, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=0)


LOAD_AND_COMPARE = """
import sys, torch
import conv_ext  # registers the ops the package calls
package, inputs, expected = sys.argv[1:]
loaded = torch._inductor.aoti_load_package(package)
out = loaded(torch.load(inputs))
torch.testing.assert_close(out, torch.load(expected), rtol=1e-5, atol=1e-5)
print("ok", tuple(out.shape))
"""


@pytest.mark.slow
def test_aot_inductor_round_trip(tmp_path):
    model = swapped_model()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    program = torch.export.export(model, (x,))
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "model.pt2"))

    loaded = torch._inductor.aoti_load_package(package)
    torch.testing.assert_close(loaded(x), expected, rtol=1e-5, atol=1e-5)

    # A fresh process: what a deployment does. Importing conv_ext is all it
    # needs, because the compiled model calls the ops through the dispatcher.
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "y.pt")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_COMPARE, package, str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok (3, 5)"
