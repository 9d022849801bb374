"""Experiment configuration: typed dataclasses parsed from YAML + command-line overrides.

jsonargparse turns these dataclasses into a parser (``--optim.lr 0.1``, ``--labels.params.eps 0.2``);
:meth:`ExperimentConfig.validate` checks values that types cannot (ranges, names) so a bad value
fails at configuration time with one clear line, before any data is loaded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from ..errors import ConfigError


@dataclass
class DataConfig:
    """Which dataset and how to split it.

    Attributes:
        name: fashion_mnist, mnist, cifar10, cifar100, svhn, imagefolder, digits, image_folder_stream or
            tar_shards.
        root: explicit data directory (else env var, user cache, /usr/share/datasets).
        val_size: clean stratified validation split carved from train: a count or a fraction.
        train_subset: a stratified subset of this many training-file samples, validation included (None: all).
        test_subset: evaluate on a stratified subset of this many test samples (None: all).
        imbalance_ratio: IR >= 1: every class ``c >= K/2`` keeps ``round(n_c / IR)`` of its training
            samples (AutoDO paper sec. 5.1; 1: balanced).  Training split only, seeded by ``train.seed``.
        noise_ratio: NR in [0, 1): that fraction of the (remaining) training labels is redrawn uniformly
            over all K classes.  The validation split is carved out first and never distorted; the run
            directory records what changed in ``distortion.json`` (:mod:`auglabel.data.distortions`).
        image_size, num_workers, crop_scale: for streamed datasets (``image_folder_stream``,
            :mod:`auglabel.data.streaming`; ``tar_shards``, :mod:`auglabel.data.tar_shards`) only: output
            side, decoding worker processes, and the smallest area fraction of the training random-resized crop
            (>= 1: resize + centre crop as for evaluation).
    """

    name: str = "fashion_mnist"
    root: Optional[str] = None
    val_size: Union[int, float] = 5000
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    imbalance_ratio: float = 1.0
    noise_ratio: float = 0.0
    image_size: Optional[int] = None
    num_workers: int = 2
    crop_scale: float = 0.08


@dataclass
class ComponentConfig:
    """A registry name plus keyword parameters for it."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


#: ``augment:`` may also be a list of members (names or ``{name, params}``): an augmentation pipeline.
AugmentSection = Union[ComponentConfig, list[Union[str, ComponentConfig]]]


def augment_section(value: Any) -> ComponentConfig:
    """``augment:`` as a ComponentConfig: a list (``[standard, mixup]``, members as names or ``{name, params}``)
    becomes the ``pipeline`` augmentation, ``{name: pipeline, params: {members: [...]}}``
    (:mod:`auglabel.augment.pipeline`); a mapping or ComponentConfig stays what it is."""
    if isinstance(value, ComponentConfig):
        return value
    if isinstance(value, dict):
        return ComponentConfig(**value)
    if isinstance(value, (list, tuple)):
        members = [{"name": m.name, "params": dict(m.params)} if isinstance(m, ComponentConfig) else m for m in value]
        for m in members:  # plain data only (a config from someone else is screened with this before parsing)
            if not (isinstance(m, str) or (isinstance(m, dict) and set(m) <= {"name", "params"}
                                           and isinstance(m.get("name"), str)
                                           and isinstance(m.get("params", {}), dict))):
                raise ConfigError(f"augment: each pipeline member must be a name or a {{name, params}} mapping, "
                                  f"got {m!r}")
        return ComponentConfig("pipeline", {"members": members})
    raise ConfigError(f"augment must be a name/params mapping or a list of augmentations, got {value!r}")


@dataclass
class OptimConfig:
    """SGD with Nesterov momentum, linear warm-up then cosine decay (per step)."""

    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.5


PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """How to train.

    Attributes:
        precision: ``fp32``, or ``bf16`` for bfloat16 autocast of the training forward pass on CUDA.
            On a CPU, bf16 is ignored (training stays fp32), so a GPU config gives the CPU results
            unchanged; evaluation is always fp32.
        channels_last: keep the model and its training inputs in channels-last memory format
            (faster convolutions on tensor cores); the numbers are the same up to float rounding.
        compile: ``torch.compile`` the model's forward (TorchInductor, compiled in place: checkpoints and
            state_dict keys are unchanged); the first steps and each new input shape or train/eval switch pay a
            compilation.  Hyper steps that differentiate twice (AutoDO) run the model eagerly.
        compile_mode: torch.compile's ``mode``: default, reduce-overhead (CUDA graphs), max-autotune or
            max-autotune-no-cudagraphs.
        keep_best: also keep the weights of the epoch with the best clean validation accuracy and
            report their test metrics as ``best_val`` in metrics.json (the mixup-calibration
            paper's "best validation epoch").
        checkpoint_every_steps: also write the checkpoint every this many training steps (0: only at the end of
            each epoch).  A mid-epoch checkpoint resumes exactly: same data order, RNG streams and component state.
        checkpoint_every_minutes: also write it when this many minutes have passed since the last one (0: off);
            the default (10) never fires in runs whose epochs are shorter.
        check_every_steps: how often the loop reads its on-device non-finite-loss flag (the first bad step is
            recorded on the device, so the number reported is exact either way) and, under torchrun, agrees on
            stopping (SIGTERM) and time-based checkpoints; 0: every step on a CPU, where it costs nothing, every
            50 steps on an accelerator, where each read is a host sync.
        collective_timeout_s: under torchrun, a collective that waits longer than this for another process
            fails with a one-line error instead of hanging (process-group timeout, gloo and nccl).
    """

    epochs: int = 5
    batch_size: int = 128
    eval_batch_size: int = 1000
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    deterministic: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    keep_best: bool = True
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 10.0
    check_every_steps: int = 0
    collective_timeout_s: float = 600.0


@dataclass
class ExperimentConfig:
    """Everything one training run needs; saved resolved as ``config.yaml`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ComponentConfig = field(default_factory=lambda: ComponentConfig("small_cnn"))
    augment: AugmentSection = field(default_factory=lambda: ComponentConfig("none"))
    labels: ComponentConfig = field(default_factory=lambda: ComponentConfig("onehot"))
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: Optional[str] = None

    def __post_init__(self) -> None:
        self.augment = augment_section(self.augment)

    def validate(self) -> "ExperimentConfig":
        o, t, d = self.optim, self.train, self.data
        _check(o.lr > 0, f"optim.lr must be > 0, got {o.lr}")
        _check(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}")
        _check(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
        _check(o.warmup_epochs >= 0, f"optim.warmup_epochs must be >= 0, got {o.warmup_epochs}")
        _check(not (o.nesterov and o.momentum == 0), "optim.nesterov needs momentum > 0")
        _check(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
        _check(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
        _check(t.eval_batch_size >= 1, f"train.eval_batch_size must be >= 1, got {t.eval_batch_size}")
        _check(t.threads is None or t.threads >= 1, f"train.threads must be >= 1, got {t.threads}")
        _check(t.precision in PRECISIONS, f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
        _check(t.compile_mode in COMPILE_MODES,
               f"train.compile_mode must be one of {', '.join(COMPILE_MODES)}, got {t.compile_mode!r}")
        _check(t.checkpoint_every_steps >= 0,
               f"train.checkpoint_every_steps must be >= 0, got {t.checkpoint_every_steps}")
        _check(t.checkpoint_every_minutes >= 0,
               f"train.checkpoint_every_minutes must be >= 0, got {t.checkpoint_every_minutes}")
        _check(t.check_every_steps >= 0, f"train.check_every_steps must be >= 0, got {t.check_every_steps}")
        _check(t.collective_timeout_s > 0, f"train.collective_timeout_s must be > 0, got {t.collective_timeout_s}")
        _check(d.val_size > 0, f"data.val_size must be > 0, got {d.val_size}")
        for key in ("train_subset", "test_subset"):
            value = getattr(d, key)
            _check(value is None or value >= 1, f"data.{key} must be >= 1, got {value}")
        _check(isinstance(d.imbalance_ratio, (int, float)) and not isinstance(d.imbalance_ratio, bool)
               and 1 <= d.imbalance_ratio < float("inf"),
               f"data.imbalance_ratio must be a number >= 1 (1: balanced), got {d.imbalance_ratio!r}")
        _check(isinstance(d.noise_ratio, (int, float)) and not isinstance(d.noise_ratio, bool)
               and 0 <= d.noise_ratio < 1, f"data.noise_ratio must be in [0, 1), got {d.noise_ratio!r}")
        if self.model.name == "custom" and "class_path" in self.model.params:
            # refused (allow-list, class, nn.Module) before anything runs or a run directory exists
            from ..models.custom import resolve_class

            resolve_class(self.model.params["class_path"])
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ExperimentConfig":
        try:
            return cls(
                data=DataConfig(**raw.get("data", {})),
                model=ComponentConfig(**raw.get("model", {"name": "small_cnn"})),
                augment=augment_section(raw.get("augment", {"name": "none"})),
                labels=ComponentConfig(**raw.get("labels", {"name": "onehot"})),
                optim=OptimConfig(**raw.get("optim", {})),
                train=TrainConfig(**raw.get("train", {})),
                run_dir=raw.get("run_dir"),
            )
        except TypeError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
