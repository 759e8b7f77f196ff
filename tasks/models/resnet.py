"""CIFAR ResNet18 (He et al. 2016) and the paper's destabilised ablation.

The CIFAR variant of ResNet18: a 3x3 stride-1 stem without max-pooling, four
stages of two basic blocks (64, 128, 256, 512 channels; stride 2 from the second
stage on, with 1x1 projection shortcuts where the shape changes), global average
pooling and a linear classifier. Convolutions have no bias (batch norm follows
each one). The destabilised variant of the paper (section 3.3, Figure 4) removes
batch normalisation and the residual connections, and nothing else: every
convolution stays bias-free, and blocks become plain ``conv-relu-conv-relu``
stacks (the projection shortcuts disappear with the residual connections).

The weight statistics use the default rule :func:`tasks.stats.default_parameter_selection`
unchanged: conv kernels reshaped to ``(out, in*3*3)`` matrices, the classifier's
weight and bias, batch-norm parameters excluded.
"""

from __future__ import annotations

from torch import nn


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, optionally with batch norm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, batch_norm: bool, residual: bool):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(out_channels, batch_norm)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(out_channels, batch_norm)
        self.relu = nn.ReLU()
        if residual and (stride != 1 or in_channels != out_channels):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), _norm(out_channels, batch_norm)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return self.relu(out)


class CifarResNet18(nn.Module):
    """ResNet18 for 32x32 inputs.

    Parameters
    ----------
    num_classes : int
        100 for CIFAR-100.
    batch_norm, residual : bool
        Both False give the paper's destabilised network.
    width : int
        Channels of the first stage (64 in ResNet18; smaller for smoke tests).
    in_channels : int
    """

    def __init__(
        self,
        num_classes: int = 100,
        *,
        batch_norm: bool = True,
        residual: bool = True,
        width: int = 64,
        in_channels: int = 3,
    ):
        super().__init__()
        self.batch_norm = batch_norm
        self.residual = residual
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = _norm(width, batch_norm)
        self.relu = nn.ReLU()
        stages = []
        channels = width
        for i, mult in enumerate((1, 2, 4, 8)):
            out = width * mult
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    BasicBlock(channels, out, stride, batch_norm=batch_norm, residual=residual),
                    BasicBlock(out, out, 1, batch_norm=batch_norm, residual=residual),
                )
            )
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        """(B, C, 32, 32) float -> (B, num_classes) logits."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x).flatten(1))
