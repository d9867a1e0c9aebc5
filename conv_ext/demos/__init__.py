"""Three demos that teach convolution with conv_ext's own kernels:

    python -m conv_ext.demos {pattern,fit,train,all} --out DIR [--device cpu|cuda] [--seed N]

pattern  four hand-made 3x3 kernels find lines in a noisy image; precision and
         recall of the found lines over a sweep of noise levels.
fit      SGD recovers a random 3x3 filter from the image it produced; the loss's
         curvature predicts how many steps that takes.
train    a small CNN on scikit-learn's digits, with nn.Conv2d and with MyConv2d
         from the same initial weights: same losses, accuracy, seconds per epoch.

Each writes PNG figures and one self-contained HTML page into DIR and prints a
one-line summary. The lesson notebook, docs/lesson.ipynb, runs the same
functions cell by cell; lesson.py holds what it adds (numpy references for
the convolution, im2col and Winograd) and re-executes it. They need the `demo` extra: pip install 'conv_ext[demo]'.
"""
DEMOS = ("pattern", "fit", "train")
