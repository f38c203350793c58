"""Figures shared by every report (gate, benchmark, drift): PNG data URIs so pages need no external assets,
and one accuracy-heatmap helper so that every matrix looks and reads the same."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path


def pyplot():
    """matplotlib's pyplot (headless), its font cache kept in the project (.cache/matplotlib under the current folder)
    unless MPLCONFIGDIR is set: matplotlib would otherwise write it under ~/.cache. Entry points set it from --root
    first (mllmcl.entry.local_state_environment)."""
    os.environ.setdefault("MPLCONFIGDIR", str(Path.cwd().resolve() / ".cache" / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_data_uri(fig) -> str:
    """A figure as a data URI (the page embeds every plot: no external assets)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def png_bytes(data_uri: str) -> bytes:
    """The PNG inside a data URI from png_data_uri, to write the figure as a file."""
    return base64.b64decode(data_uri.split(",", 1)[1])


def draw_heatmap(
    ax,
    matrix,
    tasks,
    title: str,
    xlabel: str,
    ylabels,
    *,
    cmap: str = "RdYlGn",
    marked: set[tuple[int, int]] = frozenset(),
) -> None:
    """Cells with no value stay blank (a task not learned yet is not a zero); `marked` cells get a red frame."""
    import numpy as np

    plt = pyplot()
    arr = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(arr), vmin=0, vmax=1, cmap=colours)
    dark = (lambda v: v > 0.55) if cmap == "Blues" else (lambda v: v < 0.25 or v > 0.85)
    for (i, j), v in np.ndenumerate(arr):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if dark(v) else "black", fontsize=8)
    for i, j in marked:
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#b3261e", linewidth=2.5))
    ax.set_xticks(range(len(tasks)), tasks, rotation=30)
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)


def heatmap(
    matrix, tasks, title: str, xlabel: str, ylabels, *, cmap: str = "RdYlGn", marked: set[tuple[int, int]] = frozenset()
) -> str:
    """A whole figure of one heatmap, as a data URI."""
    fig, ax = pyplot().subplots(figsize=(1.2 + 0.75 * len(tasks), 0.9 + 0.55 * len(ylabels)))
    draw_heatmap(ax, matrix, tasks, title, xlabel, ylabels, cmap=cmap, marked=marked)
    return png_data_uri(fig)
