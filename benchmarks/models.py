"""A ResNet-18-shaped model (He et al. 2015, the 18-layer variant with basic
blocks), written here so the end-to-end benchmark needs no torchvision.
Twenty convolutions: the 7x7 stem, sixteen 3x3 in eight basic blocks, three
1x1 stride-2 shortcuts."""
from torch import nn


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
    64/128/256/512 channels, global average pool, linear classifier."""

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
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


def resnet18(num_classes=1000):
    return ResNet18(num_classes)


def conv_flops(model, image_size, batch=1):
    """Forward FLOPs (2 per multiply-add) of the model's convolutions for
    `batch` square images, found by tracing output sizes with hooks."""
    import torch

    total = [0]

    def hook(module, inputs, output):
        n, k, p, q = output.shape
        cg = module.in_channels // module.groups
        total[0] += 2 * n * k * p * q * cg * module.kernel_size[0] * module.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(torch.zeros(batch, model.stem[0].in_channels, image_size, image_size,
                              dtype=next(model.parameters()).dtype, device=next(model.parameters()).device))
            model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total[0]
