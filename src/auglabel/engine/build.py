"""Build an experiment's pieces (data splits, loaders, model, augmentation, label strategy) from its config.

Shared by ``train``, ``evaluate`` and ``calibrate`` so all three see the very same splits and the
same training step (:func:`build_step`: the components are ``setup`` with the model and data before
any optimiser or checkpoint sees them).  Everything that can be wrong with a configuration fails
here, before training starts.  Components and datasets handed in as Python objects
(:class:`~.objects.HandedIn`) take the same path: only their construction is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..augment import AUGMENTATIONS, Augmentation
from ..data import ImageDataset, load_dataset, stratified_split, subsample_indices
from ..data.distortions import Distortion, distort
from ..data.loader import DeviceLoader
from ..data.stream_loader import StreamingLoader
from ..data.streaming import StreamingImageFolder, sample_shape, stream_options
from ..distributed import DistContext
from ..errors import ConfigError
from ..labels import LABEL_STRATEGIES, LabelStrategy
from ..batch import Batch
from ..models import build_model
from ..models.compiled import compile_model
from ..models.custom import accepts_return_features
from .config import ExperimentConfig
from .objects import NO_OBJECTS, HandedIn, as_classifier
from .step import ComponentSpec, TrainingStep


@dataclass
class Splits:
    """The training pool's clean train/validation split and the test set.

    With a distortion (``data.imbalance_ratio`` / ``data.noise_ratio``), ``train_idx`` is what the
    imbalance kept and ``train_set.labels`` carry the noisy labels (a copy; validation and test labels are
    the clean ones); ``distortion`` records what changed and ``clean_labels`` are the file's labels.
    """

    train_set: ImageDataset
    test_set: ImageDataset
    train_idx: Tensor
    val_idx: Tensor
    test_idx: Tensor
    distortion: Distortion | None = None
    clean_labels: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes


def load_splits(cfg: ExperimentConfig, objects: HandedIn = NO_OBJECTS) -> Splits:
    """The splits of ``cfg.data`` (or of the handed-in ``train_data`` / ``test_data``)."""
    d, seed = cfg.data, cfg.train.seed
    if objects.pick("data", cfg) is not None:
        train_set, test_set = objects.train_data, objects.test_data
    else:
        options = stream_options(d)  # image_size, crop_scale for a streamed dataset; {} for in-memory ones
        train_set = load_dataset(d.name, "train", root=d.root, **options)
        test_set = load_dataset(d.name, "test", root=d.root, **options)
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
    train_idx, val_idx = pool[train_local], pool[val_local]
    if d.imbalance_ratio == 1 and d.noise_ratio == 0:
        return Splits(train_set, test_set, train_idx, val_idx, test_idx)
    # distort the training part only, after the clean validation split was carved out
    clean = train_set.labels
    train_idx, noisy, record = distort(train_idx, clean, train_set.num_classes, imbalance_ratio=d.imbalance_ratio,
                                       noise_ratio=d.noise_ratio, seed=seed)
    distorted = (train_set.with_labels(noisy) if isinstance(train_set, StreamingImageFolder)
                 else ImageDataset(train_set.images, noisy, train_set.classes, train_set.name))
    return Splits(distorted, test_set, train_idx, val_idx, test_idx, record, clean)


def loader_for(dataset: ImageDataset | StreamingImageFolder, indices: Tensor, batch_size: int, *, train: bool,
               seed: int, device: torch.device | str, rank: int = 0, world_size: int = 1,
               num_workers: int = 0) -> DeviceLoader | StreamingLoader:
    """The loader of rows ``indices`` of ``dataset``: in memory, or decoded from disk in ``num_workers``
    processes for a streamed dataset."""
    if isinstance(dataset, StreamingImageFolder):
        return StreamingLoader(dataset, indices, dataset.num_classes, batch_size, train=train, seed=seed,
                               device=device, rank=rank, world_size=world_size, num_workers=num_workers)
    return DeviceLoader(dataset.images, dataset.labels, indices, dataset.num_classes, batch_size, train=train,
                        seed=seed, device=device, rank=rank, world_size=world_size)


def make_loader(dataset: ImageDataset, indices: Tensor, cfg: ExperimentConfig, ctx: DistContext,
                *, train: bool) -> DeviceLoader | StreamingLoader:
    return loader_for(dataset, indices, cfg.train.batch_size if train else cfg.train.eval_batch_size, train=train,
                      seed=cfg.train.seed, device=ctx.device, rank=ctx.rank,
                      world_size=ctx.world_size if train or ctx.enabled else 1, num_workers=cfg.data.num_workers)


def make_loaders(splits: Splits, cfg: ExperimentConfig, ctx: DistContext) -> tuple[DeviceLoader, DeviceLoader, DeviceLoader]:
    """The training, validation and test loaders."""
    return (make_loader(splits.train_set, splits.train_idx, cfg, ctx, train=True),
            make_loader(splits.train_set, splits.val_idx, cfg, ctx, train=False),
            make_loader(splits.test_set, splits.test_idx, cfg, ctx, train=False))


def make_model(cfg: ExperimentConfig, splits: Splits, objects: HandedIn = NO_OBJECTS) -> nn.Module:
    train_set = splits.train_set
    mean, std = train_set.subset(splits.train_idx).mean_std()
    shape = {"in_channels": sample_shape(train_set)[0], "num_classes": train_set.num_classes, "mean": mean, "std": std}
    given = objects.pick("model", cfg)
    if given is not None:
        return as_classifier(given, **shape)
    return build_model(cfg.model.name, **shape, **cfg.model.params)


def make_methods(cfg: ExperimentConfig, objects: HandedIn = NO_OBJECTS) -> tuple[Augmentation, LabelStrategy]:
    augment = objects.pick("augment", cfg)
    if augment is None:  # a list in the config is the "pipeline" entry by now (ExperimentConfig)
        augment = AUGMENTATIONS.build(cfg.augment.name, **cfg.augment.params)
    label_strategy = objects.pick("labels", cfg)
    if label_strategy is None:
        label_strategy = LABEL_STRATEGIES.build(cfg.labels.name, **cfg.labels.params)
    label_strategy.bind(augment)
    return augment, label_strategy


def model_feature_dim(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu") -> int | None:
    """Width of ``model(x, return_features=True)``'s features: the model's ``feature_dim`` when it
    states one, else measured on a dry run (eval mode, no grad, two zero images); None when the
    model's forward takes no ``return_features``."""
    if not accepts_return_features(model):
        return None
    stated = getattr(model, "feature_dim", None)
    if isinstance(stated, int) and not isinstance(stated, bool):
        return stated
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, features = model(torch.zeros(2, *input_shape, device=device), return_features=True)
    finally:
        model.train(was_training)
    return int(features.shape[1]) if features.dim() == 2 else None


def component_spec(model: nn.Module, splits: Splits, device: torch.device | str = "cpu") -> ComponentSpec:
    input_shape = sample_shape(splits.train_set)
    return ComponentSpec(num_classes=splits.num_classes, feature_dim=model_feature_dim(model, input_shape, device),
                         input_shape=input_shape, dataset_size=len(splits.train_set),
                         train_size=len(splits.train_idx), device=torch.device(device),
                         model_name=type(getattr(model, "module", model)).__name__,
                         labels=splits.train_set.labels)


def build_step(cfg: ExperimentConfig, splits: Splits, device: torch.device | str = "cpu",
               objects: HandedIn = NO_OBJECTS) -> TrainingStep:
    """Model, augmentation and label strategy (built from ``cfg``, or handed in as ``objects``) in one
    :class:`TrainingStep` on ``device``, with the components ``setup`` for this model and data (so their
    parameters exist before an optimiser is built or a checkpoint restored)."""
    t = cfg.train
    model = make_model(cfg, splits, objects).to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    augment, label_strategy = make_methods(cfg, objects)
    step = TrainingStep(model, augment, label_strategy,
                        autocast_dtype=torch.bfloat16 if t.precision == "bf16" else None, channels_last=t.channels_last)
    step.setup(component_spec(model, splits, device))
    if t.compile:  # after setup's dry forward, so the first compilation is a training one
        compile_model(model, mode=t.compile_mode, device=device)
    return step.to(device)


@dataclass
class AugmentationReport:
    """A dry run of the augmentation on two samples, for :meth:`LabelStrategy.check_augmentation`.

    Attributes:
        augment: the augmentation.
        before: the clean two-sample batch it was given.
        after: what it returned.
        calls_model: whether it ran the model (adversarial examples do).
    """

    augment: Augmentation
    before: Batch
    after: Batch
    calls_model: bool


def check_compatible(augment: Augmentation, label_strategy: LabelStrategy, model: nn.Module,
                     sample: DeviceLoader) -> None:
    """Check the augmentation reports what the label strategy needs (``requires_info``) and that the strategy
    accepts it (:meth:`LabelStrategy.check_reported`, :meth:`LabelStrategy.check_augmentation`).

    A set check on the augmentation's declared info keys (``reported_keys()``, :mod:`auglabel.augment.info_keys`);
    the augmentation is dry-run on two samples only when it declares nothing (a user's own class) or the
    strategy's ``check_augmentation`` needs values (PLS: views, labels, whether the model ran).  This catches,
    at configuration time, pairings such as mixup labels without a mixing augmentation, without each strategy
    having to list every augmentation it supports.
    """
    strategy_type = type(label_strategy)
    checks_augmentation = strategy_type.check_augmentation is not LabelStrategy.check_augmentation
    checks_reported = strategy_type.check_reported is not LabelStrategy.check_reported
    if not (label_strategy.requires_info or checks_augmentation or checks_reported):
        return
    keys = augment.reported_keys() if isinstance(augment, Augmentation) else None
    report = None
    if keys is None or checks_augmentation:
        report = dry_run(augment, model, sample)
        keys = frozenset(report.after.info) if keys is None else keys
    missing = [key for key in label_strategy.requires_info if key not in keys]
    if missing:
        raise ConfigError(
            f"label strategy {type(label_strategy).__name__} needs per-sample {', '.join(missing)} "
            f"that augmentation {type(augment).__name__} does not report"
        )
    label_strategy.check_reported(augment, keys)
    if checks_augmentation:
        label_strategy.check_augmentation(report)


def dry_run(augment: Augmentation, model: nn.Module, sample: DeviceLoader) -> AugmentationReport:
    """The augmentation applied to two samples of ``sample`` (seed 0), noting whether it ran the model."""
    batch = next(iter(sample))
    small = batch.replace(inputs=batch.inputs[:2], labels=batch.labels[:2], index=batch.index[:2], info={})
    generator = torch.Generator(device=small.device).manual_seed(0)
    was_training = model.training
    calls: list[int] = []
    hook = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        augmented = augment(small, generator=generator, model=model)
    finally:
        hook.remove()
        model.train(was_training)
    return AugmentationReport(augment, small, augmented, bool(calls))
