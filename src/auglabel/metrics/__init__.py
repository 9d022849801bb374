"""Metrics that accumulate over batches and combine exactly across processes."""
from .calibration import CalibrationStats

__all__ = ["CalibrationStats"]
