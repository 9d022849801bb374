"""Reading metrics.json values by dotted key, whether stored flat or nested."""
from __future__ import annotations

from typing import Any, Mapping


def lookup(metrics: Mapping[str, Any], key: str) -> Any:
    """``metrics[key]``, where a dotted key may also walk into nested dicts.

    Flat keys win (``"corruption.acc"``, ``"adversarial.0.02"``); otherwise the longest present
    prefix is descended into (``"temperature_scaling.after.ece"``).  None when absent.
    """
    if key in metrics:
        return metrics[key]
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if isinstance(metrics.get(head), Mapping):
            return lookup(metrics[head], ".".join(parts[cut:]))
    return None


__all__ = ["lookup"]
