"""Every shipped config parses, validates and trains (shrunk to a tiny digits run)."""
from pathlib import Path

import pytest

from auglabel.cli import main

ROOT = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(ROOT.glob("*.yaml")) + sorted((ROOT / "autolabel").glob("*.yaml")) + sorted((ROOT / "testbed").glob("*.yaml"))
PAPER_SCALE = ROOT / "testbed" / "scale" / "paper.yaml"
TINY = ["--data.name", "digits", "--data.val_size", "100", "--data.train_subset", "400", "--data.test_subset", "100",
        "--train.epochs", "1", "--train.batch_size", "50", "--train.device", "cpu"]


def test_configs_exist():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(ROOT)) for c in CONFIGS])
def test_config_trains_on_a_tiny_digits_run(config, tmp_path, capsys):
    code = main(["train", str(config), "--run_dir", str(tmp_path / "run"), *TINY])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_testbed_configs_are_the_package_data():
    import auglabel

    shipped = Path(auglabel.__file__).parent / "configs" / "testbed"
    assert (ROOT / "testbed").resolve() == shipped.resolve()
    assert {p.name for p in (ROOT / "testbed").glob("*.yaml")} >= {"onehot.yaml", "augmix_autolabel.yaml"}


def test_paper_scale_overlay_is_one_override_away(tmp_path, capsys):
    """Stacking scale/paper.yaml turns a test-bed config into the papers' model and schedule; on a CPU
    (device overridden, as a user without a GPU would) it still trains, in fp32."""
    from auglabel.cli import _experiment_from, _train_parser

    parser = _train_parser()
    base = ROOT / "testbed" / "mixup_alpha1_autolabel.yaml"
    cfg = _experiment_from(parser.parse_args(["--config", str(base), "--config", str(PAPER_SCALE)]))
    assert cfg.model.name == "preact_resnet18" and cfg.train.epochs == 200 and cfg.data.train_subset is None
    assert (cfg.train.device, cfg.train.precision, cfg.train.channels_last) == ("cuda", "bf16", True)
    assert (cfg.augment.name, cfg.labels.name, cfg.labels.params["num_buckets"]) == ("mixup", "autolabel", 10)
    assert cfg.optim.weight_decay == 5e-4 and cfg.optim.nesterov
    code = main(["train", str(base), "--config", str(PAPER_SCALE), "--run_dir", str(tmp_path / "run"), *TINY,
                 "--data.train_subset", "200", "--data.val_size", "50"])
    assert code == 0, capsys.readouterr().err
    assert "CUDA only" in capsys.readouterr().err


def test_wrn_overlay_is_the_autolabel_papers_model():
    from auglabel.cli import _experiment_from, _train_parser

    overlay = ROOT / "testbed" / "scale" / "paper_wrn.yaml"
    cfg = _experiment_from(_train_parser().parse_args(["--config", str(ROOT / "testbed" / "augmix_autolabel.yaml"),
                                                       "--config", str(overlay)]))
    assert cfg.model.name == "wide_resnet" and cfg.model.params == {"depth": 28, "width": 10, "dropout": 0.0}
    assert cfg.augment.params["width"] == 1 and cfg.labels.name == "autolabel" and cfg.train.epochs == 200
