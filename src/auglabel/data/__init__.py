"""Datasets as in-memory uint8 tensors: format readers, data-root lookup, stratified splits.

The on-device batch loader lives in ``loader.py``; image folders too large for memory stream from disk
(``streaming.py``, ``stream_loader.py``), as do WebDataset-style tar shards (``tar_shards.py``).
"""
from .datasets import ImageDataset, dataset_names, load_dataset
from .readers import RawImages, read_cifar, read_idx, read_image_folder, read_svhn
from .roots import resolve_root
from .split import stratified_split, subsample_indices
from .stream_loader import StreamingLoader
from .streaming import StreamingImageFolder
from .tar_shards import TarShards

__all__ = [
    "ImageDataset",
    "RawImages",
    "StreamingImageFolder",
    "StreamingLoader",
    "TarShards",
    "dataset_names",
    "load_dataset",
    "read_cifar",
    "read_idx",
    "read_image_folder",
    "read_svhn",
    "resolve_root",
    "stratified_split",
    "subsample_indices",
]
