"""Result files: JSON metrics and plots (reliability diagrams), always written atomically."""
from .io import write_bytes_atomic, write_json_atomic
from .plots import reliability_diagram, risk_coverage_plot

__all__ = ["reliability_diagram", "risk_coverage_plot", "write_bytes_atomic", "write_json_atomic"]
