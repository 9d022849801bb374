"""The demo trains its three methods, evaluates them on corrupted data and writes its comparison and plots."""
import json

from auglabel.cli import main


def test_demo_on_digits_writes_three_runs_the_comparison_and_the_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUGLABEL_DATA", str(tmp_path / "no-data-here"))
    code = main(["demo", "--epochs", "2", "--subsample", "60", "--run_dir", str(tmp_path / "demo"),
                 "--data_root", str(tmp_path / "no-data-here"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Falling back to scikit-learn's 8x8 digits" in out
    root = tmp_path / "demo"
    for name in ("onehot", "augmix", "augmix_autolabel"):
        metrics = json.loads((root / name / "metrics.json").read_text())
        assert metrics["dataset"] == "digits" and metrics["corruption.count"] == 60
        assert 0 <= metrics["corruption.ece"] <= 1 and "temperature_scaling" in metrics
        assert (root / name / "reliability.png").is_file()
    assert (root / "augmix_autolabel" / "autolabel.png").is_file()
    assert (root / "severity.png").stat().st_size > 0
    table = (root / "comparison.md").read_text()
    assert "| one-hot |" in table and "| AugMix |" in table and "| AugMix + AutoLabel |" in table
    assert table in out


def test_demo_rejects_a_bad_epoch_count(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_demo_runs_the_test_bed_configs():
    from auglabel.demo import demo_config, testbed_config

    cfg = demo_config("fashion_mnist", None, None, "cpu", 2, "augmix_autolabel")
    shipped = testbed_config("augmix_autolabel")
    assert cfg.train.epochs == shipped.train.epochs == 30
    assert (cfg.data.train_subset, cfg.data.val_size) == (8000, 3000)
    assert cfg.augment == shipped.augment and cfg.labels == shipped.labels
    digits = demo_config("digits", 3, None, "cpu", None, "onehot")
    assert (digits.data.name, digits.data.train_subset, digits.train.epochs) == ("digits", None, 3)
