"""Area against dose, in the style of Larsen et al. (2023), Figs. 2–4 and SOI Fig. 9.

Area (nm² where the pixel size is known, else px) against frame dose on a
log axis; the converged band shaded; the convergence dose and the dose at
50 % segmentation marked, and the Rose-criterion doses of the particle and of a
1 nm² patch (:mod:`napari_lowdose.analysis.rose`) where measured. Several runs
(e.g. MSD-net and U-net) overlay as in Fig. 4. With F1 curves (a truth mask exists)
a second panel shows F1 against dose (SOI Fig. 9).
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..analysis.area_vs_dose import AreaAnalysis

__all__ = ["ROSE_STYLES", "area_vs_dose_figure", "draw_area_vs_dose", "draw_rose_lines",
           "rose_doses"]


def _uses_nm2(runs: Mapping[str, AreaAnalysis]) -> bool:
    return all(math.isfinite(run.pixel_area_nm2) for run in runs.values())


def draw_area_vs_dose(ax, runs: Mapping[str, AreaAnalysis]) -> None:
    """Draw the area curves of ``runs`` (label → analysis) on a matplotlib axis."""
    nm2 = _uses_nm2(runs)
    for index, (label, run) in enumerate(runs.items()):
        colour = f"C{index}"
        scale = run.pixel_area_nm2 if nm2 else 1.0
        order = np.argsort(run.dose_e_per_A2, kind="stable")
        ax.plot(run.dose_e_per_A2[order], run.area_px[order] * scale, ".-", ms=3, lw=0.8,
                color=colour, label=label)
        low, high = run.band_px
        ax.axhspan(low * scale, high * scale, color=colour, alpha=0.15, lw=0)
        readout = run.consensus
        if readout is not None and readout.available:
            # Against the consensus of the highest-dose frames.
            over = readout.over_segmented
            if over.any():
                ax.plot(run.dose_e_per_A2[over], run.area_px[over] * scale, "x", ms=4,
                        color=colour, label="over-segmented (precision < 0.5)")
            for value, style, what in ((readout.convergence_dose_e_per_A2, "-", "converged"),
                                       (readout.visibility_dose_e_per_A2, "--", "visible")):
                if value is not None:
                    ax.axvline(value, color=colour, ls=style, lw=1,
                               label=f"{what} from {value:.3g} e⁻/Å²")
            draw_rose_lines(ax, run, colour)
            continue
        # No consensus readout: the paper's area-only doses.
        if math.isfinite(run.convergence_dose_e_per_A2):
            ax.axvline(run.convergence_dose_e_per_A2, color=colour, ls="-", lw=1,
                       label=f"area converged from {run.convergence_dose_e_per_A2:.3g} e⁻/Å²")
        if math.isfinite(run.dose_at_50pct_e_per_A2):
            ax.axvline(run.dose_at_50pct_e_per_A2, color=colour, ls="--", lw=1,
                       label=f"50 % area at {run.dose_at_50pct_e_per_A2:.3g} e⁻/Å²")
    ax.set_xscale("log")
    ax.set_xlabel("frame dose (e⁻/Å²)")
    ax.set_ylabel("segmented area (nm²)" if nm2 else "segmented area (px)")
    ax.legend(fontsize=7)


def rose_doses(run: AreaAnalysis) -> dict[str, float]:
    """The Rose-criterion doses of a run that are known: ``"particle"`` (the whole
    particle, or every particle of the field together) and ``"1nm2"`` (a 1 nm² patch)."""
    rose = run.rose or {}
    doses = {"particle": rose.get("rose_dose_particle_e_per_A2"),
             "1nm2": rose.get("rose_dose_1nm2_e_per_A2")}
    return {key: float(value) for key, value in doses.items() if value is not None}


def draw_rose_lines(ax, run: AreaAnalysis, colour: str) -> None:
    """The Rose-criterion doses of ``run`` as vertical lines: dotted for the whole
    particle, dash-dotted for a 1 nm² patch (the readouts are solid and dashed)."""
    for key, value in rose_doses(run).items():
        style, what = ROSE_STYLES[key]
        ax.axvline(value, color=colour, ls=style, lw=1.2, alpha=0.8,
                   label=f"Rose, {what}: {value:.3g} e⁻/Å²")


#: Line style and wording of each Rose dose.
ROSE_STYLES = {"particle": (":", "whole particle"), "1nm2": ("-.", "1 nm² patch")}


def area_vs_dose_figure(
    runs: Mapping[str, AreaAnalysis],
    f1: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Figure of area against dose for one or more runs, with F1 against dose if given.

    Parameters
    ----------
    runs : mapping of str to AreaAnalysis
        Label → analysis (e.g. ``{"msdnet-au-ceo2": ...}``).
    f1 : mapping of str to sequence of float, optional
        Label → F1 per frame (same frames as the run of that label).
    """
    fig = Figure(figsize=(7.5, 4.2) if not f1 else (12, 4.2), layout="constrained")
    if f1:
        ax_area, ax_f1 = fig.subplots(1, 2)
    else:
        ax_area, ax_f1 = fig.subplots(1, 1), None
    draw_area_vs_dose(ax_area, runs)
    if ax_f1 is not None:
        for index, (label, values) in enumerate(f1.items()):
            run = runs[label]
            order = np.argsort(run.dose_e_per_A2, kind="stable")
            ax_f1.plot(run.dose_e_per_A2[order], np.asarray(values)[order], ".-", ms=3,
                       lw=0.8, color=f"C{index}", label=label)
        ax_f1.set_xscale("log")
        ax_f1.set_ylim(0, 1)
        ax_f1.set_xlabel("frame dose (e⁻/Å²)")
        ax_f1.set_ylabel("F1 against the truth")
        ax_f1.legend(fontsize=7)
    return fig
