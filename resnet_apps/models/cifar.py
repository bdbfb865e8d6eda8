"""CIFAR-style residual and plain networks (He et al., CVPR 2016, Section 4.2): ``cifar_net``.

Depth 6n+2: one 3x3 conv (16 filters), three stages of 2n 3x3 convs with 16, 32 and 64 filters on
maps of 32, 16 and 8 px (for a 32-px input), BatchNorm after every conv, global average pooling and a
linear classifier. The residual variant adds an identity shortcut around every pair of convs; where a
stage halves the map and doubles the width the shortcut is the paper's "option A": subsample the
identity with stride 2 and zero-pad the new channels. Option A has no parameters, so a residual and a
plain net of the same depth have exactly the same parameter count (0.27 M at depth 20, 0.85 M at
depth 56 for 3 bands and 10 classes) and differ only in the shortcuts.

timm has no plain counterpart of its ResNets, hence this small module.

Example::

    net = cifar_net(56, residual=False, in_chans=3, num_classes=10)
    logits = net(torch.zeros(8, 3, 32, 32))     # [8, 10]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_WIDTHS = (16, 32, 64)


def blocks_per_stage(depth: int) -> int:
    """n for depth 6n+2; ValueError for any other depth."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR nets have depth 6n+2 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
    return (depth - 2) // 6


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the option-A identity shortcut when ``residual``, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.residual = residual
        self.stride = stride
        self.pad_channels = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Option A: x [B, C, H, W] -> [B, C + pad, H / stride, W / stride], new channels zero."""
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_channels:
            # zero channels split before and after, as in the common reference implementations
            half = self.pad_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.pad_channels - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarNet(nn.Module):
    """The paper's CIFAR-10 network of depth 6n+2, residual or plain.

    Attributes:
        depth, residual, in_chans, num_classes: the constructor's arguments.
        stem_conv: the first convolution (its gradient norm is the study's vanishing-gradient probe).
    """

    def __init__(self, depth: int, residual: bool, in_chans: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        if in_chans < 1 or num_classes < 1:
            raise ValueError(f"in_chans and num_classes must be >= 1, got {in_chans}, {num_classes}")
        self.depth = depth
        self.residual = residual
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.stem_conv = nn.Conv2d(in_chans, STAGE_WIDTHS[0], 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(STAGE_WIDTHS[0])
        stages: list[nn.Module] = []
        in_channels = STAGE_WIDTHS[0]
        for index, width in enumerate(STAGE_WIDTHS):
            blocks = []
            for block in range(n):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, residual))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. 2015 ("MSRA") init for the convs, as the paper states (Section 3.4)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def conv_layers(self) -> list[nn.Conv2d]:
        """The 6n+1 convolutions in forward order (stem first); the classifier makes depth 6n+2."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, in_chans, H, W] (H, W divisible by 4 for exact stage sizes) -> logits [B, num_classes]."""
        out = F.relu(self.stem_bn(self.stem_conv(x)))
        out = self.stages(out)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def cifar_net(depth: int, residual: bool, in_chans: int = 3, num_classes: int = 10) -> CifarNet:
    """A residual (``residual=True``) or plain CIFAR net of ``depth`` = 6n+2 layers."""
    return CifarNet(depth, residual, in_chans=in_chans, num_classes=num_classes)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
