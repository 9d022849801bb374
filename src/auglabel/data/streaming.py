"""Image folders streamed from disk: for datasets that do not fit in memory, or images of mixed sizes.

``data: {name: image_folder_stream, root: DIR, image_size: 32}`` reads ``DIR/train/<class>/*`` and
``DIR/test/<class>/*`` (.png/.jpg/.jpeg; class indices from the sorted union of class folders, files sorted
by name: the listing is deterministic and nothing is decoded to build it).  Images are decoded with PIL in
DataLoader worker processes (:class:`~.stream_loader.StreamingLoader`) and brought to ``image_size`` x
``image_size``:

* training batches: a random-resized crop (torchvision's algorithm: area fraction ``U(crop_scale, 1)``,
  aspect ratio log-uniform in [3/4, 4/3]) resized to the output size, drawn from a generator seeded by
  (seed, epoch, dataset index), so the crop of a sample depends neither on the worker that decodes it nor
  on where a run resumed; ``crop_scale >= 1`` uses the evaluation transform instead;
* evaluation batches: the shorter side resized to ``image_size``, then the centre ``image_size`` square.

Images are returned as uint8 (C, S, S) tensors (grey if the first image is grey, else RGB), batched with
their dataset index and label, and become the same :class:`~auglabel.batch.Batch` as in-memory data on the
device, where augmentation runs batched as before.  Whole-dataset tensors (``.images``) do not exist here
(reading one is a one-line DataError): AutoDO's hyper pass takes shuffled streaming loaders
(``StreamingLoader.shuffled``), ``evaluate`` / ``calibrate`` stream their splits, and the robustness suites that
work on image tensors decode just their test selection (:func:`~.stream_loader.decode_images`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
#: at most this many (evenly spaced) images are decoded to estimate the per-channel mean and std
MEAN_STD_SAMPLES = 1024
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def _pil():  # noqa: ANN202
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise DataError("streaming image folders needs Pillow: pip install pillow") from None
    return Image, ImageOps, UnidentifiedImageError


def crop_box(width: int, height: int, scale_min: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random-resized-crop box (left, top, right, bottom) as torchvision draws it (10 tries, then centre)."""
    area = width * height
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(scale_min, 1.0)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    ratio = width / height
    if ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif ratio > RATIO[1]:
        w, h = int(round(height * RATIO[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def decode_image(source: Any, what: str, row: int, *, train: bool, seed: int, epoch: int, image_size: int,
                 channels: int, crop_scale: float) -> Tensor:
    """The image at ``source`` (a path or a binary file object, for ``Image.open``) of dataset row ``row`` as
    uint8 (C, S, S): the seeded random-resized crop of training (``train`` and ``crop_scale < 1``) or the
    evaluation resize + centre crop; DataError (one line, naming ``what``) when it cannot be decoded.
    Every streamed dataset decodes through this function, so equal bytes give equal samples."""
    Image, ImageOps, Unidentified = _pil()
    size, mode = image_size, "RGB" if channels == 3 else "L"
    try:
        with Image.open(source) as image:
            if train and crop_scale < 1:
                rng = np.random.default_rng((seed, epoch, row))
                box = crop_box(image.width, image.height, crop_scale, rng)
                width = image.width
                # JPEG: decode at 1/2, 1/4, 1/8 scale while the crop keeps >= S pixels
                image.draft(mode, (max(1, image.width * size // max(box[2] - box[0], 1)),
                                   max(1, image.height * size // max(box[3] - box[1], 1))))
                factor = image.width / width
                box = tuple(v * factor for v in box)
                out = image.convert(mode).resize((size, size), Image.BILINEAR, box=box)
            else:
                image.draft(mode, (size, size))
                out = ImageOps.fit(image.convert(mode), (size, size), method=Image.BILINEAR, centering=(0.5, 0.5))
            array = np.array(out, dtype=np.uint8)  # a writable copy
    except (Unidentified, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"unreadable image {what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def image_channels(source: Any, what: str) -> int:
    """1 when the image at ``source`` (path or binary file object) is grey, else 3; DataError when unreadable."""
    Image, _, Unidentified = _pil()
    try:
        with Image.open(source) as image:
            return 1 if image.mode in GREY_MODES else 3
    except (Unidentified, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"unreadable image {what}: {exc}") from None


def check_stream_options(name: str, image_size: Any, crop_scale: Any) -> None:
    """ConfigError (one line) unless ``image_size`` is an integer >= 1 and ``crop_scale > 0``."""
    if image_size is None or isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"dataset {name!r} needs data.image_size, an integer >= 1 "
                          f"(the output side), got {image_size!r}")
    if not 0 < crop_scale:
        raise ConfigError(f"data.crop_scale must be > 0, got {crop_scale!r}")


class StreamingImageFolder:
    """The files of one split of an image folder, decoded on demand (see the module docstring).

    Attributes:
        folder: the split folder (``root/split``); ``files`` are paths relative to it (bytes, one array, so
            forked workers share it without copy-on-write of millions of Python objects).
        labels: int64 (N,); classes: class names; name: dataset name.
        image_size: output side S; channels: 1 (grey) or 3 (RGB); crop_scale: random-resized-crop area minimum.
    """

    def __init__(self, folder: Path, files: np.ndarray, labels: Tensor, classes: Sequence[str], name: str, *,
                 image_size: int, channels: int, crop_scale: float = 0.08):
        if len(files) != len(labels):
            raise DataError(f"dataset {name!r}: {len(files)} files but {len(labels)} labels")
        self.folder, self.files = Path(folder), files
        self.labels = labels.to(torch.int64)
        self.classes, self.name = list(classes), name
        self.image_size, self.channels, self.crop_scale = int(image_size), int(channels), float(crop_scale)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    @property
    def images(self) -> Tensor:
        raise DataError(f"dataset {self.name!r} is streamed from disk and has no in-memory image tensor; decode "
                        "the rows needed (auglabel.data.stream_loader.decode_images) or use an in-memory dataset "
                        "(e.g. data.name: imagefolder)")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"StreamingImageFolder(name={self.name!r}, folder={str(self.folder)!r}, n={len(self)}, "
                f"image_shape={self.image_shape}, num_classes={self.num_classes})")

    def _like(self, files: np.ndarray, labels: Tensor) -> StreamingImageFolder:
        return StreamingImageFolder(self.folder, files, labels, self.classes, self.name, image_size=self.image_size,
                                    channels=self.channels, crop_scale=self.crop_scale)

    def subset(self, indices: Tensor | Sequence[int]) -> StreamingImageFolder:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return self._like(self.files[index.numpy()], self.labels[index].clone())

    def with_labels(self, labels: Tensor) -> StreamingImageFolder:
        """The same files with other labels (the noisy labels of ``data.noise_ratio``)."""
        return self._like(self.files, labels.to(torch.int64))

    def path(self, row: int) -> Path:
        return self.folder / os.fsdecode(self.files[row])

    def decode(self, row: int, *, train: bool, seed: int = 0, epoch: int = 0) -> Tensor:
        """Sample ``row`` as uint8 (C, S, S); DataError (one line) when the file cannot be decoded."""
        path = self.path(row)
        return decode_image(path, str(path), row, train=train, seed=seed, epoch=epoch, image_size=self.image_size,
                            channels=self.channels, crop_scale=self.crop_scale)

    def mean_std(self, max_images: int = MEAN_STD_SAMPLES) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of ``images / 255`` (evaluation transform), estimated on at most
        ``max_images`` evenly spaced samples (all of them for a small dataset); deterministic."""
        count = min(len(self), max_images)
        rows = np.unique(np.linspace(0, len(self) - 1, count).round().astype(np.int64)) if count else []
        total = np.zeros(self.channels, dtype=np.int64)
        total_sq = np.zeros(self.channels, dtype=np.int64)
        for row in rows:
            image = self.decode(int(row), train=False).numpy().astype(np.int64)
            total += image.sum(axis=(1, 2))
            total_sq += (image * image).sum(axis=(1, 2))
        n = max(len(rows) * self.image_size * self.image_size, 1)
        means = [int(t) / n / 255.0 for t in total]
        stds = [((n * int(q) - int(t) ** 2) ** 0.5) / n / 255.0 for t, q in zip(total, total_sq)]
        return means, stds


def list_image_folder(root: str | Path, split: str) -> tuple[Path, np.ndarray, Tensor, list[str]]:
    """(split folder, relative file paths, labels, classes) of ``root/split/<class>/*``; sorted, deterministic."""
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"missing image folder {split_dir} (expected {root}/{split}/<class>/*.jpg)")
    classes = sorted({entry.name for split_path in root.iterdir() if split_path.is_dir()
                      for entry in os.scandir(split_path) if entry.is_dir()})
    files: list[bytes] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        names = sorted(entry.name for entry in os.scandir(class_dir)
                       if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file())
        files.extend(os.fsencode(f"{name}/{file_name}") for file_name in names)
        labels.extend([label] * len(names))
    if not files:
        raise DataError(f"no .png/.jpg images in {split_dir}/<class>/")
    return split_dir, np.array(files, dtype=bytes), torch.tensor(labels, dtype=torch.int64), classes


def open_image_folder_stream(split: str, root: Path | None, *, image_size: int | None = None,
                             crop_scale: float = 0.08) -> StreamingImageFolder:
    """Split ``split`` of the image folder at ``root`` as a :class:`StreamingImageFolder`."""
    if root is None:
        raise ConfigError("dataset 'image_folder_stream' needs a root: pass --data.root DIR "
                          "holding DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg")
    check_stream_options("image_folder_stream", image_size, crop_scale)
    folder, files, labels, classes = list_image_folder(root, split)
    first = folder / os.fsdecode(files[0])
    channels = image_channels(first, str(first))
    return StreamingImageFolder(folder, files, labels, classes, "image_folder_stream", image_size=image_size,
                                channels=channels, crop_scale=crop_scale)


def open_tar_shards(split: str, root: Path | None, **options: Any) -> StreamingImageFolder:
    """Split ``split`` of the WebDataset-style tar shards at ``root`` (:mod:`.tar_shards`)."""
    from .tar_shards import open_tar_shards as open_shards  # imported here: tar_shards builds on this module

    return open_shards(split, root, **options)


#: streamed datasets by config name: ``(split, root, **options) -> StreamingImageFolder``
STREAMED: dict[str, Callable[..., StreamingImageFolder]] = {"image_folder_stream": open_image_folder_stream,
                                                            "tar_shards": open_tar_shards}


def is_streamed(name: str) -> bool:
    return name.lower().replace("-", "_") in STREAMED


def stream_options(data: Any) -> dict[str, Any]:
    """The options a ``data`` config section passes to a streamed dataset (none for in-memory ones)."""
    if is_streamed(data.name):
        return {"image_size": data.image_size, "crop_scale": data.crop_scale}
    if getattr(data, "image_size", None) is not None:
        raise ConfigError(f"data.image_size applies to streamed datasets ({', '.join(sorted(STREAMED))}); "
                          f"dataset {data.name!r} is read whole into memory at its own size")
    return {}


def sample_shape(dataset: Any) -> tuple[int, ...]:
    """(C, H, W) of one sample of an in-memory or streamed dataset."""
    if isinstance(dataset, StreamingImageFolder):
        return dataset.image_shape
    return tuple(dataset.images.shape[1:])
