"""WebDataset-style tar shards streamed from disk: ``data: {name: tar_shards, root: DIR, image_size: 32}``.

Layout (one rule): the shards of split ``train`` are the files ``DIR/train-*.tar``, those of ``test`` are
``DIR/test-*.tar`` (flat in ``DIR``, read in file-name order: ``train-000000.tar``, ``train-000001.tar``, ...).
A sample is a run of consecutive tar members sharing a key, the member name up to the first dot of its
basename, directories included (``cat/0042.jpg`` and ``cat/0042.cls`` are sample ``cat/0042``): its image is
the member ``<key>.jpg``, ``.jpeg`` or ``.png`` and its class the member ``<key>.cls`` (an ASCII integer class
index); other members (``.json``, ...) are ignored.  Class names come from ``DIR/classes.txt`` (one per line,
line i naming class i) or else are ``"0"`` .. ``"K-1"`` with K = the largest class index in either split + 1.

Nothing but the index is read up front: :mod:`tarfile` walks each shard's headers (and reads the tiny ``.cls``
members) once per process (memoised by path, size and mtime), giving every row a (shard, byte offset, size)
entry, one numpy array shared by forked workers without copying.  ``decode`` reads those bytes from the shard
(open files cached per process, keyed by ``os.getpid()``, so forked DataLoader workers never share a file
offset) and decodes them with exactly the code of :class:`~.streaming.StreamingImageFolder`
(:func:`~.streaming.decode_image`): the same bytes give the same sample, random crops included.  Compressed
shards (``.tar.gz`` ...) are refused (members of a compressed stream have no byte offset to seek to);
a non-tar or truncated shard and a sample without image or class are one-line DataErrors.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .streaming import StreamingImageFolder, check_stream_options, decode_image, image_channels

SPLITS = ("train", "test")
SHARD_SUFFIX = ".tar"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
CLASS_EXTENSION = "cls"
CLASSES_FILE = "classes.txt"
COMPRESSED_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tar.zstd",
                       ".tar.lz4")
#: leading bytes of compressed streams (a compressed shard named ``.tar`` is refused as well)
COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
                    b"\x04\x22\x4d\x18": "lz4"}
#: at most this many shards are kept open per process (the oldest opened is closed first)
MAX_OPEN_SHARDS = 64


class ShardIndex(NamedTuple):
    """The samples of one shard in member order: image data offset and size, image member name, class index."""

    offsets: np.ndarray
    sizes: np.ndarray
    members: list[str]
    labels: np.ndarray


_INDEX_CACHE: dict[tuple[str, int, int, int], ShardIndex] = {}


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def split_shards(root: Path, split: str, *, required: bool = True) -> list[Path]:
    """The shards ``root/<split>-*.tar`` in name order; DataError for none (if ``required``) or a compressed one."""
    if not root.is_dir():
        if not required:
            return []
        raise DataError(f"missing shard folder {root} (expected {root}/{split}-*.tar)")
    candidates = sorted((path for path in root.glob(f"{split}-*") if path.is_file()), key=lambda path: path.name)
    compressed = [path for path in candidates if path.name.lower().endswith(COMPRESSED_SUFFIXES)]
    if compressed:
        raise DataError(f"compressed tar shard {compressed[0]}: tar_shards reads samples by byte offset, which "
                        f"needs uncompressed {SHARD_SUFFIX} shards (decompress it, e.g. with gunzip)")
    shards = [path for path in candidates if path.name.endswith(SHARD_SUFFIX)]
    if not shards and required:
        raise DataError(f"no tar shards {root}/{split}-*{SHARD_SUFFIX}")
    return shards


def _class_index(raw: bytes, shard: Path, key: str) -> int:
    text = raw.decode("ascii", errors="replace").strip()
    if not text.isascii() or not text.isdigit():
        raise DataError(f"tar shard {shard}: sample {key!r} has class {raw[:20]!r}, not an integer class index")
    return int(text)


def index_shard(shard: Path) -> ShardIndex:
    """The samples of ``shard`` (see the module docstring); one-line DataErrors for a shard that is compressed,
    not a tar or truncated, and for a sample without an image or a class.  Memoised by path, size and mtime."""
    try:
        stat = shard.stat()
        cache_key = (str(shard.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if cache_key in _INDEX_CACHE:
            return _INDEX_CACHE[cache_key]
        handle = open(shard, "rb")
    except OSError as exc:
        raise DataError(f"cannot read tar shard {shard}: {_first_line(exc)}") from None
    offsets: list[int] = []
    sizes: list[int] = []
    members: list[str] = []
    labels: list[int] = []
    current: dict[str, Any] = {}

    def finish() -> None:
        if not current:
            return
        key = current["key"]
        if "image" not in current:
            raise DataError(f"tar shard {shard}: sample {key!r} has no image ({key}.jpg, .jpeg or .png)")
        if "label" not in current:
            raise DataError(f"tar shard {shard}: sample {key!r} has no class ({key}.{CLASS_EXTENSION})")
        image = current["image"]
        offsets.append(image.offset_data)
        sizes.append(image.size)
        members.append(image.name)
        labels.append(current["label"])

    with handle:
        magic = handle.read(8)
        for prefix, kind in COMPRESSED_MAGIC.items():
            if magic.startswith(prefix):
                raise DataError(f"compressed tar shard {shard} ({kind}): tar_shards reads samples by byte offset, "
                                f"which needs uncompressed {SHARD_SUFFIX} shards (decompress it first)")
        handle.seek(0)
        try:
            with tarfile.open(fileobj=handle, mode="r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    if member.offset_data + member.size > stat.st_size:
                        raise DataError(f"truncated tar shard {shard}: member {member.name!r} ends past the end "
                                        "of the file")
                    directory, _, base = member.name.rpartition("/")
                    stem, _, extension = base.partition(".")
                    key = f"{directory}/{stem}" if directory else stem
                    if current.get("key") != key:
                        finish()
                        current = {"key": key}
                    extension = extension.lower()
                    if extension in IMAGE_EXTENSIONS:
                        if "image" in current:
                            raise DataError(f"tar shard {shard}: sample {key!r} has two images "
                                            f"({current['image'].name}, {member.name})")
                        current["image"] = member
                    elif extension == CLASS_EXTENSION:
                        current["label"] = _class_index(tar.extractfile(member).read(), shard, key)
                finish()
        except (tarfile.TarError, EOFError) as exc:
            raise DataError(f"unreadable tar shard {shard} (not an uncompressed tar file?): "
                            f"{_first_line(exc)}") from None
        except OSError as exc:
            raise DataError(f"cannot read tar shard {shard}: {_first_line(exc)}") from None
    index = ShardIndex(np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64), members,
                       np.array(labels, dtype=np.int64))
    _INDEX_CACHE[cache_key] = index
    return index


def read_classes(root: Path, max_label: int) -> list[str]:
    """Class names: ``root/classes.txt`` (one per line) or ``"0"`` .. ``str(max_label)``."""
    path = root / CLASSES_FILE
    if not path.is_file():
        return [str(label) for label in range(max_label + 1)]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable class list {path}: {_first_line(exc)}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    classes = [line.strip() for line in lines]
    if not classes or not all(classes):
        raise DataError(f"class list {path} has an empty line (one class name per line, line i naming class i)")
    if max_label >= len(classes):
        raise DataError(f"class index {max_label} in the shards of {root}, but {path} names {len(classes)} classes")
    return classes


class TarShards(StreamingImageFolder):
    """The samples of one split's tar shards, decoded on demand (see the module docstring).

    Attributes:
        folder: the shard folder ``root``; shards: the split's shard paths, in order.
        files: one structured array, a row per sample: ``shard`` (index into ``shards``), ``offset`` and
            ``size`` (the image member's bytes in the shard) and ``member`` (its name, for messages).
        labels, classes, name, image_size, channels, crop_scale: as for :class:`StreamingImageFolder`.
    """

    def __init__(self, folder: Path, shards: Sequence[Path], files: np.ndarray, labels: Tensor,
                 classes: Sequence[str], name: str, *, image_size: int, channels: int, crop_scale: float = 0.08):
        super().__init__(folder, files, labels, classes, name, image_size=image_size, channels=channels,
                         crop_scale=crop_scale)
        self.shards = tuple(Path(shard) for shard in shards)
        self._open: dict[int, dict[int, BinaryIO]] = {}  # pid -> shard -> file: never shared across a fork

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def __repr__(self) -> str:
        return (f"TarShards(name={self.name!r}, folder={str(self.folder)!r}, shards={len(self.shards)}, "
                f"n={len(self)}, image_shape={self.image_shape}, num_classes={self.num_classes})")

    def _like(self, files: np.ndarray, labels: Tensor) -> TarShards:
        return TarShards(self.folder, self.shards, files, labels, self.classes, self.name,
                         image_size=self.image_size, channels=self.channels, crop_scale=self.crop_scale)

    def path(self, row: int) -> Path:
        """The shard holding sample ``row``."""
        return self.shards[int(self.files[row]["shard"])]

    def source(self, row: int) -> str:
        """``shard:member`` of sample ``row``'s image (for messages)."""
        return f"{self.path(row)}:{os.fsdecode(self.files[row]['member'])}"

    def _handle(self, shard: int) -> BinaryIO:
        pid = os.getpid()
        if pid not in self._open:  # first use in this process (a forked worker drops the parent's files)
            self._open = {pid: {}}
        handles = self._open[pid]
        handle = handles.get(shard)
        if handle is None:
            if len(handles) >= MAX_OPEN_SHARDS:
                handles.pop(next(iter(handles))).close()
            handle = handles[shard] = open(self.shards[shard], "rb")
        return handle

    def read(self, row: int) -> bytes:
        """The encoded image bytes of sample ``row``; DataError (one line) when the shard cannot be read."""
        entry = self.files[row]
        offset, size = int(entry["offset"]), int(entry["size"])
        try:
            handle = self._handle(int(entry["shard"]))
            handle.seek(offset)
            data = handle.read(size)
        except OSError as exc:
            raise DataError(f"cannot read tar shard {self.path(row)}: {_first_line(exc)}") from None
        if len(data) != size:
            raise DataError(f"truncated tar shard {self.path(row)}: {size} bytes of "
                            f"{os.fsdecode(entry['member'])} at offset {offset}, {len(data)} there")
        return data

    def decode(self, row: int, *, train: bool, seed: int = 0, epoch: int = 0) -> Tensor:
        """Sample ``row`` as uint8 (C, S, S); DataError (one line) when it cannot be read or decoded."""
        return decode_image(io.BytesIO(self.read(row)), self.source(row), row, train=train, seed=seed, epoch=epoch,
                            image_size=self.image_size, channels=self.channels, crop_scale=self.crop_scale)

    def close(self) -> None:
        """Close the shard files this process opened (they reopen on the next ``decode``)."""
        for handle in self._open.pop(os.getpid(), {}).values():
            handle.close()


def open_tar_shards(split: str, root: Path | None, *, image_size: int | None = None,
                    crop_scale: float = 0.08) -> TarShards:
    """Split ``split`` of the tar shards at ``root`` as a :class:`TarShards`."""
    if root is None:
        raise ConfigError("dataset 'tar_shards' needs a root: pass --data.root DIR "
                          "holding DIR/train-*.tar and DIR/test-*.tar")
    check_stream_options("tar_shards", image_size, crop_scale)
    root = Path(root)
    shards = split_shards(root, split)
    indexes = [index_shard(shard) for shard in shards]
    count = sum(len(index.labels) for index in indexes)
    if not count:
        raise DataError(f"no samples (<key>.jpg/.png + <key>.cls) in {root}/{split}-*{SHARD_SUFFIX}")
    others = [index_shard(shard) for other in SPLITS if other != split
              for shard in split_shards(root, other, required=False)]
    max_label = max(int(index.labels.max()) for index in indexes + others if len(index.labels))
    classes = read_classes(root, max_label)
    width = max(len(os.fsencode(name)) for index in indexes for name in index.members)
    files = np.empty(count, dtype=[("shard", np.int32), ("offset", np.int64), ("size", np.int64),
                                   ("member", f"S{width}")])
    start = 0
    for number, index in enumerate(indexes):
        stop = start + len(index.labels)
        files["shard"][start:stop] = number
        files["offset"][start:stop] = index.offsets
        files["size"][start:stop] = index.sizes
        files["member"][start:stop] = [os.fsencode(name) for name in index.members]
        start = stop
    labels = torch.from_numpy(np.concatenate([index.labels for index in indexes]))
    dataset = TarShards(root, shards, files, labels, classes, "tar_shards", image_size=image_size, channels=1,
                        crop_scale=crop_scale)
    dataset.channels = image_channels(io.BytesIO(dataset.read(0)), dataset.source(0))
    dataset.close()
    return dataset
