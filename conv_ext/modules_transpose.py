"""MyConvTranspose2d, a drop-in torch.nn.ConvTranspose2d running on
conv_ext's kernels."""
from torch import nn

from .transpose import conv_transpose2d


class MyConvTranspose2d(nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d with its forward computed by conv_ext's
    kernels (conv_ext.conv_transpose2d).

    Constructor, defaults, parameters, initialisation, repr and state_dict are
    nn.ConvTranspose2d's own, so checkpoints load either way and isinstance(m,
    nn.ConvTranspose2d) holds. forward(input, output_size=None) honours
    output_size as nn.ConvTranspose2d does.
    """

    def forward(self, input, output_size=None):
        # nn.ConvTranspose2d.forward, with our function in place of torch's.
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)
        return conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation)

    @classmethod
    def from_conv_transpose2d(cls, conv):
        """A MyConvTranspose2d computing what `conv` computes, sharing its
        parameter tensors (an optimizer that holds them keeps working)."""
        if not isinstance(conv, nn.ConvTranspose2d):
            raise TypeError(f"from_conv_transpose2d: expected an nn.ConvTranspose2d, got {type(conv).__name__}")
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size,
            stride=conv.stride, padding=conv.padding, output_padding=conv.output_padding,
            groups=conv.groups, bias=conv.bias is not None, dilation=conv.dilation,
            padding_mode=conv.padding_mode, device="meta",
        )
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new
