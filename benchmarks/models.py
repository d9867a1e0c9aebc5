"""The architectures of the end-to-end benchmark, written after their papers'
layer tables in plain torch.nn, so the benchmark runs offline with no
torchvision and no weights. Each has the layer kinds that make real networks
differ from a shape suite of dense 3x3 layers:

- ResNet-18 (He et al. 2015): 7x7 stem, dense 3x3, strided 1x1 shortcuts.
- MobileNetV2 (Sandler et al. 2018, table 2): inverted residuals, 3x3
  depthwise at stride 1 and 2 on planes down to 4x4 with up to 960 channels.
- EfficientNet-B0 (Tan and Le 2019, table 1): MBConv with 3x3 and 5x5
  depthwise, squeeze-excite (1x1 convolutions on 1x1 planes), SiLU.
- RegNetX-400MF (Radosavovic et al. 2020): X blocks with grouped 3x3 of 16
  channels per group (d = 1, 2, 7, 12; w = 32, 64, 160, 400).
- ShuffleNetV2 1.0x (Ma et al. 2018, table 5): channel split and shuffle,
  strided depthwise in both branches of the downsampling unit.

Layer by layer they match torchvision's models of the same names (the tests
pin the parameter counts torchvision publishes); dropout and stochastic depth
are left out, so a training step is deterministic and both contenders of the
benchmark do the same work."""
import torch
from torch import nn


def _conv_bn(c_in, c_out, k, stride=1, groups=1, act=None):
    """Convolution (no bias, 'same' padding for odd k), batch norm, and an
    optional activation module."""
    layers = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(c_out)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class _Classifier(nn.Module):
    """Global average pool and a linear layer."""

    def __init__(self, c_in, num_classes):
        super().__init__()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


# ------------------------------------------------------------------ ResNet-18
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the identity (or a strided
    1x1 projection where the block changes width or resolution)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """Stem (7x7 stride 2, max pool), four stages of two basic blocks at
    64/128/256/512 channels, global average pool, linear classifier.
    Twenty convolutions: the stem, sixteen 3x3, three 1x1 shortcuts."""

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        stages, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


# ---------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Module):
    """1x1 expansion by t (absent for t = 1), 3x3 depthwise at the block's
    stride, linear 1x1 projection; the identity is added where the block
    keeps width and resolution."""

    def __init__(self, c_in, c_out, stride, t):
        super().__init__()
        hidden = c_in * t
        layers = [] if t == 1 else [_conv_bn(c_in, hidden, 1, act=nn.ReLU6(inplace=True))]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6(inplace=True)),
                   _conv_bn(hidden, c_out, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """Table 2 of the paper: 3x3 stem to 32, seven bottleneck stages
    (t, c, n, s), 1x1 to 1280, pool, classifier. 52 convolutions."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.in_channels = in_channels
        layers, c_in = [_conv_bn(in_channels, 32, 3, 2, act=nn.ReLU6(inplace=True))], 32
        for t, c, n, s in self.STAGES:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers.append(_conv_bn(c_in, 1280, 1, act=nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(1280, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


# ------------------------------------------------------------- EfficientNet-B0
class SqueezeExcite(nn.Module):
    """Channel gates from the pooled features: 1x1 down to `squeeze`
    channels, SiLU, 1x1 back up, sigmoid (convolutions with bias on 1x1
    planes, one per image)."""

    def __init__(self, channels, squeeze):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        gate = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class MBConv(nn.Module):
    """1x1 expansion by t (absent for t = 1), k x k depthwise at the block's
    stride, squeeze-excite to a quarter of the block's input width, linear
    1x1 projection, identity where width and resolution are kept."""

    def __init__(self, c_in, c_out, k, stride, t):
        super().__init__()
        hidden = c_in * t
        layers = [] if t == 1 else [_conv_bn(c_in, hidden, 1, act=nn.SiLU(inplace=True))]
        layers += [_conv_bn(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU(inplace=True)),
                   SqueezeExcite(hidden, max(1, c_in // 4)),
                   _conv_bn(hidden, c_out, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetB0(nn.Module):
    """Table 1 of the paper: 3x3 stem to 32, seven MBConv stages
    (t, k, c, n, s), 1x1 to 1280, pool, classifier. 81 convolutions, 32 of
    them the squeeze-excite pairs."""

    STAGES = ((1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 3, 2),
              (6, 5, 112, 3, 1), (6, 5, 192, 4, 2), (6, 3, 320, 1, 1))

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.in_channels = in_channels
        layers, c_in = [_conv_bn(in_channels, 32, 3, 2, act=nn.SiLU(inplace=True))], 32
        for t, k, c, n, s in self.STAGES:
            for i in range(n):
                layers.append(MBConv(c_in, c, k, s if i == 0 else 1, t))
                c_in = c
        layers.append(_conv_bn(c_in, 1280, 1, act=nn.SiLU(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(1280, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


# --------------------------------------------------------------- RegNetX-400MF
class XBlock(nn.Module):
    """RegNet's X block with bottleneck ratio 1: 1x1, grouped 3x3 at the
    block's stride with `group_width` channels per group, 1x1; a strided 1x1
    projection where width or resolution change; ReLU after the sum."""

    def __init__(self, c_in, c_out, stride, group_width):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(c_in, c_out, 1, act=nn.ReLU(inplace=True)),
            _conv_bn(c_out, c_out, 3, stride, groups=c_out // group_width, act=nn.ReLU(inplace=True)),
            _conv_bn(c_out, c_out, 1))
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = _conv_bn(c_in, c_out, 1, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class RegNetX400MF(nn.Module):
    """3x3 stem to 32 at stride 2, four stages of X blocks (depths 1, 2, 7,
    12; widths 32, 64, 160, 400; group width 16; each stage starts at stride
    2), pool, classifier. 71 convolutions."""

    DEPTHS, WIDTHS, GROUP_WIDTH = (1, 2, 7, 12), (32, 64, 160, 400), 16

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.in_channels = in_channels
        layers, c_in = [_conv_bn(in_channels, 32, 3, 2, act=nn.ReLU(inplace=True))], 32
        for depth, width in zip(self.DEPTHS, self.WIDTHS):
            for i in range(depth):
                layers.append(XBlock(c_in, width, 2 if i == 0 else 1, self.GROUP_WIDTH))
                c_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(c_in, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


# ------------------------------------------------------------ ShuffleNetV2 1x
def channel_shuffle(x, groups=2):
    """Interleaves the channels of `groups` halves, so the next unit's split
    mixes both branches' outputs."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Stride 1: half the channels pass through, the other half go through
    1x1, 3x3 depthwise, 1x1. Stride 2: both branches see all channels, each
    with a strided 3x3 depthwise, and the width doubles. Concatenated, then
    shuffled."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.stride = stride
        half = c_out // 2
        branch_in = c_in if stride == 2 else half
        self.branch1 = nn.Identity()
        if stride == 2:
            self.branch1 = nn.Sequential(
                _conv_bn(c_in, c_in, 3, stride, groups=c_in),
                _conv_bn(c_in, half, 1, act=nn.ReLU(inplace=True)))
        self.branch2 = nn.Sequential(
            _conv_bn(branch_in, half, 1, act=nn.ReLU(inplace=True)),
            _conv_bn(half, half, 3, stride, groups=half),
            _conv_bn(half, half, 1, act=nn.ReLU(inplace=True)))

    def forward(self, x):
        if self.stride == 1:
            keep, x = x.chunk(2, dim=1)
            out = torch.cat((keep, self.branch2(x)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out)


class ShuffleNetV2(nn.Module):
    """Table 5 of the paper, 1.0x: 3x3 stem to 24 at stride 2, max pool,
    three stages (116, 232, 464 channels; 4, 8, 4 units, the first strided),
    1x1 to 1024, pool, classifier. 56 convolutions."""

    STAGES = ((116, 4), (232, 8), (464, 4))

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.in_channels = in_channels
        layers = [_conv_bn(in_channels, 24, 3, 2, act=nn.ReLU(inplace=True)), nn.MaxPool2d(3, 2, 1)]
        c_in = 24
        for c_out, repeats in self.STAGES:
            for i in range(repeats):
                layers.append(ShuffleUnit(c_in, c_out, 2 if i == 0 else 1))
                c_in = c_out
        layers.append(_conv_bn(c_in, 1024, 1, act=nn.ReLU(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(1024, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def resnet18(num_classes=1000):
    return ResNet18(num_classes)


# The benchmark's models by name, in the order the reports list them.
MODELS = {
    "resnet18": ResNet18,
    "mobilenet_v2": MobileNetV2,
    "efficientnet_b0": EfficientNetB0,
    "regnetx_400mf": RegNetX400MF,
    "shufflenet_v2": ShuffleNetV2,
}


def build(name, num_classes=1000):
    """The model called `name` (a key of MODELS), freshly initialised."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODELS)}")
    return MODELS[name](num_classes)


def conv_layers(model, image_size, batch=1):
    """Every convolution of the model as the network calls it on `batch`
    square images: a list of (module name, input shape, output shape,
    module), in call order (traced with forward hooks, in eval mode)."""
    seen = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, inputs, output):
        seen.append((names[module], tuple(inputs[0].shape), tuple(output.shape), module))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    param = next(model.parameters())
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(batch, model.in_channels, image_size, image_size,
                              dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def conv_flops(model, image_size, batch=1):
    """Forward FLOPs (2 per multiply-add) of the model's convolutions for
    `batch` square images."""
    total = 0
    for _, _, (n, k, p, q), m in conv_layers(model, image_size, batch):
        total += 2 * n * k * p * q * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    return total
