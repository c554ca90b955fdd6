"""Matplotlib plots inside a dock: a figure and Qt canvas in napari's theme colours."""

__all__ = ["new_canvas", "style_axes", "theme_colors"]

#: Colours when napari's theme cannot be read (its dark theme).
DARK = {"bg": "#262930", "fg": "#f0f1f2", "grid": "#5a626c"}


def theme_colors(viewer) -> dict[str, str]:
    """Background, text and grid colours of the viewer's theme (``bg``, ``fg``, ``grid``)."""
    colors = dict(DARK)
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        colors["bg"] = theme.canvas.as_hex() if theme.id == "light" else theme.background.as_hex()
        colors["fg"] = theme.text.as_hex()
        colors["grid"] = theme.secondary.as_hex()
    except Exception:  # noqa: BLE001 - any theme problem: keep the dark defaults
        pass
    return colors


def style_axes(ax, colors: dict[str, str]) -> None:
    """Axes (ticks, spines, labels and legend) in the given theme colours."""
    ax.set_facecolor(colors["bg"])
    ax.tick_params(colors=colors["fg"], which="both", labelsize="small")
    for spine in ax.spines.values():
        spine.set_color(colors["grid"])
    ax.xaxis.label.set_color(colors["fg"])
    ax.yaxis.label.set_color(colors["fg"])
    legend = ax.get_legend()
    if legend is not None:
        legend.get_frame().set_facecolor(colors["bg"])
        for text in legend.get_texts():
            text.set_color(colors["fg"])


def new_canvas(colors: dict[str, str], min_height_px: int, figsize=(4, 3)):
    """(figure, Qt canvas): a constrained-layout figure in the theme's background."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    figure.set_facecolor(colors["bg"])
    canvas = FigureCanvasQTAgg(figure)
    canvas.setMinimumHeight(min_height_px)
    return figure, canvas
