"""Build an experiment's pieces (data splits, loaders, model, augmentation, labels) from its config.

Shared by ``train``, ``evaluate`` and ``calibrate`` so all three see the very same splits.
Everything that can be wrong with a configuration fails here, before training starts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..augment import AUGMENTATIONS, Augmentation
from ..data import ImageDataset, load_dataset, stratified_split, subsample_indices
from ..data.loader import DeviceLoader
from ..distributed import DistContext
from ..errors import ConfigError
from ..labels import LABEL_STRATEGIES, LabelStrategy
from ..models import build_model
from .config import ExperimentConfig


@dataclass
class Splits:
    """The training pool's clean train/validation split and the test set."""

    train_set: ImageDataset
    test_set: ImageDataset
    train_idx: Tensor
    val_idx: Tensor
    test_idx: Tensor

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes


def load_splits(cfg: ExperimentConfig) -> Splits:
    d, seed = cfg.data, cfg.train.seed
    train_set = load_dataset(d.name, "train", root=d.root)
    test_set = load_dataset(d.name, "test", root=d.root)
    pool = torch.arange(len(train_set))
    if d.train_subset is not None:
        if d.train_subset > len(train_set):
            raise ConfigError(f"data.train_subset {d.train_subset} exceeds the {len(train_set)} training samples")
        pool = subsample_indices(train_set.labels, d.train_subset, seed)
    train_local, val_local = stratified_split(train_set.labels[pool], d.val_size, seed)
    test_idx = torch.arange(len(test_set))
    if d.test_subset is not None:
        if d.test_subset > len(test_set):
            raise ConfigError(f"data.test_subset {d.test_subset} exceeds the {len(test_set)} test samples")
        test_idx = subsample_indices(test_set.labels, d.test_subset, seed)
    return Splits(train_set, test_set, pool[train_local], pool[val_local], test_idx)


def make_loader(dataset: ImageDataset, indices: Tensor, cfg: ExperimentConfig, ctx: DistContext,
                *, train: bool) -> DeviceLoader:
    batch_size = cfg.train.batch_size if train else cfg.train.eval_batch_size
    return DeviceLoader(dataset.images, dataset.labels, indices, dataset.num_classes, batch_size,
                        train=train, seed=cfg.train.seed, device=ctx.device,
                        rank=ctx.rank, world_size=ctx.world_size if train or ctx.enabled else 1)


def make_model(cfg: ExperimentConfig, splits: Splits) -> nn.Module:
    train_set = splits.train_set
    mean, std = train_set.subset(splits.train_idx).mean_std()
    return build_model(cfg.model.name, in_channels=train_set.images.shape[1],
                       num_classes=train_set.num_classes, mean=mean, std=std, **cfg.model.params)


def make_methods(cfg: ExperimentConfig) -> tuple[Augmentation, LabelStrategy]:
    augment = AUGMENTATIONS.build(cfg.augment.name, **cfg.augment.params)
    labels = LABEL_STRATEGIES.build(cfg.labels.name, **cfg.labels.params)
    labels.bind(augment)
    return augment, labels


def check_compatible(augment: Augmentation, labels: LabelStrategy, model: nn.Module,
                     sample: DeviceLoader) -> None:
    """Dry-run the augmentation on two samples and check it reports what the labels need.

    This catches, at configuration time, pairings such as mixup labels without a mixing
    augmentation, without each strategy having to list every augmentation it supports.
    """
    if not labels.requires_info:
        return
    batch = next(iter(sample))
    small = batch.replace(inputs=batch.inputs[:2], labels=batch.labels[:2], index=batch.index[:2], info={})
    generator = torch.Generator(device=small.device).manual_seed(0)
    was_training = model.training
    augmented = augment(small, generator=generator, model=model)
    model.train(was_training)
    missing = [key for key in labels.requires_info if key not in augmented.info]
    if missing:
        raise ConfigError(
            f"label strategy {type(labels).__name__} needs per-sample {', '.join(missing)} "
            f"that augmentation {type(augment).__name__} does not report"
        )
