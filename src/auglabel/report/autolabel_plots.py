"""AutoLabel's learned labels: per-bucket trajectories over epochs and the final label vs distance."""
from __future__ import annotations

import io
import os
from pathlib import Path

from .io import write_bytes_atomic


def plot_autolabel(history: list[list[list[float]]], path: str | os.PathLike) -> Path:
    """Two panels from ``history[epoch][group][bucket]`` (true-class values ``t``).

    Left: every bucket's ``t`` against epoch (colour = distance bucket, line style = group).
    Right: the latest ``t`` against the bucket's mid distance, one line per group.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups, buckets = len(history[-1]), len(history[-1][0])
    epochs = list(range(1, len(history) + 1))
    colours = colormaps["viridis"]
    styles = ["-", "--", ":", "-."]
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for g in range(groups):
        for n in range(buckets):
            label = f"bucket {n + 1}" if g == 0 and (n == 0 or n == buckets - 1) else None
            left.plot(epochs, [epoch[g][n] for epoch in history], styles[g % len(styles)],
                      color=colours(n / max(buckets - 1, 1)), marker="o" if len(epochs) < 12 else None,
                      markersize=3, label=label)
        mids = [(n + 0.5) / buckets for n in range(buckets)]
        right.plot(mids, history[-1][g], styles[g % len(styles)], marker="o",
                   label=f"group {g + 1}" if groups > 1 else "learned label")
    left.set(xlabel="epoch", ylabel="true-class value t", title="AutoLabel trajectories (colour: distance)")
    left.legend(loc="lower left", fontsize=8)
    right.axhline(1.0, color="grey", lw=0.8, ls=":")
    right.set(xlabel="transformation distance (bucket centre)", ylabel="true-class value t",
              title=f"labels after epoch {len(history)}", xlim=(0, 1))
    right.legend(loc="lower left", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return write_bytes_atomic(buffer.getvalue(), path)
