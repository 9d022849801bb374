"""Wide Residual Network WRN-depth-width (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

Three groups of n = (depth - 4) / 6 pre-activation basic blocks B(3,3) with widths 16k, 32k,
64k (k = widen factor) and strides 1, 2, 2, after a conv3x3(16) stem; dropout sits between
the two convolutions of a block (Sec. 2.4).  A final BN-ReLU and an adaptive average pool give
the features.  Published sizes for 10 classes: WRN-16-4 2.7M, WRN-40-2 2.2M, WRN-28-10 36.5M.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import MODELS, Classifier, Stats, init_conv_bn, positive_int
from .preact_resnet import PreActBlock, preact_stages


#: WRN's basic block B(3,3) is the pre-activation block with dropout between the convolutions.
WideBasicBlock = PreActBlock


class WideResNetBody(nn.Module):
    """Stem, three groups of wide blocks, final BN-ReLU, global average pool."""

    def __init__(self, in_channels: int, depth: int, width: int, dropout: float):
        super().__init__()
        blocks = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.groups, in_ch = preact_stages(16, widths, [blocks] * len(widths), dropout)
        self.final_bn = nn.BatchNorm2d(in_ch)
        self.out_channels = in_ch

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.final_bn(self.groups(self.stem(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


@MODELS.register("wide_resnet")
class WideResNet(Classifier):
    """WRN-``depth``-``width`` classifier.

    Args:
        in_channels, num_classes, mean, std: see :class:`~auglabel.models.base.Classifier`.
        depth: total depth 6n + 4 (16, 28, 40, ...).
        width: widen factor k (2, 4, 10, ...).
        dropout: dropout probability inside each block, in [0, 1) (0.3 in the paper's Table 6).
            Dropout draws from torch's global generator, seeded by the trainer.
    """

    def __init__(self, *, in_channels: int, num_classes: int, mean: Stats = None, std: Stats = None,
                 depth: int = 28, width: int = 10, dropout: float = 0.0):
        positive_int(in_channels, "in_channels")
        positive_int(depth, "wide_resnet depth", minimum=10)
        if (depth - 4) % 6 != 0:
            raise ConfigError(f"wide_resnet depth must be 6n + 4 (10, 16, 22, 28, 40...), got {depth}")
        positive_int(width, "wide_resnet width")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"wide_resnet dropout must be a number in [0, 1), got {dropout!r}")
        body = WideResNetBody(in_channels, depth, width, float(dropout))
        super().__init__(body, body.out_channels, num_classes, in_channels=in_channels,
                         mean=mean, std=std)
        self.depth, self.width = depth, width
        init_conv_bn(self.body)
