"""Severity plots: one method (robustness report) and several (demo, reproduction grid)."""
import pytest
from PIL import Image

from auglabel.errors import DataError
from auglabel.report.robustness_plots import plot_corruption_severity, plot_severity_comparison

CURVE = {"accuracy": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], "ece": [0.01, 0.02, 0.04, 0.08, 0.1, 0.15]}


def test_comparison_plot_writes_a_png_with_error_bars(tmp_path):
    spread = {"a": {"accuracy": [0.01] * 6, "ece": [0.005] * 6}, "b": {"accuracy": [0.0] * 6, "ece": [0.0] * 6}}
    path = plot_severity_comparison({"a": CURVE, "b": CURVE}, tmp_path / "cmp.png", title="t", spread=spread)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 500


def test_single_curve_plot_still_writes(tmp_path):
    assert plot_corruption_severity(CURVE, tmp_path / "one.png").is_file()


@pytest.mark.parametrize("curves", [{}, {"a": {"accuracy": [0.9] * 5, "ece": [0.1] * 6}}, {"a": {"accuracy": [0.9] * 6}}])
def test_comparison_plot_rejects_incomplete_curves(tmp_path, curves):
    with pytest.raises(DataError):
        plot_severity_comparison(curves, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
