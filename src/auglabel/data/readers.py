"""Readers for the on-disk formats of the benchmark image datasets.

Each reader turns files in their official layout into a :class:`RawImages` triple
(``uint8`` images ``(N, C, H, W)``, ``int64`` labels ``(N,)``, class names).  Whole files are
decoded with ``np.frombuffer`` / array reshapes, never image by image, except for image
folders where every file must be decoded by PIL anyway.  Anything missing, malformed or
truncated raises :class:`~auglabel.errors.DataError` naming the file.
"""
from __future__ import annotations

import gzip
import math
import pickle
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# idx type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

CIFAR_LAYOUTS = {
    # num_classes -> (folder, train files, test file, meta file, label key, names key)
    10: (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    100: ("cifar-100-python", ["train"], "test", "meta", b"fine_labels", b"fine_label_names"),
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class RawImages(NamedTuple):
    """One split as read from disk: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when it starts with the gzip magic (whatever its suffix)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing data file {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"corrupt idx file {path}: bad or truncated gzip data ({exc})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (MNIST / Fashion-MNIST format), plain or gzipped.

    Layout: two zero bytes, a type code, the number of dimensions ``d``, ``d`` big-endian
    int32 sizes, then exactly ``prod(sizes)`` big-endian items.  Returns a native-endian array.
    """
    data = _read_bytes(Path(path))

    def corrupt(what: str) -> DataError:
        return DataError(f"corrupt idx file {path}: {what}")

    if len(data) < 4:
        raise corrupt(f"only {len(data)} bytes, shorter than the 4-byte header")
    if data[0] != 0 or data[1] != 0:
        raise corrupt(f"bad magic number 0x{data[:4].hex()} (must start with two zero bytes)")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise corrupt(f"unknown data type code 0x{type_code:02x}")
    if ndim == 0:
        raise corrupt("zero dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise corrupt(f"header announces {ndim} dimensions but the file ends after "
                      f"{len(data)} bytes")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        raise corrupt(f"payload is {actual} bytes, dimensions {shape} need {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def _check_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> torch.Tensor:
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iu":
        raise DataError(f"corrupt labels in {source}: integer labels expected, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"corrupt labels in {source}: values {labels.min()}..{labels.max()} "
            f"outside 0..{num_classes - 1}"
        )
    return torch.from_numpy(labels.astype(np.int64))


def read_idx_pair(images_path: Path, labels_path: Path, classes: list[str]) -> RawImages:
    """Images (N, H, W) uint8 and labels (N,) uint8 idx files -> RawImages with C = 1."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"corrupt idx file {images_path}: expected uint8 (N, H, W) images, "
                        f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"corrupt idx file {labels_path}: expected {len(images)} labels, "
                        f"got shape {labels.shape}")
    tensor = torch.from_numpy(images).unsqueeze(1)
    return RawImages(tensor, _check_labels(labels, len(classes), labels_path), list(classes))


def _find_cifar_folder(root: Path, num_classes: int) -> Path:
    folder_name, _, _, meta_name, _, _ = CIFAR_LAYOUTS[num_classes]
    for candidate in (root, root / folder_name):
        if (candidate / meta_name).is_file():
            return candidate
    raise DataError(
        f"no CIFAR-{num_classes} data in {root}: expected {root / folder_name / meta_name} "
        f"(the extracted official python version)"
    )


def _unpickle(path: Path) -> dict:
    # pickle can run arbitrary code: only read CIFAR files from a source you trust.
    if not path.is_file():
        raise DataError(f"missing data file {path}")
    try:
        with open(path, "rb") as handle:
            content = pickle.load(handle, encoding="bytes")
    except Exception as exc:  # unpickling a damaged file can raise almost anything
        raise DataError(f"corrupt CIFAR file {path}: cannot unpickle "
                        f"({type(exc).__name__})") from None
    if not isinstance(content, dict):
        raise DataError(f"corrupt CIFAR file {path}: expected a dict, got {type(content).__name__}")
    return content


def read_cifar(root: str | Path, split: str, num_classes: int = 10) -> RawImages:
    """Read CIFAR-10 or CIFAR-100 (fine labels) from the official python pickles.

    ``root`` is the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or its
    parent.  Security: the files are Python pickles, and unpickling an untrusted file can
    execute arbitrary code; use only copies downloaded from the official site.
    """
    if num_classes not in CIFAR_LAYOUTS:
        raise DataError(f"CIFAR has 10 or 100 classes, not {num_classes}")
    if split not in ("train", "test"):
        raise DataError(f"CIFAR split must be 'train' or 'test', not {split!r}")
    _, train_files, test_file, meta_name, label_key, names_key = CIFAR_LAYOUTS[num_classes]
    folder = _find_cifar_folder(Path(root), num_classes)
    meta = _unpickle(folder / meta_name)
    names = meta.get(names_key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise DataError(f"corrupt CIFAR file {folder / meta_name}: {names_key!r} must list "
                        f"{num_classes} class names")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    images, labels = [], []
    for file_name in train_files if split == "train" else [test_file]:
        path = folder / file_name
        batch = _unpickle(path)
        if b"data" not in batch or label_key not in batch:
            raise DataError(f"corrupt CIFAR file {path}: missing key b'data' or {label_key!r}")
        data = np.asarray(batch[b"data"])
        batch_labels = np.asarray(batch[label_key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"corrupt CIFAR file {path}: b'data' must be uint8 (N, 3072), "
                            f"got {data.dtype} {data.shape}")
        if batch_labels.shape != (len(data),):
            raise DataError(f"corrupt CIFAR file {path}: {len(data)} images but labels of "
                            f"shape {batch_labels.shape}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(_check_labels(batch_labels, num_classes, path))
    return RawImages(torch.from_numpy(np.concatenate(images)), torch.cat(labels), classes)


def read_svhn(root: str | Path, split: str) -> RawImages:
    """Read SVHN (cropped digits) from ``{split}_32x32.mat``; label 10 is the digit 0.

    The file stores ``X`` as (H, W, C, N) uint8 and ``y`` as (N, 1).
    """
    import scipy.io

    if split not in ("train", "test", "extra"):
        raise DataError(f"SVHN split must be 'train', 'test' or 'extra', not {split!r}")
    path = Path(root) / f"{split}_32x32.mat"
    if not path.is_file():
        raise DataError(f"missing data file {path}")
    try:
        content = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError, OSError, TypeError... on damaged files
        raise DataError(f"corrupt SVHN file {path}: cannot load ({type(exc).__name__})") from None
    if "X" not in content or "y" not in content:
        raise DataError(f"corrupt SVHN file {path}: missing variable 'X' or 'y'")
    images, labels = content["X"], np.asarray(content["y"]).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != 3:
        raise DataError(f"corrupt SVHN file {path}: 'X' must be uint8 (H, W, 3, N), "
                        f"got {images.dtype} {images.shape}")
    if len(labels) != images.shape[3]:
        raise DataError(f"corrupt SVHN file {path}: {images.shape[3]} images, {len(labels)} labels")
    labels = np.where(labels == 10, 0, labels)
    tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))
    return RawImages(tensor, _check_labels(labels, 10, path), [str(d) for d in range(10)])


def _image_folder_classes(root: Path) -> list[str]:
    """Class names: sorted union over every split folder, so train and test agree on indices."""
    names = {
        class_dir.name
        for split_dir in root.iterdir() if split_dir.is_dir()
        for class_dir in split_dir.iterdir() if class_dir.is_dir()
    }
    return sorted(names)


def read_image_folder(root: str | Path, split: str) -> RawImages:
    """Read ``root/split/<class>/*.png|jpg|jpeg`` (PIL), class names sorted.

    Every image is converted to the mode of the first one (grey ``L`` or ``RGB``) and must
    have its size.  Class indices come from the union of class folders over all splits of
    ``root``, so a class missing from one split does not shift the others.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading image folders needs Pillow: pip install pillow") from None

    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"missing image folder {split_dir} (expected {root}/{split}/<class>/*.png)")
    classes = _image_folder_classes(root)
    files = [
        (path, label)
        for label, name in enumerate(classes) if (split_dir / name).is_dir()
        for path in sorted((split_dir / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    if not files:
        raise DataError(f"no .png/.jpg images in {split_dir}/<class>/")

    arrays, mode, size = [], None, None
    for path, _ in files:
        try:
            with Image.open(path) as image:
                if mode is None:
                    mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                    size = image.size
                if image.size != size:
                    raise DataError(f"image {path} is {image.size[0]}x{image.size[1]}, but the "
                                    f"first image is {size[0]}x{size[1]}; resize them all alike")
                arrays.append(np.asarray(image.convert(mode), dtype=np.uint8))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"corrupt image {path}: {exc}") from None
    images = np.stack(arrays)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return RawImages(torch.from_numpy(np.ascontiguousarray(images)), labels, classes)
