"""Every shipped config parses, validates and trains (shrunk to a tiny digits run)."""
from pathlib import Path

import pytest

from auglabel.cli import main

ROOT = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(ROOT.glob("*.yaml")) + sorted((ROOT / "autolabel").glob("*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(ROOT)) for c in CONFIGS])
def test_config_trains_on_a_tiny_digits_run(config, tmp_path, capsys):
    code = main(["train", str(config), "--run_dir", str(tmp_path / "run"), "--data.name", "digits",
                 "--data.val_size", "100", "--data.train_subset", "400", "--data.test_subset", "100",
                 "--train.epochs", "1", "--train.batch_size", "50", "--train.device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.json").is_file()
