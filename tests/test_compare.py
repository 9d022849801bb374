"""``auglabel compare``: grouping by configuration, mean ± std over seeds, Markdown and CSV."""
import csv
import io
import json
import statistics

import pytest
import yaml

from auglabel.cli import main
from auglabel.compare import compare_runs, configuration_key
from auglabel.errors import DataError


def _run(tmp_path, name, seed, metrics, labels="onehot"):
    run = tmp_path / name
    run.mkdir()
    config = {"data": {"name": "fashion_mnist", "val_size": 5000}, "labels": {"name": labels, "params": {}},
              "train": {"epochs": 5, "seed": seed}, "run_dir": str(run)}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.json").write_text(json.dumps(metrics))
    return str(run)


@pytest.fixture
def runs(tmp_path):
    accuracy = [0.80, 0.90, 0.97]
    ece = [0.05, 0.02, 0.03]
    onehot = [_run(tmp_path, f"onehot-seed{s}", s, {"accuracy": a, "ece": e, "adversarial.0.1": 0.2 + s / 10,
                                                     "adversarial.0.02": 0.5, "corruption.acc": 0.7,
                                                     "count": 10000, "corruption.mce_normalized": False})
              for s, a, e in zip(range(3), accuracy, ece)]
    uniform = [_run(tmp_path, "uniform-seed0", 0, {"accuracy": 0.85, "ece": 0.01}, labels="uniform")]
    return onehot, uniform, accuracy, ece


def test_groups_by_config_and_summarises(runs):
    onehot, uniform, accuracy, ece = runs
    comparison = compare_runs([onehot[0], uniform[0], onehot[1], onehot[2]])
    assert comparison.labels == ["labels.name=onehot", "labels.name=uniform"]
    assert comparison.runs[0] == [onehot[0], onehot[1], onehot[2]]
    # main metrics in their fixed order, adversarial budgets sorted numerically, no bookkeeping keys
    assert comparison.columns == ["accuracy", "ece", "corruption.acc", "adversarial.0.02", "adversarial.0.1"]
    mean, std, n = comparison.cells[0]["accuracy"]
    assert n == 3 and mean == pytest.approx(statistics.mean(accuracy)) and std == pytest.approx(statistics.stdev(accuracy))
    assert comparison.cells[1]["accuracy"] == (0.85, None, 1)
    assert "adversarial.0.1" not in comparison.cells[1]
    table = comparison.markdown()
    expected = f"{statistics.mean(ece):.4f} ± {statistics.stdev(ece):.4f} (n=3)"
    assert expected in table
    row = next(line for line in table.splitlines() if line.startswith("| labels.name=uniform"))
    assert "| 0.8500 |" in row and row.count("| - ") == 3


def test_csv_and_files(runs, tmp_path, capsys):
    onehot, uniform, accuracy, _ = runs
    out, table_csv = tmp_path / "t.md", tmp_path / "t.csv"
    assert main(["compare", *onehot, *uniform, "--out", str(out), "--csv", str(table_csv)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text().strip() == printed.strip()
    rows = list(csv.DictReader(io.StringIO(table_csv.read_text())))
    assert [r["n"] for r in rows] == ["3", "1"]
    assert float(rows[0]["accuracy_mean"]) == pytest.approx(statistics.mean(accuracy))
    assert float(rows[0]["accuracy_std"]) == pytest.approx(statistics.stdev(accuracy))
    assert rows[1]["accuracy_std"] == "" and rows[1]["adversarial.0.1_n"] == "0"


def test_seed_and_run_dir_do_not_split_groups_but_other_keys_do():
    a = {"train": {"seed": 0, "epochs": 5}, "run_dir": "x"}
    assert configuration_key(a) == configuration_key({"train": {"seed": 7, "epochs": 5}, "run_dir": "y"})
    assert configuration_key(a) != configuration_key({"train": {"seed": 0, "epochs": 6}, "run_dir": "x"})


def test_single_configuration_is_named_by_its_folder(runs):
    onehot = runs[0]
    comparison = compare_runs(onehot[:2])
    assert comparison.labels == ["onehot-seed0"] and comparison.cells[0]["accuracy"][2] == 2


def test_missing_runs_are_one_line_errors(tmp_path, capsys, runs):
    out = tmp_path / "t.md"
    assert main(["compare", runs[0][0], str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1 and not out.exists()
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text("train: {seed: 0}\n")
    with pytest.raises(DataError, match="no metrics.json"):
        compare_runs([str(bare)])
    (bare / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot parse"):
        compare_runs([str(bare)])
