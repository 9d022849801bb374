"""The name -> function table of corruptions and the random source they draw from.

A corruption is ``fn(x, severity, rng) -> y``: ``x`` is a float batch (N, C, H, W) in [0, 1] on
any device, ``y`` the corrupted batch on the 0..255 scale (the value the reference script hands
to ``np.uint8``), ``rng`` a :class:`RandomSource`.  :func:`auglabel.corruptions.corrupt`
validates the input and quantises the result.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import torch
from torch import Tensor

CorruptionFn = Callable[[Tensor, int, "RandomSource"], Tensor]

#: Every registered corruption, name -> function.
CORRUPTIONS: dict[str, CorruptionFn] = {}


def register(name: str) -> Callable[[CorruptionFn], CorruptionFn]:
    def decorator(fn: CorruptionFn) -> CorruptionFn:
        if name in CORRUPTIONS:
            raise ValueError(f"corruption {name!r} is registered twice")
        CORRUPTIONS[name] = fn
        return fn

    return decorator


class RandomSource:
    """Seeded draws for one ``corrupt`` call.

    The draws come from a CPU ``torch.Generator`` and are then moved to the data's device, so a
    given seed gives the same corruption on every device.  The generator's seed mixes the user's
    seed with the corruption name, so that e.g. gaussian and speckle noise never share their
    noise.  It deliberately ignores the severity: the five severities of an image share their
    random draws (common random numbers) and differ only by the severity constants, which makes
    severity curves smooth and comparable.  Each severity on its own has the reference's
    distribution (the reference draws afresh for every severity).
    """

    def __init__(self, seed: int, name: str, device: torch.device, dtype: torch.dtype):
        digest = hashlib.sha256(f"auglabel.corruptions/{name}/{seed}".encode()).digest()
        self.generator = torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        self.device = device
        self.dtype = dtype

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> Tensor:
        """U[low, high), like ``np.random.uniform``."""
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64)
        return (low + (high - low) * u).to(self.device, self.dtype)

    def normal(self, shape: tuple[int, ...], mean: float, std: float) -> Tensor:
        z = torch.randn(shape, generator=self.generator, dtype=torch.float64)
        return (mean + std * z).to(self.device, self.dtype)

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> Tensor:
        """Integers in [low, high) (``high`` excluded, like ``np.random.randint``), int64."""
        return torch.randint(low, high, shape, generator=self.generator).to(self.device)

    def bernoulli(self, shape: tuple[int, ...], p: float) -> Tensor:
        return (torch.rand(shape, generator=self.generator, dtype=torch.float64) < p).to(self.device)

    def poisson(self, rates: Tensor) -> Tensor:
        counts = torch.poisson(rates.detach().to("cpu", torch.float64), generator=self.generator)
        return counts.to(self.device, self.dtype)
