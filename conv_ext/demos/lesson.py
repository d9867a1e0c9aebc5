"""What the lesson notebook (docs/lesson.ipynb) needs beyond the three demos:
the convolution written out in numpy three ways (loops, im2col + GEMM,
Winograd F(2, 3) on one row), a numerical gradient to check conv_backward
against, and the notebook's own plumbing: inline figures, quoted numbers and
re-executing the notebook.

    python -m conv_ext.demos.lesson [PATH]   re-executes the notebook in place

The numpy versions are for reading, not for speed: each is the textbook
formula the C++ kernels in csrc/cpu/ compute, tested against torch in
tests/test_lesson.py.
"""
import os
import sys

import numpy as np

LESSON = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "lesson.ipynb")
QUOTE = "quoted: "  # the prefix of every number the notebook's text quotes


def output_size(size, kernel, stride=1, pad=0):
    """1 + (size + 2*pad - kernel) // stride: the output length along one
    axis. Raises ValueError when the kernel does not fit or the stride does
    not divide, as the cs231n API requires."""
    span = size + 2 * pad - kernel
    if span < 0:
        raise ValueError(f"the kernel ({kernel}) is larger than the padded input ({size + 2 * pad})")
    if span % stride:
        raise ValueError(f"size + 2*pad - kernel = {span} is not divisible by stride {stride}")
    return 1 + span // stride


def conv_loops(x, w, b=None, stride=1, pad=0):
    """The definition, as loops: out[n, f, i, j] = b[f] + sum over c, r, s
    of w[f, c, r, s] * xpad[n, c, i*stride + r, j*stride + s].
    x (N, C, H, W), w (F, C, HH, WW), b (F,) or None."""
    n_, c_, h, wd = x.shape
    f_, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = output_size(h, kh, stride, pad), output_size(wd, kw, stride, pad)
    out = np.zeros((n_, f_, oh, ow), dtype=np.result_type(x, w))
    for n in range(n_):
        for f in range(f_):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[n, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    out[n, f, i, j] = (patch * w[f]).sum()
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def im2col(x, kh, kw, stride=1, pad=0):
    """The patch matrix: one row per tap (c, r, s), one column per output
    pixel (n, i, j), shaped (C*kh*kw, N*OH*OW). Row (c, r, s) holds the
    input pixel that tap multiplies at every output position."""
    n_, c_, h, wd = x.shape
    oh, ow = output_size(h, kh, stride, pad), output_size(wd, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((c_, kh, kw, n_, oh, ow), dtype=x.dtype)
    for r in range(kh):
        for s in range(kw):
            cols[:, r, s] = xp[:, :, r:r + stride * oh:stride, s:s + stride * ow:stride].transpose(1, 0, 2, 3)
    return cols.reshape(c_ * kh * kw, n_ * oh * ow)


def conv_im2col(x, w, b=None, stride=1, pad=0):
    """The convolution as one matrix product: w viewed as (F, C*kh*kw)
    times the patch matrix, then the columns folded back into (N, F, OH, OW)."""
    n_, _, h, wd = x.shape
    f_, _, kh, kw = w.shape
    oh, ow = output_size(h, kh, stride, pad), output_size(wd, kw, stride, pad)
    out = w.reshape(f_, -1) @ im2col(x, kh, kw, stride, pad)
    if b is not None:
        out = out + b.reshape(-1, 1)
    return out.reshape(f_, n_, oh, ow).transpose(1, 0, 2, 3)


# Winograd F(2, 3): two outputs of a 3-tap correlation from a 4-value input
# tile in 4 multiplies instead of 6 (csrc/cpu/winograd_transforms.h holds
# the 2-D F(2x2, 3x3), which is this applied to rows and then columns).
WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)


def winograd_f23(d, g):
    """The correlation of a row d (length 2t + 2) with a 3-tap kernel g,
    tile by tile: each 4-value tile d[2u : 2u+4] gives outputs 2u, 2u+1 as
    A^T [(G g) * (B^T d)]. G g is computed once per kernel; the product *
    is the only place a tile multiplies: 4 times for 2 outputs."""
    d, g = np.asarray(d, dtype=float), np.asarray(g, dtype=float)
    if g.shape != (3,) or d.ndim != 1 or d.size < 4 or d.size % 2:
        raise ValueError(f"expected a 3-tap kernel and an even row of at least 4, got {g.shape} and {d.shape}")
    u = WINOGRAD_G @ g
    return np.concatenate([WINOGRAD_AT @ (u * (WINOGRAD_BT @ d[i:i + 4]))
                           for i in range(0, d.size - 2, 2)])


def numerical_gradient(f, x, dout, h=1e-6):
    """d(sum(f(x) * dout)) / dx by central differences, one element of x at
    a time (x is perturbed in place and restored)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = (f(x) * dout).sum()
        x[i] = old - h
        minus = (f(x) * dout).sum()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def quote(label, value, fmt="{}"):
    """Prints a number the notebook's text quotes, as `quoted: label = value`.
    tests/test_lesson.py re-executes the notebook and checks that every such
    line matches the committed output and that its value appears in the text."""
    print(f"{QUOTE}{label} = {fmt.format(value)}")


def quoted(nb):
    """{label: value} of every `quoted:` line in a notebook's outputs."""
    found = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for line in output.get("text", "").splitlines():
                    if line.startswith(QUOTE):
                        label, _, value = line[len(QUOTE):].partition(" = ")
                        found[label] = value
    return found


def setup_plotly():
    """Plotly figures as the notebook stores them: the figure's JSON only,
    which JupyterLab, Notebook 7 and VS Code draw natively; no output embeds
    the 3.5 MB plotly.js, and no output repeats the data as HTML. Viewers
    that draw neither (GitHub, nbviewer) show the PNG beside each."""
    import plotly.io as pio
    # Colab does not draw the JSON output; plotly has a renderer made for it.
    pio.renderers.default = "colab" if "google.colab" in sys.modules else "plotly_mimetype"


def png(path):
    """An IPython image of a PNG a demo wrote: the static figure, reduced
    to a 256-colour palette as the README's copies are (a third of the
    bytes the notebook stores, no visible change on these plots)."""
    from IPython.display import Image

    from .figures import compressed_copy
    return Image(filename=compressed_copy(path, os.path.dirname(path), prefix="palette_"))


def execute(path=LESSON, timeout=300, write=True, cwd=None):
    """Runs the notebook top to bottom in a fresh kernel (nbclient), raising
    on the first cell that raises; returns the executed notebook and, with
    write=True, saves it over `path` with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    root = cwd or os.path.abspath(os.path.join(os.path.dirname(path), ".."))
    # No timestamps in the cells' metadata: the stored notebook changes only
    # when its outputs do.
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": root}})
    client.execute()
    if write:
        nbformat.write(nb, path)
    return nb


if __name__ == "__main__":
    execute(sys.argv[1] if len(sys.argv) > 1 else LESSON)
