"""On-device mini-batch iteration over uint8 image tensors.

Images stay uint8 on the host (or are preloaded once onto the GPU) and each mini-batch is one
fancy-indexing gather, one transfer and one ``/255``: no per-image Python in the training loop.

Distributed semantics:
* training: one global permutation per epoch (seeded by ``seed + epoch``, identical on every
  rank); each global batch of ``batch_size`` rows is cut into ``world_size`` equal slices, so
  N processes see exactly the samples one process would see in that step;
* evaluation: rank r takes rows ``r, r + W, r + 2W, ...``: exact shards, no padded duplicates.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from ..batch import Batch
from ..errors import ConfigError


class EpochOrder:
    """The data order every loader shares: a seeded permutation per epoch for training, cut into global
    batches of which each rank takes its slice; ``rank::world_size`` shards for evaluation (exact, complete).

    Needs ``indices``, ``batch_size``, ``train``, ``seed``, ``rank``, ``world_size`` and ``epoch`` attributes.
    """

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def close(self) -> None:
        """Release what the loader holds (a streaming loader's worker processes); a no-op in memory."""

    def _order(self) -> Tensor:
        if not self.train:
            return self.indices[self.rank::self.world_size]
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return self.indices[torch.randperm(len(self.indices), generator=generator)]

    def __len__(self) -> int:
        if self.train:
            return len(self.indices) // self.batch_size
        shard = len(self.indices[self.rank::self.world_size])
        return -(-shard // self.batch_size)

    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        if self.train:
            return len(self) * (self.batch_size // self.world_size)
        return len(self.indices[self.rank::self.world_size])

    def batch_rows(self, start_step: int = 0) -> list[Tensor]:
        """The dataset rows of this rank's batches from step ``start_step`` on (this epoch)."""
        order = self._order()
        if self.train:
            local = self.batch_size // self.world_size
            return [order[step * self.batch_size + self.rank * local:][:local] for step in range(start_step, len(self))]
        return [order[start:start + self.batch_size]
                for start in range(start_step * self.batch_size, len(order), self.batch_size)]


class DeviceLoader(EpochOrder):
    """Iterates :class:`~auglabel.batch.Batch` objects over ``indices`` of an image dataset.

    Args:
        images: uint8 tensor (N, C, H, W) of the whole dataset.
        labels: int64 tensor (N,).
        indices: which dataset rows this loader covers (e.g. the training split).
        num_classes: K, stored on each batch.
        batch_size: GLOBAL batch size (split across ranks when training).
        train: shuffle each epoch and drop the last incomplete global batch.
        seed: base seed of the per-epoch permutation.
        device: where batches are produced.
        rank, world_size: this process's shard.
    """

    def __init__(self, images: Tensor, labels: Tensor, indices: Tensor, num_classes: int,
                 batch_size: int, *, train: bool, seed: int = 0, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        if train and batch_size % world_size:
            raise ConfigError(f"batch size {batch_size} is not divisible by {world_size} processes")
        if train and len(indices) < batch_size:
            raise ConfigError(f"training split has {len(indices)} samples, fewer than one batch of {batch_size}")
        self.device = torch.device(device)
        on_gpu = self.device.type == "cuda"
        self.images = images.to(self.device) if on_gpu else images
        self.labels = labels.to(self.device) if on_gpu else labels
        self.indices = indices.to(torch.int64)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def shuffled(self, batch_size: int, seed: int, *, clean: bool = False) -> DeviceLoader:
        """A training-order loader (a permutation per epoch, the last incomplete global batch dropped) over the
        same rows, labels, device and shard with this global ``batch_size`` and ``seed``; ``clean`` changes
        nothing here (in-memory samples are the stored pixels), it matters for streamed data."""
        return DeviceLoader(self.images, self.labels, self.indices, self.num_classes, batch_size, train=True,
                            seed=seed, device=self.device, rank=self.rank, world_size=self.world_size)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)

    def iter_from(self, start_step: int) -> Iterator[Batch]:
        """The epoch's batches from training step ``start_step`` on (0-based): the same batches the full
        iteration yields there, so a run resumed in the middle of an epoch sees the same data order."""
        for rows in self.batch_rows(start_step):
            yield self._batch(rows)

    def _batch(self, rows: Tensor) -> Batch:
        rows_here = rows.to(self.images.device)
        images = self.images[rows_here].to(self.device, non_blocking=True)
        labels = self.labels[rows_here].to(self.device, non_blocking=True)
        return Batch(inputs=images.float().div_(255.0), labels=labels,
                     index=rows.to(self.device, non_blocking=True), num_classes=self.num_classes)
