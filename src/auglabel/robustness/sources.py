"""Where the robustness suites' images and logits come from, for in-memory and streamed datasets alike.

* In-memory datasets (:class:`~auglabel.data.ImageDataset`) are indexed as they always were: the same
  tensors in the same batches, so the same numbers.
* A streamed folder (:class:`~auglabel.data.StreamingImageFolder`) has no image tensor.  The logits of a whole
  split (the clean suite, the validation split temperature scaling is fitted on) are computed batch by batch
  from a :class:`~auglabel.data.StreamingLoader` with the evaluation transform (shorter side resized, centre
  crop), so nothing is held in memory; the suites that work on image tensors (corruptions, perturbations,
  adversarial, OOD) get their test selection (``--subsample``) decoded once by that transform into one uint8
  tensor: bit for bit the batches the loader gives, so the clean and the other suites see the same pixels.
  A selection over :data:`MAX_DECODED_BYTES` is refused with one line asking for ``--subsample``.
* The Gaussian-noise OOD set's per-channel moments: the training split's images (in memory), or at most
  :data:`~auglabel.data.streaming.MEAN_STD_SAMPLES` evenly spaced decoded training images (streamed; the same
  sample the model's input normalisation is estimated on).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.stream_loader import StreamingLoader, decode_images
from ..data.streaming import MEAN_STD_SAMPLES, StreamingImageFolder
from ..errors import ConfigError

#: a streamed test selection the image-tensor suites would decode into more bytes than this is refused
MAX_DECODED_BYTES = 4 * 2**30


def is_streamed(dataset: Any) -> bool:
    return isinstance(dataset, StreamingImageFolder)


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """Logits (N, K) on CPU of uint8 images (N, C, H, W), converted to [0, 1] batch by batch on ``device``."""
    outputs = [model(chunk.to(device).float().div_(255.0)).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(outputs)


@torch.no_grad()
def split_logits(model: nn.Module, dataset: Any, indices: Tensor, batch_size: int, device: torch.device | str,
                 *, num_workers: int = 0) -> Tensor:
    """Logits (N, K) on CPU of rows ``indices`` of ``dataset`` (in that order), in batches of ``batch_size``."""
    if not is_streamed(dataset):
        return predict_logits(model, dataset.images[indices], batch_size, torch.device(device))
    loader = StreamingLoader(dataset, indices, dataset.num_classes, batch_size, train=False, device=device,
                             num_workers=num_workers)
    try:
        outputs = [model(batch.inputs).float().cpu() for batch in loader]
    finally:
        loader.close()
    return torch.cat(outputs) if outputs else torch.empty((0, dataset.num_classes))


def selection_images(dataset: Any, indices: Tensor, *, num_workers: int = 0,
                     purpose: str = "this evaluation") -> Tensor:
    """uint8 (N, C, H, W) images of rows ``indices``: indexed in memory, or decoded (evaluation transform)
    from a streamed folder; ConfigError (one line) when that would exceed :data:`MAX_DECODED_BYTES`."""
    if not is_streamed(dataset):
        return dataset.images[indices]
    needed = len(indices) * math.prod(dataset.image_shape)
    if needed > MAX_DECODED_BYTES:
        most = MAX_DECODED_BYTES // math.prod(dataset.image_shape)
        raise ConfigError(f"{purpose} needs the test images in memory: decoding the {len(indices)} selected images "
                          f"of the streamed dataset {dataset.name!r} would take {needed / 2**30:.1f} GiB; "
                          f"pass --subsample N (N <= {most})")
    return decode_images(dataset, indices, num_workers=num_workers)


def noise_reference(dataset: Any, train_idx: Tensor, *, num_workers: int = 0) -> Tensor:
    """uint8 training images whose per-channel moments the Gaussian-noise OOD set takes (see the module doc)."""
    if not is_streamed(dataset):
        return dataset.images[train_idx]
    count = min(len(train_idx), MEAN_STD_SAMPLES)
    picks = np.unique(np.linspace(0, len(train_idx) - 1, count).round().astype(np.int64)) if count else []
    return decode_images(dataset, train_idx[torch.as_tensor(picks, dtype=torch.int64)], num_workers=num_workers)


__all__ = ["MAX_DECODED_BYTES", "is_streamed", "noise_reference", "predict_logits", "selection_images",
           "split_logits"]
