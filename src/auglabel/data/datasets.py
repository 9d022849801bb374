"""Named datasets held in memory as uint8 tensors, and ``load_dataset`` to get them by name.

Every benchmark here fits in memory (Fashion-MNIST train is 47 MB as uint8), so a dataset is
just two tensors; the loader moves them to the accelerator once and batches there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .readers import RawImages, read_cifar, read_idx_pair, read_image_folder, read_svhn
from .roots import resolve_root
from .split import stratified_split

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(d) for d in range(10)]
SPLITS = ("train", "test")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass(repr=False)
class ImageDataset:
    """``images`` uint8 (N, C, H, W) contiguous, ``labels`` int64 (N,) in ``0..len(classes)-1``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"dataset {self.name!r}: images must be uint8 (N, C, H, W), "
                            f"got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise DataError(f"dataset {self.name!r}: {len(self.images)} images but labels of "
                            f"shape {tuple(self.labels.shape)}")
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64)
        self.classes = list(self.classes)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"dataset {self.name!r}: labels must lie in 0..{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, images={tuple(self.images.shape)}, "
                f"num_classes={self.num_classes})")

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """The samples at ``indices`` (in that order), as a new dataset with copied tensors."""
        index = torch.as_tensor(indices, dtype=torch.int64, device=self.labels.device)
        return ImageDataset(self.images[index].contiguous(), self.labels[index].clone(),
                            self.classes, self.name)

    def mean_std(self, chunk_size: int = 8192) -> tuple[list[float], list[float]]:
        """Per-channel mean and (population) standard deviation of ``images / 255``.

        Sums of values and squares are exact integers (numpy on a CPU view: on CPU it is
        several times faster than torch's reductions), so the result has no rounding drift.
        """
        images = self.images.detach().cpu().numpy()
        channels = images.shape[1]
        total = np.zeros(channels, dtype=np.int64)
        total_sq = np.zeros(channels, dtype=np.int64)
        for start in range(0, len(images), chunk_size):
            chunk = images[start:start + chunk_size].astype(np.uint16)
            total += chunk.sum(axis=(0, 2, 3), dtype=np.int64)
            total_sq += (chunk * chunk).sum(axis=(0, 2, 3), dtype=np.int64)
        count = max(images.shape[0] * images.shape[2] * images.shape[3], 1)
        means = [int(t) / count / 255.0 for t in total]
        # count * sum(x^2) - sum(x)^2 in Python integers: exact, never negative
        stds = [((count * int(q) - int(t) ** 2) ** 0.5) / count / 255.0
                for t, q in zip(total, total_sq)]
        return means, stds


def _wrap(raw: RawImages, name: str) -> ImageDataset:
    return ImageDataset(raw.images, raw.labels, raw.classes, name)


def _find_idx_file(root: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` in ``root`` or torchvision's ``raw/`` sub-folders."""
    folders = [root, root / "raw", root / "FashionMNIST" / "raw", root / "MNIST" / "raw"]
    for folder in folders:
        for file_name in (stem, stem + ".gz"):
            if (folder / file_name).is_file():
                return folder / file_name
    raise DataError(f"missing {stem}(.gz) in {root}")


def _load_idx(name: str, classes: list[str]) -> Callable[[str, Path | None], ImageDataset]:
    def load(split: str, root: Path | None) -> ImageDataset:
        folder = resolve_root(name, root)
        prefix = "train" if split == "train" else "t10k"
        images = _find_idx_file(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx_file(folder, f"{prefix}-labels-idx1-ubyte")
        return _wrap(read_idx_pair(images, labels, classes), name)

    return load


def _load_cifar(num_classes: int) -> Callable[[str, Path | None], ImageDataset]:
    name = f"cifar{num_classes}"

    def load(split: str, root: Path | None) -> ImageDataset:
        return _wrap(read_cifar(resolve_root(name, root), split, num_classes), name)

    return load


def _load_svhn(split: str, root: Path | None) -> ImageDataset:
    return _wrap(read_svhn(resolve_root("svhn", root), split), "svhn")


def _load_image_folder(split: str, root: Path | None) -> ImageDataset:
    if root is None:
        raise ConfigError("dataset 'imagefolder' needs a root: pass --data.root DIR "
                          "holding DIR/train/<class>/*.png and DIR/test/<class>/*.png")
    return _wrap(read_image_folder(resolve_root("imagefolder", root), split), "imagefolder")


def _load_digits(split: str, root: Path | None) -> ImageDataset:
    """scikit-learn's embedded 8x8 digits (1797 images); values 0..16 scaled to 0..255.

    The data has no official test split, so a fixed-seed stratified 80/20 split provides one.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    scaled = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = torch.from_numpy(scaled).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_index, test_index = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    dataset = ImageDataset(images, labels, DIGIT_CLASSES, "digits")
    return dataset.subset(train_index if split == "train" else test_index)


LOADERS: dict[str, Callable[[str, Path | None], ImageDataset]] = {
    "fashion_mnist": _load_idx("fashion_mnist", FASHION_MNIST_CLASSES),
    "mnist": _load_idx("mnist", DIGIT_CLASSES),
    "cifar10": _load_cifar(10),
    "cifar100": _load_cifar(100),
    "svhn": _load_svhn,
    "imagefolder": _load_image_folder,
    "digits": _load_digits,
}


def dataset_names() -> list[str]:
    from .streaming import STREAMED

    return sorted([*LOADERS, *STREAMED])


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, **options):  # noqa: ANN201
    """Load split ``split`` ("train" or "test") of dataset ``name`` into memory.

    ``root`` overrides the data-root lookup of :func:`auglabel.data.roots.resolve_root`.  A streamed dataset
    (``image_folder_stream``, :mod:`.streaming`; ``tar_shards``, :mod:`.tar_shards`) is listed, not read, and
    returned as a :class:`~.streaming.StreamingImageFolder` (:class:`~.tar_shards.TarShards` for tar shards);
    ``options`` (``image_size``, ``crop_scale``) are for those only.
    """
    from .streaming import STREAMED

    canonical = name.lower().replace("-", "_")
    if canonical not in LOADERS and canonical not in STREAMED:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if canonical in STREAMED:
        return STREAMED[canonical](split, None if root is None else Path(root), **options)
    if options:
        raise ConfigError(f"{', '.join(sorted(options))} apply to streamed datasets ({', '.join(sorted(STREAMED))}), "
                          f"not to {name!r}")
    return LOADERS[canonical](split, None if root is None else Path(root))
