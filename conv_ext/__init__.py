"""conv_ext: hand-written CPU and CUDA kernels for 2-D convolution, as
PyTorch ops (torch.ops.conv_ext.*), with MyConv2d, a drop-in nn.Conv2d, and
MyConvTranspose2d, a drop-in nn.ConvTranspose2d on the same kernels."""
from . import _autocast  # noqa: F401  (registers the ops' autocast kernels)
from . import cs231n
from ._ops import ops
from .functional import Conv2dFunction, conv2d
from .modules import MyConv2d, replace_conv2d, restore_conv2d
from .modules_transpose import MyConvTranspose2d
from .onnx import onnx_translations
from .transpose import ConvTranspose2dFunction, conv_transpose2d

__all__ = ["Conv2dFunction", "ConvTranspose2dFunction", "MyConv2d", "MyConvTranspose2d", "conv2d",
           "conv_transpose2d", "cs231n", "onnx_translations", "ops", "replace_conv2d", "restore_conv2d"]
__version__ = "0.1.0"
