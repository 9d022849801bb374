"""A user's own model for tests/test_security.py: allowed only when the user allows ``security_helper``."""
from pathlib import Path

from torch import nn


class TinyNet(nn.Module):
    """Conv -> global pool -> linear: a classifier for 1-channel images."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))


def make_and_touch(path: str) -> TinyNet:
    """A factory function with a side effect: must never be called from a config."""
    Path(path).touch()
    return TinyNet()


NOT_A_CLASS = 3.5
