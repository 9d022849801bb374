"""Bad input at the command line: one line on stderr, exit status 2, nothing clobbered."""
import gzip
import subprocess
import sys

import pytest
import yaml

from auglabel.cli import main

BASE = {
    "data": {"name": "digits", "val_size": 0.2},
    "model": {"name": "small_cnn"},
    "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
}


def _config(tmp_path, **sections):
    raw = {key: dict(value) for key, value in BASE.items()}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _fails(capsys, argv, fragment):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err
    assert fragment in err, err
    return err


@pytest.mark.parametrize("section,values,fragment", [
    ("model", {"name": "resnet9000"}, "unknown model 'resnet9000'"),
    ("labels", {"name": "magic"}, "unknown label strategy 'magic'"),
    ("labels", {"name": "uniform", "params": {"eps": 1.5}}, "eps must be in [0, 1)"),
    ("optim", {"lr": -0.1}, "optim.lr must be > 0"),
    ("data", {"name": "fashion_mnist", "root": "/nonexistent/data"}, "/nonexistent/data"),
    ("data", {"name": "imagenet21k"}, "imagenet21k"),
])
def test_bad_config_values(tmp_path, capsys, section, values, fragment):
    err = _fails(capsys, ["train", _config(tmp_path, **{section: values}), "--run_dir", str(tmp_path / "r")], fragment)
    assert len(err.splitlines()) == 1


def test_corrupt_idx_file_is_a_one_line_error(tmp_path, capsys):
    root = tmp_path / "fmnist"
    root.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (root / name).write_bytes(gzip.compress(b"\x00\x00\x08\x03garbage"))
    _fails(capsys, ["train", _config(tmp_path, data={"name": "fashion_mnist", "root": str(root)}),
                    "--run_dir", str(tmp_path / "r")], "corrupt")


def test_existing_run_dir_refused_and_kept(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.json").write_text('{"accuracy": 0.9}')
    _fails(capsys, ["train", _config(tmp_path), "--run_dir", str(run)], "already exists")
    assert (run / "metrics.json").read_text() == '{"accuracy": 0.9}'


def test_unreadable_and_foreign_checkpoints(tmp_path, capsys):
    assert main(["train", _config(tmp_path), "--run_dir", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "r" / "checkpoint.pt"
    original = checkpoint.read_bytes()
    checkpoint.write_bytes(b"not a checkpoint")
    _fails(capsys, ["evaluate", str(tmp_path / "r")], "cannot read checkpoint")
    import torch
    torch.save({"weights": torch.zeros(3)}, checkpoint)
    _fails(capsys, ["evaluate", str(tmp_path / "r")], "not an auglabel checkpoint")
    checkpoint.write_bytes(original)
    # a checkpoint of a different model is foreign to this run's config
    cfg = tmp_path / "r" / "config.yaml"
    raw = yaml.safe_load(cfg.read_text())
    raw["model"]["name"] = "preact_resnet18"
    cfg.write_text(yaml.safe_dump(raw))
    _fails(capsys, ["evaluate", str(tmp_path / "r")], "does not match")


def test_evaluate_and_calibrate_a_run(tmp_path, capsys):
    import json

    run = tmp_path / "r"
    assert main(["train", _config(tmp_path), "--run_dir", str(run), "--train.epochs", "2"]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run)]) == 0
    evaluated = json.loads((run / "metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(trained["accuracy"])
    assert main(["calibrate", str(run)]) == 0
    scaled = json.loads((run / "metrics.json").read_text())["temperature_scaling"]
    assert scaled["temperature"] > 0
    assert scaled["after"]["accuracy"] == pytest.approx(scaled["before"]["accuracy"])  # T keeps argmax
    assert (run / "reliability_calibrated.png").is_file()


def test_resume_from_run_dir_only(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", _config(tmp_path), "--run_dir", str(run)]) == 0
    assert main(["train", "--run_dir", str(run), "--resume", "--train.epochs", "2"]) == 0
    assert "epoch 2" in capsys.readouterr().out


def test_missing_run_and_unknown_command(tmp_path, capsys):
    _fails(capsys, ["evaluate", str(tmp_path / "nope")], "does not exist")
    assert main(["frobnicate"]) == 2


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "auglabel.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout
