"""Engine hooks for learned components, exercised with tiny dummies defined here (not PLS): setup(spec)
before the optimiser and the restore, per-component optimiser groups, the step counter, the dry-run report."""
import pytest
import torch
from torch import nn

from auglabel.augment import AUGMENTATIONS, Augmentation
from auglabel.batch import Batch
from auglabel.data import load_dataset
from auglabel.engine.checkpoint import load_checkpoint
from auglabel.engine.config import ComponentConfig
from auglabel.engine.runs import load_run
from auglabel.engine.step import ComponentSpec, TrainingStep
from auglabel.engine.trainer import Trainer
from auglabel.labels import LABEL_STRATEGIES, LabelStrategy
from auglabel.losses import soft_cross_entropy, weighted_mean


class PerSampleTable(LabelStrategy):
    """AutoDO-like: a learned (dataset_size, K) table of label logits indexed by ``batch.index``."""

    def __init__(self):
        super().__init__()
        self.table: nn.Parameter | None = None
        self.spec: ComponentSpec | None = None
        self.steps: list[int] = []
        self.reports = []

    def setup(self, spec):
        self.spec = spec
        self.table = nn.Parameter(torch.zeros(spec.dataset_size, spec.num_classes, device=spec.device))

    def param_groups(self):
        return [{"params": [self.table], "weight_decay": 0.0, "lr": 0.5}]

    def check_augmentation(self, report):
        self.reports.append(report)

    def prepare(self, batch, *, generator, step):
        self.steps.append(step)
        return batch

    def loss(self, logits, batch, features=None):
        targets = torch.softmax(5.0 * batch.one_hot() + self.table[batch.index], dim=1)
        return weighted_mean(soft_cross_entropy(logits, targets), batch.weights)


class LearnedShift(Augmentation):
    """A learned per-channel brightness shift, sized by the input shape."""

    def setup(self, spec):
        self.shift = nn.Parameter(torch.zeros(spec.input_shape[0], 1, 1, device=spec.device))

    def forward(self, batch, *, generator, model=None):
        return batch.replace(inputs=batch.inputs + self.shift)


for registry, name, cls in ((LABEL_STRATEGIES, "test_table", PerSampleTable), (AUGMENTATIONS, "test_shift", LearnedShift)):
    if name not in registry:
        registry.register(name)(cls)


def _config(digits_config, epochs=2, augment="none"):
    cfg = digits_config(epochs=epochs)
    cfg.labels = ComponentConfig("test_table")
    cfg.augment = ComponentConfig(augment)
    return cfg


def test_setup_gets_the_model_and_data_before_the_optimiser(digits_config, tmp_path):
    trainer = Trainer(_config(digits_config, augment="test_shift"), tmp_path / "run", progress=False)
    spec = trainer.step.labels.spec
    assert spec.num_classes == 10 and spec.feature_dim == trainer.model.feature_dim == 64
    assert spec.input_shape == (1, 8, 8) and spec.model_name == "SmallCNN" and spec.device == torch.device("cpu")
    assert spec.dataset_size == len(load_dataset("digits", "train")) and spec.train_size == len(trainer.splits.train_idx)
    assert trainer.step.augment.shift.shape == (1, 1, 1)
    ids = [id(p) for group in trainer.optimizer.param_groups for p in group["params"]]
    assert sorted(ids) == sorted(id(p) for p in trainer.step.parameters())  # every parameter exactly once
    assert len(ids) == len(set(ids))
    model_group, table_group = trainer.optimizer.param_groups
    assert table_group["params"] == [trainer.step.labels.table]
    assert (table_group["weight_decay"], table_group["initial_lr"]) == (0.0, 0.5)
    assert (model_group["weight_decay"], model_group["initial_lr"]) == (5e-4, 0.05)
    assert any(p is trainer.step.augment.shift for p in model_group["params"])  # no group: the run's settings


def test_per_sample_table_trains_resumes_and_reloads(digits_config, tmp_path):
    straight = Trainer(_config(digits_config), tmp_path / "straight", progress=False)
    straight.fit()
    steps = len(straight.train_loader)
    assert straight.step.labels.steps == list(range(2 * steps))  # prepare gets the 0-based counter
    table = straight.step.labels.table.detach()
    trained = straight.splits.train_idx
    assert table[trained].abs().sum(1).gt(0).float().mean() > 0.9  # rows of trained samples moved
    assert torch.equal(table[straight.splits.val_idx], torch.zeros(len(straight.splits.val_idx), 10))
    Trainer(_config(digits_config), tmp_path / "resumed", progress=False).run_epoch(1)
    assert int(load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"]["step_count"]) == steps
    resumed = Trainer(_config(digits_config), tmp_path / "resumed", resume=True, progress=False)
    resumed.fit()
    assert resumed.step.labels.steps == list(range(steps, 2 * steps))  # the counter continued
    torch.testing.assert_close(resumed.step.labels.table.detach(), table, atol=1e-6, rtol=0)
    loaded = load_run(tmp_path / "straight")  # set up before the strict restore, or the table would not fit
    assert loaded.epoch == 2


def test_dry_run_report_reaches_check_augmentation(digits_config, tmp_path):
    trainer = Trainer(_config(digits_config), tmp_path / "plain", progress=False)
    (report,) = trainer.step.labels.reports
    assert not report.calls_model and len(report.before) == 2 and report.after.num_views == 1
    cfg = _config(digits_config)
    cfg.augment = ComponentConfig("pgd", {"eps": 0.03, "steps": 1})
    (report,) = Trainer(cfg, tmp_path / "pgd", progress=False).step.labels.reports
    assert report.calls_model and "delta_linf" in report.after.info


def _tiny_step(labels=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    return TrainingStep(model, LearnedShift(), labels or PerSampleTable())


SPEC = ComponentSpec(num_classes=3, feature_dim=None, input_shape=(1, 2, 2), dataset_size=7, train_size=5)


def test_param_groups_cover_every_parameter_once_and_reject_foreign_or_repeated_ones():
    step = _tiny_step()
    step.setup(SPEC)
    groups = step.param_groups()
    assert [len(g["params"]) for g in groups] == [3, 1]  # model weight, bias, shift | table
    assert groups[1]["params"][0] is step.labels.table and step.labels.table.shape == (7, 3)
    foreign = nn.Parameter(torch.zeros(1))
    step.labels.param_groups = lambda: [{"params": [foreign]}]
    with pytest.raises(ValueError, match="not part of the training step"):
        step.param_groups()
    step.labels.param_groups = lambda: [{"params": [step.labels.table]}, {"params": [step.labels.table]}]
    with pytest.raises(ValueError, match="twice"):
        step.param_groups()


def test_counter_counts_training_forwards_and_survives_state_dicts():
    step = _tiny_step()
    step.setup(SPEC)
    batch = Batch(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 5, 6]), 3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        step(batch, generator)
    step.eval()
    step(batch, generator)
    assert step.steps_done == 3 and step.labels.steps == [0, 1, 2, 3]
    state = step.state_dict()
    assert int(state["step_count"]) == 3
    fresh = _tiny_step()
    fresh.setup(SPEC)
    fresh.load_state_dict(state)
    assert fresh.steps_done == 3
    fresh.train()
    fresh(batch, generator)
    assert fresh.labels.steps == [3]
    old = {k: v for k, v in state.items() if k != "step_count"}  # a checkpoint from before the counter
    older = _tiny_step()
    older.setup(SPEC)
    older.load_state_dict(old)
    assert older.steps_done == 0
