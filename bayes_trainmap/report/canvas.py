"""The figure canvas and state palette shared by every figure of the report.

Kept apart from :mod:`bayes_trainmap.report.plots` so that
:mod:`bayes_trainmap.report.map_figure`, which ``plots`` imports, can use them at
module level without an import cycle. matplotlib is imported when a figure is made.
"""

from __future__ import annotations

__all__ = ["new_axes", "state_colors"]


def new_axes(figsize=(6.0, 4.0), ncols: int = 1):
    """A fresh figure on an Agg canvas (no pyplot state) and its axes.

    Parameters
    ----------
    figsize : (2,) tuple of float
        Width and height in inches.
    ncols : int
        Number of side-by-side axes.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : Axes, or list of ``ncols`` Axes when ``ncols > 1``
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, (axes[0] if ncols == 1 else axes)


def state_colors(n_states: int) -> list:
    """One distinct colour per state (tab10, then tab20).

    Returns
    -------
    colors : list of ``n_states`` RGBA tuples
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n_states <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n_states)]
