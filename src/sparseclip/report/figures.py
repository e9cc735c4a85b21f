"""Readable matplotlib figures for the report and the demo: compact tick labels on log axes (``2k``, ``10k``,
``64k``, more than one per axis), legends beside the axes instead of over the data."""

from __future__ import annotations


def compact(x: float, _pos: int | None = None) -> str:
    """``1500`` -> ``1.5k``, ``64000`` -> ``64k``, ``2e6`` -> ``2M``, ``0.05`` -> ``0.05``."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def log_axis(axis, span: tuple[float, float] | None = None) -> None:
    """Put a log scale's major ticks at 1, 2 and 5 times the powers of ten (at 1 to 9 times when ``span``, the data's
    range, covers less than one decade, so the axis carries several labels) and label them compactly."""
    import matplotlib.ticker as mt

    narrow = span is not None and span[0] > 0 and span[1] / span[0] < 10
    subs = tuple(range(1, 10)) if narrow else (1.0, 2.0, 5.0)
    axis.set_major_locator(mt.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(mt.FuncFormatter(compact))
    axis.set_minor_formatter(mt.NullFormatter())


def legend_beside(ax, title: str | None = None) -> None:
    """The axes' legend to the right of them (the figure should use ``layout="constrained"``, which makes room)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=title)
