"""Trainer with ready objects (model, augmentation, label strategy, datasets) instead of config sections: they are
the ones used, they take the config path (setup, param groups, compatibility checks, checkpoints), incompatible
pairs fail with the config path's errors, and a resumed run with the objects handed in again is bit-identical."""
import json

import pytest
import torch
import yaml
from torch import nn

from auglabel import Augmentation, ConfigError, ImageDataset, LabelStrategy, Trainer, load_dataset, load_run
from auglabel.augment import AugMix, AutoDOAugment, Mixup, NoAugmentation, StandardAugmentation
from auglabel.cli import main
from auglabel.engine.checkpoint import CHECKPOINT_NAME, load_checkpoint
from auglabel.engine.config import ComponentConfig
from auglabel.engine.step import TrainingStep
from auglabel.errors import CheckpointError
from auglabel.labels import AutoLabel, MixupLabels, OneHot, PairwiseLabelSmoothing
from auglabel.losses import soft_cross_entropy
from auglabel.models import SmallCNN, WrappedClassifier


def plain_cnn() -> nn.Module:
    """A torchvision-style module: logits only, no ``return_features``, no normalisation of its own."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 10))


class CountingFlip(Augmentation):
    """Flips every image and counts its calls and the rows it saw."""

    def __init__(self):
        super().__init__()
        self.calls, self.rows, self.spec = 0, 0, None

    def setup(self, spec):
        self.spec = spec

    def forward(self, batch, *, generator, model=None):
        self.calls += 1
        self.rows += len(batch)
        return batch.replace(inputs=batch.inputs.flip(-1), info={"flipped": torch.ones(len(batch), dtype=torch.bool)})


class CheckedTargets(LabelStrategy):
    """Trains towards 0.8 * one-hot + 0.2 / K, with a learned temperature in its own optimiser group; records the
    targets it returned and the batches it saw."""

    requires_info = ("flipped",)

    def __init__(self):
        super().__init__()
        self.log_t = nn.Parameter(torch.zeros(()))
        self.targets_seen: list[torch.Tensor] = []
        self.epochs: list[int] = []
        self.contexts = []
        self.spec = None

    def setup(self, spec):
        self.spec = spec

    def param_groups(self):
        return [{"params": [self.log_t], "weight_decay": 0.0, "lr": 0.01}]

    def targets(self, logits, batch):
        assert bool(batch.info["flipped"].all())  # the handed-in augmentation ran before
        targets = 0.8 * batch.one_hot() + 0.2 / batch.num_classes
        self.targets_seen.append(targets.detach())
        return targets

    def loss(self, logits, batch, features=None):
        return soft_cross_entropy(logits * self.log_t.exp(), self.targets(logits, batch)).mean()

    def on_epoch_end(self, context):
        self.epochs.append(context.epoch)
        self.contexts.append(context)
        return {"log_t": float(self.log_t.detach())}


def test_handed_in_model_augmentation_and_strategy_are_the_ones_trained(digits_config, tmp_path):
    net, flip, strategy = plain_cnn(), CountingFlip(), CheckedTargets()
    before = [p.detach().clone() for p in net.parameters()]
    trainer = Trainer(digits_config(epochs=2), tmp_path / "run", model=net, augmentation=flip,
                      label_strategy=strategy, progress=False)
    assert isinstance(trainer.model, WrappedClassifier) and trainer.model.module is net  # wrapped like `custom`
    assert trainer.step.augment is flip and trainer.label_strategy is strategy is trainer.step.label_strategy
    assert strategy.spec.num_classes == 10 and strategy.spec.feature_dim == 32 and flip.spec.input_shape == (1, 8, 8)
    assert strategy.spec.model_name == "Sequential"
    groups = trainer.optimizer.param_groups
    assert groups[1]["params"] == [strategy.log_t] and (groups[1]["initial_lr"], groups[1]["weight_decay"]) == (0.01, 0)
    assert flip.calls == 1  # the configuration-time dry run (the strategy requires "flipped")
    metrics = trainer.fit()
    steps = len(trainer.train_loader)
    assert flip.calls == 1 + 2 * steps and flip.rows == 2 + 2 * steps * 64
    assert len(strategy.targets_seen) == 2 * steps
    assert all(torch.allclose(t.sum(1), torch.ones(64)) and t.max() == pytest.approx(0.82) for t in strategy.targets_seen)
    assert strategy.epochs == [1, 2] and strategy.contexts[0].label_strategy is strategy
    assert strategy.contexts[0].labels is strategy  # the former name still reads
    assert float(strategy.log_t.detach()) != 0.0  # its own group trained
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the handed-in weights trained
    assert "log_t" in (tmp_path / "run" / "log.csv").read_text()
    assert metrics["dataset"] == "digits"
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"] == {"name": "object", "params": {"class": "torch.nn.modules.container.Sequential"}}
    assert saved["augment"] == {"name": "object", "params": {"class": f"{__name__}.CountingFlip"}}
    assert saved["labels"] == {"name": "object", "params": {"class": f"{__name__}.CheckedTargets"}}
    assert saved["optim"]["lr"] == 0.05 and saved["train"]["epochs"] == 2  # the rest is the config's


def test_a_model_with_return_features_is_used_as_it_is_and_mixes_with_configured_sections(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    cfg.augment = ComponentConfig("mixup")
    model = SmallCNN(in_channels=1, num_classes=10)
    trainer = Trainer(cfg, tmp_path / "run", model=model, label_strategy=MixupLabels(), progress=False)
    assert trainer.model is model and type(trainer.step.augment).__name__ == "Mixup"
    trainer.fit()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["augment"] == {"name": "mixup", "params": {}} and saved["labels"]["name"] == "object"


def test_handed_in_datasets_are_split_by_the_config(digits_config, tmp_path):
    full = load_dataset("digits", "train")
    train = ImageDataset(full.images[:600], full.labels[:600], full.classes, "my_digits")
    test = load_dataset("digits", "test").subset(torch.arange(100))
    cfg = digits_config(epochs=1)
    cfg.data.val_size = 100
    trainer = Trainer(cfg, tmp_path / "run", train_data=train, test_data=test, label_strategy=OneHot(), progress=False)
    assert trainer.splits.train_set is train and trainer.splits.test_set is test
    assert (len(trainer.splits.train_idx), len(trainer.splits.val_idx), len(trainer.splits.test_idx)) == (500, 100, 100)
    assert trainer.fit()["dataset"] == "my_digits"
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["name"] == "object"
    assert cfg.data.name == "digits" and cfg.labels.name == "onehot"  # the caller's config is left alone
    loaded = load_run(tmp_path / "run", train_data=train, test_data=test, label_strategy=OneHot())
    assert len(loaded.splits.test_idx) == 100


def _error(make) -> str:
    with pytest.raises(ConfigError) as info:
        make()
    return str(info.value)


@pytest.mark.parametrize("augment,labels,make_augment,make_labels,match", [
    ("none", "mixup", NoAugmentation, MixupLabels, "needs per-sample gamma, partner_label"),  # requires_info
    ("standard", "autolabel", StandardAugmentation, AutoLabel, "autolabel needs an augmentation"),  # bind
    ("mixup", "pls", Mixup, PairwiseLabelSmoothing, "pls pairs images itself"),  # check_augmentation
    ("autodo", "onehot", AutoDOAugment, OneHot, "has hyperparameters"),  # TrainingStep.setup
])
def test_incompatible_objects_are_refused_with_the_config_paths_errors(digits_config, tmp_path, augment, labels,
                                                                       make_augment, make_labels, match):
    cfg = digits_config(epochs=1)
    cfg.augment, cfg.labels = ComponentConfig(augment), ComponentConfig(labels)
    via_config = _error(lambda: Trainer(cfg, tmp_path / "a", progress=False))
    objects = _error(lambda: Trainer(digits_config(epochs=1), tmp_path / "b", augmentation=make_augment(),
                                     label_strategy=make_labels(), progress=False))
    cfg.labels = ComponentConfig(labels)  # half and half: the strategy configured, the augmentation an object
    half = _error(lambda: Trainer(cfg, tmp_path / "c", augmentation=make_augment(), progress=False))
    assert via_config == objects == half and match in via_config


def test_objects_of_the_wrong_kind_are_refused_in_one_line(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    with pytest.raises(ConfigError, match="augmentation must be an instance of auglabel.Augmentation"):
        Trainer(cfg, tmp_path / "a", augmentation=nn.Identity())
    with pytest.raises(ConfigError, match="label_strategy must be an instance of auglabel.LabelStrategy"):
        Trainer(cfg, tmp_path / "a", label_strategy=torch.zeros(3))
    with pytest.raises(ConfigError, match="train_data and test_data are handed in together"):
        Trainer(cfg, tmp_path / "a", train_data=load_dataset("digits", "train"))
    with pytest.raises(ConfigError, match="needs a run directory"):
        cfg.run_dir = None
        Trainer(cfg, model=plain_cnn())
    assert not (tmp_path / "a").exists()  # refused before the run directory is made


def test_run_dir_defaults_to_the_configs(digits_config):
    cfg = digits_config(epochs=1)
    trainer = Trainer(cfg, model=plain_cnn(), progress=False)
    assert str(trainer.run_dir) == cfg.run_dir


RESUME_TRAIN = {"epochs": 2, "checkpoint_every_steps": 5}


def _objects():
    return {"model": plain_cnn(), "augmentation": Mixup(), "label_strategy": AutoLabel(num_buckets=5)}


def _same(a, b):
    timing = ("train_wall_time_s", "train_images_per_s")
    strip = lambda m: json.dumps({k: v for k, v in m.items() if k not in timing}, sort_keys=True, default=str)  # noqa: E731
    return strip(a) == strip(b)


class _Killed(BaseException):
    pass


def test_resume_with_the_objects_handed_in_again_is_bit_identical(digits_config, tmp_path, monkeypatch):
    straight = Trainer(digits_config(**RESUME_TRAIN), tmp_path / "straight", progress=False, **_objects())
    expected = straight.fit()
    original = TrainingStep.forward

    def killed_at_step_28(self, batch, generator):  # epoch 2, step 11 of 17: the step-25 checkpoint is kept
        if self.training and self.steps_done == 27:
            raise _Killed
        return original(self, batch, generator)

    monkeypatch.setattr(TrainingStep, "forward", killed_at_step_28)
    with pytest.raises(_Killed):
        Trainer(digits_config(**RESUME_TRAIN), tmp_path / "killed", progress=False, **_objects()).fit()
    monkeypatch.setattr(TrainingStep, "forward", original)
    state = load_checkpoint(tmp_path / "killed" / CHECKPOINT_NAME)
    assert state["progress"]["epoch"] == 2 and int(state["step"]["step_count"]) == 25
    assert "labels.values" in state["step"]  # the checkpoint keys keep the config section's name

    resumed = Trainer(digits_config(**RESUME_TRAIN), tmp_path / "killed", resume=True, progress=False, **_objects())
    assert resumed.step.steps_done == 25
    assert _same(resumed.fit(), expected)
    mine, theirs = resumed.step.state_dict(), straight.step.state_dict()
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(mine[key], value) if torch.is_tensor(value) else mine[key] == value, key


def test_resume_or_reload_without_the_objects_says_so_in_one_line(digits_config, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(digits_config(epochs=2), run, progress=False, **_objects()).run_epoch(1)
    stored = yaml.safe_load((run / "config.yaml").read_text())
    from auglabel.engine.config import ExperimentConfig

    with pytest.raises(ConfigError) as info:  # the run's own config: it cannot rebuild the model
        Trainer(ExperimentConfig.from_dict(stored), run, resume=True, progress=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("config sections model, augment, labels record objects handed "
                                                       "in from Python (torch.nn.modules.container.Sequential, ")
    assert "Trainer(cfg, run_dir, resume=True, model=..., augmentation=..., label_strategy=...)" in message
    assert main(["train", "--run_dir", str(run), "--resume"]) == 2  # the CLI: the same line, exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"auglabel: error: {message}"
    with pytest.raises(ConfigError, match=r"sections augment, labels record .*load_run\(run_dir, augmentation="):
        load_run(run, model=plain_cnn())
    objects = _objects()
    objects["augmentation"] = AugMix()  # another class than the run's: refused by name
    with pytest.raises(CheckpointError, match="augment.params.class 'auglabel.augment.mixup.Mixup' -> "
                                              "'auglabel.augment.augmix.AugMix'"):
        load_run(run, **objects)
    with pytest.raises(CheckpointError, match="model.params.class"):  # resume with another class, also by name
        Trainer(digits_config(epochs=2), run, resume=True, progress=False,
                **{**_objects(), "model": SmallCNN(in_channels=1, num_classes=10)})
    loaded = load_run(run, **_objects())
    assert loaded.epoch == 1 and isinstance(loaded.model, WrappedClassifier)
    resumed = Trainer(digits_config(epochs=2), run, resume=True, progress=False, **_objects())
    assert resumed.start_epoch == 2
