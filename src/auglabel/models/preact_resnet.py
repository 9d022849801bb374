"""PreAct ResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Pre-activation basic blocks (BN -> ReLU -> conv, Fig. 4e of the paper) in four stages of two
blocks with widths 64, 128, 256, 512 and strides 1, 2, 2, 2.  For small images the stem is a
single stride-1 conv3x3 (the CIFAR variant), and an adaptive average pool after the final
BN-ReLU makes any input size work.  11.17M parameters for 3 channels and 10 classes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .base import MODELS, Classifier, Stats, init_conv_bn, positive_int


class PreActBlock(nn.Module):
    """Pre-activation basic block BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3; as in the reference
    code, a 1x1 projection shortcut (when the shape changes) takes the pre-activated input.
    Shared by PreAct ResNet and WideResNet (whose blocks add dropout, WRN paper sec. 2.4)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
            if stride != 1 or in_ch != out_ch else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        identity = self.shortcut(out) if self.shortcut is not None else x
        out = F.relu(self.bn2(self.conv1(out)))
        return self.conv2(self.dropout(out)) + identity


def preact_stages(in_ch: int, widths: Sequence[int], blocks: Sequence[int],
                  dropout: float = 0.0) -> tuple[nn.Sequential, int]:
    """Stages of pre-activation blocks; the first block of each stage changes the width and
    (after the first stage) halves the resolution.  Returns the stages and their output width."""
    stages = []
    for i, (out_ch, count) in enumerate(zip(widths, blocks)):
        stride = 1 if i == 0 else 2
        stages.append(nn.Sequential(*[PreActBlock(in_ch if j == 0 else out_ch, out_ch, stride if j == 0 else 1, dropout)
                                      for j in range(count)]))
        in_ch = out_ch
    return nn.Sequential(*stages), in_ch


class PreActResNetBody(nn.Module):
    """Stem, four stages of pre-activation blocks, final BN-ReLU, global average pool."""

    def __init__(self, in_channels: int, blocks_per_stage: tuple[int, ...], width: int):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        widths = [width * 2**i for i in range(len(blocks_per_stage))]
        self.stages, in_ch = preact_stages(width, widths, blocks_per_stage)
        self.final_bn = nn.BatchNorm2d(in_ch)
        self.out_channels = in_ch

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        x = F.relu(self.final_bn(x))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


@MODELS.register("preact_resnet18")
class PreActResNet18(Classifier):
    """PreAct ResNet-18 classifier.

    Args:
        in_channels, num_classes, mean, std: see :class:`~auglabel.models.base.Classifier`.
        width: channels of the first stage (64 in the paper); stages double it.
    """

    def __init__(self, *, in_channels: int, num_classes: int, mean: Stats = None, std: Stats = None,
                 width: int = 64):
        positive_int(in_channels, "in_channels")
        positive_int(width, "preact_resnet18 width")
        body = PreActResNetBody(in_channels, (2, 2, 2, 2), width)
        super().__init__(body, body.out_channels, num_classes, in_channels=in_channels,
                         mean=mean, std=std)
        init_conv_bn(self.body)
