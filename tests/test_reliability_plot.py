"""Reliability diagram PNG and atomic JSON writes."""
import json
import os

import pytest
import torch
from PIL import Image

from auglabel.errors import ConfigError, DataError
from auglabel.metrics import CalibrationStats
from auglabel.report import reliability_diagram, write_json_atomic


def overconfident_bins():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 10, generator=g) * 3
    labels = torch.multinomial((logits / 2).softmax(1), 1, generator=g).squeeze(1)
    stats = CalibrationStats()
    stats.update(logits, labels)
    return stats.bins()


def test_writes_a_valid_png_and_leaves_no_temporary_file(tmp_path):
    path = reliability_diagram(overconfident_bins(), tmp_path / "plots" / "reliability.png", title="test")
    assert path == tmp_path / "plots" / "reliability.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < path.stat().st_size < 1_000_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert 400 <= image.width <= 2000 and 400 <= image.height <= 2000
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert len(colours) > 20  # drawn, not a blank canvas
    assert os.listdir(path.parent) == ["reliability.png"]


def test_overwrites_and_handles_empty_bins(tmp_path):
    bins = overconfident_bins()
    bins["counts"][0:3] = [0.0, 0.0, 0.0]
    bins["confidence"][0:3] = bins["accuracy"][0:3] = [None, None, None]
    path = tmp_path / "reliability.png"
    path.write_bytes(b"old")
    reliability_diagram(bins, path)
    with Image.open(path) as image:
        image.verify()


def test_bad_bins_and_bad_path(tmp_path):
    bins = overconfident_bins()
    with pytest.raises(DataError, match="accuracy"):
        reliability_diagram({k: v for k, v in bins.items() if k != "accuracy"}, tmp_path / "x.png")
    with pytest.raises(DataError, match="edges"):
        reliability_diagram({**bins, "edges": bins["edges"][:-1]}, tmp_path / "x.png")
    empty = {**bins, "counts": [0.0] * len(bins["counts"])}
    with pytest.raises(DataError, match="empty"):
        reliability_diagram(empty, tmp_path / "x.png")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="cannot write"):
        reliability_diagram(bins, tmp_path / "a_file" / "x.png")


def test_write_json_atomic_round_trip(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic({"ece": 0.1, "t": torch.tensor(1.5), "bins": torch.arange(3), "bad": float("nan")}, path)
    assert json.loads(path.read_text()) == {"ece": 0.1, "t": 1.5, "bins": [0, 1, 2], "bad": None}
    with pytest.raises(TypeError):
        write_json_atomic({"object": object()}, path)
    assert json.loads(path.read_text())["ece"] == 0.1  # a failed write leaves the old file intact
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_side_by_side_diagrams_have_one_column_per_panel(tmp_path):
    from auglabel.report.plots import reliability_diagrams

    one = reliability_diagram(overconfident_bins(), tmp_path / "one.png")
    two = reliability_diagrams({"a": overconfident_bins(), "b": overconfident_bins()}, tmp_path / "two.png")
    with Image.open(one) as a, Image.open(two) as b:
        assert b.height == a.height and 1.8 * a.width < b.width < 2.2 * a.width
    with pytest.raises(DataError, match="nothing to draw"):
        reliability_diagrams({}, tmp_path / "none.png")


# ---- equal-mass bins and per-bin counts (issue 12 item 7) ------------------------------------

def overconfident_stats(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=g) * 3
    labels = torch.multinomial((logits / 2).softmax(1), 1, generator=g).squeeze(1)
    stats = CalibrationStats()
    stats.update(logits, labels)
    return stats


def test_equal_mass_bins_describe_the_adaptive_ece():
    from auglabel.functional.calibration import ece_from_bins

    stats = overconfident_stats(n=2003)
    bins = stats.bins(equal_mass=True)
    json.dumps(bins)
    assert bins["scheme"] == "equal_mass" and stats.bins()["scheme"] == "equal_width"
    assert bins["counts"] == [134.0] * 8 + [133.0] * 7  # 2003 = 15 * 133 + 8
    edges = bins["edges"]
    assert len(edges) == 16 and all(a <= b for a, b in zip(edges, edges[1:]))
    conf, _ = stats.samples()
    assert edges[0] == float(conf.min()) and edges[-1] == float(conf.max())
    for lo, hi, mean in zip(edges, edges[1:], bins["confidence"]):
        assert lo <= mean <= hi
    sums = [torch.tensor(v, dtype=torch.float64) for v in (
        bins["counts"], [c * m for c, m in zip(bins["counts"], bins["confidence"])],
        [c * a for c, a in zip(bins["counts"], bins["accuracy"])])]
    assert float(ece_from_bins(*sums)) == pytest.approx(stats.compute()["ece_adaptive"], rel=1e-9)
    few = overconfident_stats(n=6).bins(equal_mass=True)  # fewer predictions than bins: one bin each
    assert few["counts"] == [1.0] * 6 and len(few["edges"]) == 7


def test_diagram_writes_counts_under_the_bars_and_names_the_scheme(tmp_path):
    from auglabel.report.plots import reliability_figure

    stats = overconfident_stats()
    width, mass = stats.bins(), stats.bins(equal_mass=True)
    figure = reliability_figure({"width": width, "mass": mass})
    top_width, top_mass, bottom_width, bottom_mass = figure.axes  # row-major 2 x 2
    drawn = [t.get_text().strip() for t in bottom_width.texts]
    assert drawn == [f"{c:.0f}" for c in width["counts"] if c > 0]  # every non-empty equal-width bin
    assert all(text.isdigit() for text in (t.get_text().strip() for t in bottom_mass.texts))
    assert 1 <= len(bottom_mass.texts) <= 15
    legend_width = " ".join(t.get_text() for t in top_width.get_legend().get_texts())
    legend_mass = " ".join(t.get_text() for t in top_mass.get_legend().get_texts())
    assert "15 equal-width bins" in legend_width and "adaptive ECE" not in legend_width
    assert f"adaptive ECE = {100 * stats.compute()['ece_adaptive']:.2f}%" in legend_mass
    path = reliability_diagram(mass, tmp_path / "equal_mass.png")
    with Image.open(path) as image:
        image.verify()
    with pytest.raises(DataError, match="scheme"):
        reliability_diagram({**width, "scheme": "quantile"}, tmp_path / "x.png")
    with pytest.raises(DataError, match="no predictions"):
        CalibrationStats().bins(equal_mass=True)
