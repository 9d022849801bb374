"""Mini-batches of a :class:`~.streaming.StreamingImageFolder`, decoded in DataLoader worker processes.

The same interface and the same order as :class:`~.loader.DeviceLoader` (``__iter__``, ``__len__``,
``set_epoch``, ``iter_from(step)``, ``num_samples``, ``batch_size``, ``seed``, ``rank``, ``world_size``):

* training: one permutation per epoch from the generator ``DeviceLoader`` uses (``seed * 100_003 + epoch``,
  identical on every rank), each global batch cut into ``world_size`` equal slices, the last incomplete
  global batch dropped: the same rows in the same steps as the in-memory loader over the same indices, so
  shards are disjoint, cover the epoch and every rank has the same number of steps;
* evaluation: rank r takes rows ``r, r + W, ...`` (exact shards: nothing duplicated, nothing missing);
* ``iter_from(step)`` yields exactly the batches the full iteration yields from ``step`` on (the random crops
  are seeded per sample by (seed, epoch, dataset index), not by worker or position);
* ``shuffled(batch_size, seed, clean=)``: a training-order loader of the same data (AutoDO's hyper pass), whose
  samples are decoded as training decodes them or, with ``clean``, by the evaluation transform.

:func:`decode_images` decodes chosen rows (evaluation transform) into one in-memory uint8 tensor, for the
features that work on image tensors (the robustness suites on a test subsample).

Workers (``num_workers``, 0: decode in this process) return uint8 batches with their dataset indices; this
process moves them to the device (pinned when it is CUDA), divides by 255 and builds the
:class:`~auglabel.batch.Batch`, so augmentation runs batched on the device as with in-memory data.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..batch import Batch
from ..errors import ConfigError, DataError
from .loader import EpochOrder
from .streaming import StreamingImageFolder

#: rows decoded per batch by :func:`decode_images`
DECODE_BATCH = 256


class _Decoder(Dataset):
    """Items keyed by ``(row, epoch)``: (uint8 image or None, row, label, error message or None)."""

    def __init__(self, dataset: StreamingImageFolder, train: bool, seed: int):
        self.dataset, self.train, self.seed = dataset, train, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor | None, int, int, str | None]:
        row, epoch = key
        label = int(self.dataset.labels[row])
        try:
            return self.dataset.decode(row, train=self.train, seed=self.seed, epoch=epoch), row, label, None
        except DataError as exc:  # raised in this process with one line, not as a worker traceback
            return None, row, label, str(exc)


def _collate(items: list[tuple[Tensor | None, int, int, str | None]]) -> dict[str, Any]:
    errors = [error for _, _, _, error in items if error is not None]
    if errors:
        return {"error": errors[0]}
    return {"images": torch.stack([image for image, _, _, _ in items]),
            "index": torch.tensor([row for _, row, _, _ in items], dtype=torch.int64),
            "labels": torch.tensor([label for _, _, label, _ in items], dtype=torch.int64)}


class _Plan:
    """The batch sampler of the persistent DataLoader: the keys of the batches of the current iteration."""

    def __init__(self) -> None:
        self.batches: list[Tensor] = []
        self.epoch = 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches, epoch = self.batches, self.epoch  # keys made lazily: no per-epoch list of every sample
        return ([(row, epoch) for row in rows.tolist()] for rows in batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamingLoader(EpochOrder):
    """Iterates :class:`~auglabel.batch.Batch` objects over ``indices`` of a streamed dataset.

    Args:
        dataset: the :class:`StreamingImageFolder` (its labels are the batch labels).
        indices, num_classes, batch_size, train, seed, device, rank, world_size: as for ``DeviceLoader``.
        num_workers: decoding processes (0: decode in this process).
        prefetch_factor: batches each worker decodes ahead.
        train_transform: decode with the training transform (random-resized crop); None: as ``train``.
            ``train=True, train_transform=False`` is a shuffled loader of clean (evaluation-transform) samples.
    """

    def __init__(self, dataset: StreamingImageFolder, indices: Tensor, num_classes: int, batch_size: int, *,
                 train: bool, seed: int = 0, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                 num_workers: int = 2, prefetch_factor: int = 4, train_transform: bool | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        if train and batch_size % world_size:
            raise ConfigError(f"batch size {batch_size} is not divisible by {world_size} processes")
        if train and len(indices) < batch_size:
            raise ConfigError(f"training split has {len(indices)} samples, fewer than one batch of {batch_size}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"data.num_workers must be an integer >= 0, got {num_workers!r}")
        self.dataset = dataset
        self.labels = dataset.labels
        self.indices = torch.as_tensor(indices).to(torch.int64)
        self.num_classes, self.batch_size, self.train, self.seed = num_classes, batch_size, train, seed
        self.device = torch.device(device)
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.train_transform = train if train_transform is None else bool(train_transform)
        self._decoder = _Decoder(dataset, self.train_transform, seed)
        self._plan = _Plan()
        self._loader: DataLoader | None = None

    @property
    def images(self) -> Tensor:
        return self.dataset.images  # a one-line DataError: there is no in-memory tensor

    def shuffled(self, batch_size: int, seed: int, *, clean: bool = False) -> StreamingLoader:
        """A training-order loader (a permutation per epoch, the last incomplete global batch dropped) over the
        same rows, device, shard and workers with this global ``batch_size`` and ``seed``; its samples are
        decoded by this loader's transform or, with ``clean``, by the evaluation transform (no random crop).
        Call its :meth:`close` when done with it."""
        return StreamingLoader(self.dataset, self.indices, self.num_classes, batch_size, train=True, seed=seed,
                               device=self.device, rank=self.rank, world_size=self.world_size,
                               num_workers=self.num_workers, prefetch_factor=self.prefetch_factor,
                               train_transform=False if clean else self.train_transform)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)

    def iter_from(self, start_step: int) -> Iterator[Batch]:
        """The epoch's batches from step ``start_step`` on (0-based), as the full iteration yields them."""
        for item in self._items(self.batch_rows(start_step)):
            yield self._to_batch(item)

    def _items(self, batches: list[Tensor]) -> Iterator[dict[str, Any]]:
        """The collated uint8 items (on the host) of ``batches`` of rows, in order."""
        if not batches:
            return
        if self.num_workers == 0:
            for rows in batches:
                yield _collate([self._decoder[(row, self.epoch)] for row in rows.tolist()])
            return
        self._plan.batches, self._plan.epoch = batches, self.epoch
        yield from self._dataloader()

    def _dataloader(self) -> DataLoader:
        if self._loader is None:
            self._loader = DataLoader(self._decoder, batch_sampler=self._plan, num_workers=self.num_workers,
                                      collate_fn=_collate, pin_memory=self.device.type == "cuda",
                                      persistent_workers=True, prefetch_factor=self.prefetch_factor)
        return self._loader

    def _to_batch(self, item: dict[str, Any]) -> Batch:
        if "error" in item:
            raise DataError(item["error"])
        images = item["images"].to(self.device, non_blocking=True)
        return Batch(inputs=images.float().div_(255.0), labels=item["labels"].to(self.device, non_blocking=True),
                     index=item["index"].to(self.device, non_blocking=True), num_classes=self.num_classes)

    def close(self) -> None:
        """Stop the worker processes now (they also stop when the loader is garbage-collected)."""
        iterator = getattr(self._loader, "_iterator", None) if self._loader is not None else None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._loader = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  interpreter shutdown
            pass


def decode_images(dataset: StreamingImageFolder, indices: Tensor, *, num_workers: int = 0) -> Tensor:
    """Rows ``indices`` of ``dataset`` decoded by the evaluation transform (resize, centre crop) into one uint8
    (N, C, S, S) tensor on the host, in the order of ``indices``; DataError (one line) for an unreadable file."""
    indices = torch.as_tensor(indices, dtype=torch.int64)
    if len(indices) == 0:
        return torch.empty((0, *dataset.image_shape), dtype=torch.uint8)
    loader = StreamingLoader(dataset, indices, dataset.num_classes, DECODE_BATCH, train=False,
                             num_workers=min(num_workers, -(-len(indices) // DECODE_BATCH)))
    try:
        parts = []
        for item in loader._items(loader.batch_rows()):
            if "error" in item:
                raise DataError(item["error"])
            parts.append(item["images"])
    finally:
        loader.close()
    return torch.cat(parts)
