"""-C data sets on disk, in the layout of the official CIFAR-10-C / CIFAR-100-C downloads.

Layout (Hendrycks & Dietterich 2019, the released ``CIFAR-10-C.tar``): one ``<corruption>.npy``
per corruption holding the 5 severities stacked severity-major, ``(5 * N, H, W, C)`` uint8
(rows ``(s - 1) * N .. s * N - 1`` are severity ``s``), and ``labels.npy`` ``(5 * N,)``, the N
labels tiled 5 times.  We always write channel-last 4-D arrays, ``C = 1`` for grey images; the
reader also accepts grey ``(5 * N, H, W)`` files (as MNIST-C-style sets store them).

Written sets carry ``auglabel-corrupted.json`` (format version, seed, image shape, a digest of the
clean images), so a directory is reused as a cache only for the very same clean images and seed;
the official downloads have no such file and are read as they are.

Generation runs :func:`auglabel.corruptions.corrupt` on chunks of :data:`CHUNK_SIZE` images;
chunk ``k`` uses the seed ``hash(seed, k)``, so every image gets its own draws and memory stays
bounded.  Both the chunking and the seed rule are part of :data:`FORMAT_VERSION`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..corruptions import SEVERITIES, corrupt, corruption_names
from ..data.roots import cache_dir
from ..errors import ConfigError, DataError
from ..report.io import write_bytes_atomic
from .adversarial import show_progress

FORMAT_VERSION = 1
CHUNK_SIZE = 1000
LABELS_FILE = "labels.npy"
META_FILE = "auglabel-corrupted.json"
NUM_SEVERITIES = len(SEVERITIES)


def check_corruption_names(names: Sequence[str] | None) -> list[str]:
    """``names`` (default: all 19) validated against the known corruptions; ConfigError otherwise."""
    known = corruption_names()
    if names is None:
        return known
    if isinstance(names, str) or not names:
        raise ConfigError("corruption names must be a non-empty list of names")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown corruption {unknown[0]!r}; choose from: {', '.join(known)}")
    return list(dict.fromkeys(names))


def images_digest(images: Tensor) -> str:
    """SHA-256 of the uint8 pixels (contiguous NCHW bytes) and their shape."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def corrupted_cache_dir(dataset: str, indices: Tensor, seed: int, images: Tensor | None = None) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/auglabel/corrupted/<dataset>-<hash>`` for a test selection.

    The hash covers the dataset name, the test indices, the seed, :data:`FORMAT_VERSION` and,
    when given, the clean images themselves (two roots holding different files never collide).
    """
    digest = hashlib.sha256(f"{dataset}/{seed}/v{FORMAT_VERSION}/".encode())
    digest.update(indices.detach().cpu().to(torch.int64).numpy().tobytes())
    if images is not None:
        digest.update(images_digest(images).encode())
    return cache_dir().parent / "corrupted" / f"{dataset}-{digest.hexdigest()[:16]}"


def _chunk_seed(seed: int, chunk: int) -> int:
    digest = hashlib.sha256(f"auglabel.corrupted-set/{seed}/{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _save_npy_atomic(array: np.ndarray, path: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _array_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npy file without reading its data; DataError when unreadable."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else 'not an .npy file'}") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} is not a single .npy array")
    return tuple(array.shape), array.dtype


def _check_clean_images(images: Tensor, labels: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = (tuple(images.shape), images.dtype) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"-C generation needs uint8 images (N, C, H, W), got {got}")
    if images.shape[1] not in (1, 3) or len(images) == 0:
        raise DataError(f"-C generation needs a non-empty set of 1- or 3-channel images, got {tuple(images.shape)}")
    if not isinstance(labels, Tensor) or labels.shape != (len(images),):
        raise DataError(f"-C generation needs ({len(images)},) labels, got "
                        f"{tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")


def _meta(images: Tensor, seed: int) -> dict:
    return {"format_version": FORMAT_VERSION, "seed": int(seed), "num_images": len(images),
            "image_shape": list(images.shape[1:]), "images_sha256": images_digest(images),
            "layout": "<corruption>.npy: (5*N, H, W, C) uint8, severity-major; labels.npy: (5*N,)"}


def generate_corrupted_set(images: Tensor, labels: Tensor, out_dir: str | os.PathLike,
                           names: Sequence[str] | None = None, seed: int = 0,
                           progress: bool | None = None) -> Path:
    """Write the -C set of ``images`` (uint8 (N, C, H, W)) and ``labels`` (N,) into ``out_dir``.

    Every file is written to a temporary name and moved into place, so an interrupted run leaves
    only whole files; files already present with the right shape are kept (the cache).  A
    directory holding a set of other images, labels or seed is refused with a DataError.
    Returns ``out_dir``.
    """
    names = check_corruption_names(names)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"corruption seed must be an integer, got {seed!r}")
    _check_clean_images(images, labels)
    out = Path(out_dir)
    meta, labels_np = _meta(images, seed), np.tile(labels.cpu().numpy().astype(np.int64), NUM_SEVERITIES)
    if out.exists() and not out.is_dir():
        raise DataError(f"-C output {out} exists and is not a directory")
    if (out / META_FILE).is_file():
        try:
            old = json.loads((out / META_FILE).read_text())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict) or any(old.get(k) != meta[k] for k in meta if k != "layout"):
            raise DataError(f"{out} holds a -C set of other images or another seed; pass another --out or delete it")
    if (out / LABELS_FILE).is_file():
        existing = np.load(out / LABELS_FILE, allow_pickle=False)
        if existing.shape != labels_np.shape or not np.array_equal(existing, labels_np):
            raise DataError(f"{out / LABELS_FILE} holds other labels; pass another --out or delete it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc.strerror or exc}") from None
    write_bytes_atomic((json.dumps(meta, indent=2) + "\n").encode(), out / META_FILE)
    if not (out / LABELS_FILE).is_file():
        _save_npy_atomic(labels_np, out / LABELS_FILE)
    n, c, h, w = images.shape
    todo = [name for name in names if not _is_valid_file(out / f"{name}.npy", (NUM_SEVERITIES * n, h, w, c))]
    show = show_progress() if progress is None else progress
    bar = tqdm(total=len(todo) * NUM_SEVERITIES, desc="corrupting", leave=False, disable=not show)
    for name in todo:
        stacked = np.empty((NUM_SEVERITIES, n, h, w, c), dtype=np.uint8)
        for s in SEVERITIES:
            for chunk, start in enumerate(range(0, n, CHUNK_SIZE)):
                batch = corrupt(images[start:start + CHUNK_SIZE], name, s, _chunk_seed(seed, chunk))
                stacked[s - 1, start:start + len(batch)] = batch.permute(0, 2, 3, 1).cpu().numpy()
            bar.update(1)
        _save_npy_atomic(stacked.reshape(NUM_SEVERITIES * n, h, w, c), out / f"{name}.npy")
    bar.close()
    return out


def _is_valid_file(path: Path, shape: tuple[int, ...]) -> bool:
    if not path.is_file():
        return False
    try:
        got, dtype = _array_header(path)
    except DataError:
        return False
    return got == shape and dtype == np.uint8


class CorruptedSet:
    """A validated -C directory (ours or an official download); images are read on demand.

    Args:
        directory: holds ``labels.npy`` and ``<corruption>.npy`` files.
        names: corruptions to use; default every known corruption with a file there.
        image_shape: expected ``(C, H, W)`` of one image (e.g. the model's input), if known.

    Every listed file's shape and dtype and the labels are checked here, before any evaluation.
    """

    def __init__(self, directory: str | os.PathLike, names: Sequence[str] | None = None,
                 image_shape: Sequence[int] | None = None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DataError(f"-C directory {self.directory} does not exist")
        if names is None:
            names = [name for name in corruption_names() if (self.directory / f"{name}.npy").is_file()]
            if not names:
                raise DataError(f"{self.directory} holds no <corruption>.npy file of a known corruption")
        self.names = check_corruption_names(names)
        self.labels = self._read_labels()
        self.num_images = len(self.labels)
        self.image_shape: tuple[int, ...] | None = tuple(image_shape) if image_shape is not None else None
        for name in self.names:
            self._check_file(name)

    def _read_labels(self) -> Tensor:
        path = self.directory / LABELS_FILE
        if not path.is_file():
            raise DataError(f"-C directory {self.directory} lacks {LABELS_FILE}")
        shape, dtype = _array_header(path)
        if len(shape) != 1 or shape[0] == 0 or shape[0] % NUM_SEVERITIES or not np.issubdtype(dtype, np.integer):
            raise DataError(f"{path} must be a 1-D integer array of 5 * N labels, got {dtype} {shape}")
        tiles = np.load(path, allow_pickle=False).astype(np.int64).reshape(NUM_SEVERITIES, -1)
        if not (tiles == tiles[:1]).all():
            raise DataError(f"{path}: the 5 severity blocks do not hold the same labels")
        return torch.from_numpy(tiles[0].copy())

    def _check_file(self, name: str) -> None:
        path = self.directory / f"{name}.npy"
        if not path.is_file():
            raise DataError(f"-C directory {self.directory} lacks {name}.npy")
        shape, dtype = _array_header(path)
        if dtype != np.uint8 or len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
            raise DataError(f"{path} must be uint8 (5*N, H, W[, C]) with C = 1 or 3, got {dtype} {shape}")
        if shape[0] % NUM_SEVERITIES:
            raise DataError(f"{path} holds {shape[0]} images, not a multiple of the 5 severities")
        if shape[0] != NUM_SEVERITIES * self.num_images:
            raise DataError(f"{path} holds {shape[0]} images but {LABELS_FILE} has labels for "
                            f"{NUM_SEVERITIES} x {self.num_images}")
        chw = (shape[3] if len(shape) == 4 else 1, shape[1], shape[2])
        if self.image_shape is None:
            self.image_shape = chw
        elif chw != self.image_shape:
            raise DataError(f"{path} holds images of shape (C, H, W) = {chw}, expected {self.image_shape}")

    def images(self, name: str, rows: Tensor | None = None) -> Tensor:
        """uint8 (5, n, C, H, W) of corruption ``name``, only the given image ``rows`` (default all)."""
        if name not in self.names:
            raise ConfigError(f"corruption {name!r} is not part of this -C set ({', '.join(self.names)})")
        array = np.load(self.directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        array = array.reshape(NUM_SEVERITIES, self.num_images, *array.shape[1:])
        picked = array if rows is None else array[:, rows.cpu().numpy()]
        tensor = torch.from_numpy(np.array(picked))  # a writable copy of only the rows asked for
        if tensor.dim() == 4:
            tensor = tensor.unsqueeze(-1)
        return tensor.permute(0, 1, 4, 2, 3).contiguous()


def load_corrupted_set(directory: str | os.PathLike,
                       names: Sequence[str] | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """Every listed corruption as uint8 (5, N, C, H, W) and the labels (N,) int64.

    Loads it all in memory; the evaluation uses :class:`CorruptedSet` to read one file at a time.
    """
    corrupted = CorruptedSet(directory, names)
    return {name: corrupted.images(name) for name in corrupted.names}, corrupted.labels


__all__ = ["CorruptedSet", "generate_corrupted_set", "load_corrupted_set", "corrupted_cache_dir",
           "check_corruption_names", "images_digest", "FORMAT_VERSION", "CHUNK_SIZE", "LABELS_FILE", "META_FILE"]
