"""python -m benchmarks.transposed: its shapes are the layers they name (output
sizes as torch computes them), its FLOP count, and a tiny end-to-end run that
verifies, times and writes Markdown and JSON."""
import json
import os
import sys

import pytest
import torch
import torch.nn.functional as F

# benchmarks/ is a top-level package of the repository, not installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import transposed  # noqa: E402


@pytest.mark.parametrize("shape", transposed.SUITE, ids=transposed.NAMES)
def test_output_extent_is_torchs(shape):
    x = torch.empty(1, shape.c_in, shape.h, shape.h, device="meta")
    w = torch.empty(shape.c_in, shape.c_out // shape.groups, shape.r, shape.r, device="meta")
    y = F.conv_transpose2d(x, w, None, shape.stride, shape.pad, shape.out_pad, shape.groups)
    assert tuple(y.shape[2:]) == (shape.h_out, shape.h_out)


def test_layers_are_the_networks():
    by_name = {s.name: s for s in transposed.SUITE}
    # DCGAN's generator: 1 -> 4 -> 8 -> 16 -> 32 -> 64, each layer feeding the next.
    dcgan = [by_name[f"dcgan_g{i}"] for i in range(1, 6)]
    assert [s.h_out for s in dcgan] == [4, 8, 16, 32, 64]
    assert all(a.c_out == b.c_in and a.h_out == b.h for a, b in zip(dcgan, dcgan[1:]))
    # U-Net's decoder doubles the size and halves the channels at each step.
    unet = [by_name[f"unet_up{i}"] for i in range(1, 5)]
    assert all(s.h_out == 2 * s.h and s.c_out * 2 == s.c_in for s in unet)
    assert by_name["linknet_up"].h_out == 2 * by_name["linknet_up"].h  # output_padding 1 makes it exact


def test_flops_by_hand():
    s = transposed.TransposedShape("t", 2, 3, 5, 4, 3, 2)
    # every input pixel (2*3*5*5) meets every tap (3*3) of every output channel (4)
    assert s.flops == 2 * (2 * 3 * 5 * 5) * 4 * 9


def test_cpu_batches_and_selection():
    chosen = transposed.select("cpu", ["unet_up1", "dcgan_g2"])
    assert [s.name for s in chosen] == ["dcgan_g2", "unet_up1"]  # suite order
    assert [s.n for s in chosen] == [16, 1]
    assert [s.name for s in transposed.select("cuda", quick=True)] == list(transposed.QUICK)
    with pytest.raises(ValueError, match="unknown shape"):
        transposed.select("cpu", ["nope"])


def test_quick_run_writes_markdown_and_json(tmp_path):
    md, js = tmp_path / "t.md", tmp_path / "t.json"
    code = transposed.main(["--device", "cpu", "--shapes", "dcgan_g5", "--reps", "1", "--rounds", "2",
                            "--quick", "--markdown", str(md), "--json", str(js)])
    assert code == 0
    rows = json.loads(js.read_text())["rows"]
    assert [(r["shape"], r["pass_"]) for r in rows] == [("dcgan_g5", "forward"), ("dcgan_g5", "forward_backward")]
    assert all(r["ok"] and r["rel_err"] < 1e-4 and r["speedup"] > 0 for r in rows)
    text = md.read_text()
    assert "| dcgan_g5 |" in text and "geomean" in text
