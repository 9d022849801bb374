"""Pipelines end to end on digits: config list syntax, the CLI, resume bit-identical, handed-in objects."""
import pytest
import torch
import yaml

from auglabel.augment import Mixup, Pipeline, StandardAugmentation
from auglabel.cli import main
from auglabel.engine.checkpoint import load_checkpoint
from auglabel.engine.config import ComponentConfig, ExperimentConfig
from auglabel.engine.trainer import Trainer
from auglabel.errors import ConfigError
from auglabel.labels import MixupLabels


def _params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def _pipeline_config(digits_config, **train):
    cfg = digits_config(**train)
    cfg.augment = ComponentConfig("pipeline", {"members": ["standard", {"name": "mixup", "params": {"beta": 1.0}}]})
    cfg.labels = ComponentConfig("mixup")
    return cfg


def test_list_syntax_becomes_the_pipeline_entry():
    cfg = ExperimentConfig.from_dict({"augment": ["standard", {"name": "mixup", "params": {"beta": 0.5}}]})
    assert cfg.augment == ComponentConfig("pipeline", {"members": ["standard", {"name": "mixup", "params": {"beta": 0.5}}]})
    assert ExperimentConfig(augment=["standard"]).augment.name == "pipeline"
    assert ExperimentConfig.from_dict({"augment": {"name": "mixup"}}).augment == ComponentConfig("mixup")  # single form
    with pytest.raises(ConfigError, match="pipeline member"):
        ExperimentConfig.from_dict({"augment": [{"class_path": "os.system"}]})


def test_resume_with_a_pipeline_is_bit_identical(digits_config, tmp_path):
    straight = Trainer(_pipeline_config(digits_config, epochs=2), tmp_path / "straight", progress=False)
    straight.fit()
    Trainer(_pipeline_config(digits_config, epochs=2), tmp_path / "resumed", progress=False).run_epoch(1)  # then "interrupted"
    resumed = Trainer(_pipeline_config(digits_config, epochs=2), tmp_path / "resumed", resume=True, progress=False)
    assert resumed.start_epoch == 2 and isinstance(resumed.step.augment, Pipeline)
    resumed.fit()
    assert torch.equal(_params(straight), _params(resumed))
    saved = yaml.safe_load((tmp_path / "straight" / "config.yaml").read_text())
    assert saved["augment"]["name"] == "pipeline" and saved["augment"]["params"]["members"][0] == "standard"


def test_every_members_state_is_checkpointed(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    cfg.augment = ComponentConfig("pipeline", {"members": ["standard", "autodo"]})
    cfg.labels = ComponentConfig("autodo")
    trainer = Trainer(cfg, tmp_path / "r", progress=False)
    trainer.fit()
    state = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    flat = repr(list(_keys(state)))
    assert "augment.members.1.probability" in flat and "augment.members.1.magnitude" in flat
    again = Trainer(cfg, tmp_path / "r", resume=True, progress=False)
    table = again.step.augment.members[1].probability.values
    assert torch.equal(table, trainer.step.augment.members[1].probability.values)


def _keys(obj, prefix=""):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"{prefix}{key}"
            yield from _keys(value, f"{prefix}{key}.")


def test_mixup_labels_refuse_a_pipeline_without_mixing(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    cfg.augment = ComponentConfig("pipeline", {"members": ["standard"]})
    cfg.labels = ComponentConfig("mixup")
    with pytest.raises(ConfigError, match="needs per-sample gamma, partner_label"):
        Trainer(cfg, tmp_path / "r", progress=False)


def test_handed_in_pipeline(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    pipe = Pipeline([StandardAugmentation(), Mixup()])
    trainer = Trainer(cfg, tmp_path / "r", progress=False, augmentation=pipe, label_strategy=MixupLabels())
    assert trainer.step.augment is pipe
    assert trainer.fit()["accuracy"] > 0.1


def test_cli_takes_a_list(tmp_path, capsys):
    raw = {"data": {"name": "digits", "val_size": 0.2}, "model": {"name": "small_cnn"},
           "augment": ["standard", {"name": "mixup", "params": {"beta": 0.4}}], "labels": {"name": "mixup"},
           "train": {"epochs": 1, "batch_size": 64, "device": "cpu"}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["train", str(path), "--run_dir", str(tmp_path / "a")]) == 0
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["augment"]
    assert saved == {"name": "pipeline", "params": {"members": ["standard", {"name": "mixup", "params": {"beta": 0.4}}]}}
    del raw["augment"]
    path.write_text(yaml.safe_dump(raw))
    assert main(["train", str(path), "--run_dir", str(tmp_path / "b"), "--augment", "[standard, mixup]"]) == 0
    saved = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["augment"]
    assert saved == {"name": "pipeline", "params": {"members": ["standard", "mixup"]}}
    capsys.readouterr()
    assert main(["train", str(path), "--run_dir", str(tmp_path / "c"), "--augment", "[mixup, cutmix]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "both report info key" in err and len(err.splitlines()) == 1


def test_autodo_summary_finds_the_member_inside_a_pipeline(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    cfg.augment = ComponentConfig("pipeline", {"members": ["standard", "autodo"]})
    cfg.labels = ComponentConfig("autodo")
    trainer = Trainer(cfg, tmp_path / "r", progress=False)
    trainer.fit()
    header = (tmp_path / "r" / "log.csv").read_text().splitlines()[0]
    assert "autodo_prob_rotate" in header, header
