"""Figures of a detector-noise fit, in the style of Larsen et al. (2023).

- spectrum and fitted model of the first and last frame (SOI Figs. 6–7);
- c0, c3 and the floor C against frame dose, R² ≥ 0.98 marked (Fig. 5);
- C² (C for a paper fit of the power spectrum) against the frame dose N_D
  (e⁻/px) with the Eq. 2 curve (Fig. 6), from :func:`~napari_lowdose.noise.eq2_plot_data`.
"""

import numpy as np
from matplotlib.figure import Figure

from ..noise import NoiseFitResult, eq2_plot_data

__all__ = ["GOOD_R2", "noise_fit_figure"]

#: The paper keeps fits with R² ≥ 0.98 as good.
GOOD_R2 = 0.98


def noise_fit_figure(result: NoiseFitResult) -> Figure:
    """A three-panel summary figure of a noise fit (spectrum, parameters, Eq. 2)."""
    fig = Figure(figsize=(13, 4), layout="constrained")
    ax_spec, ax_par, ax_eq2 = fig.subplots(1, 3)
    _spectrum_panel(ax_spec, result)
    _parameter_panel(ax_par, result)
    _eq2_panel(ax_eq2, result)
    return fig


def _spectrum_panel(ax, result: NoiseFitResult) -> None:
    if result.q_norm is None or result.spectra is None:
        ax.set_visible(False)
        return
    frames = sorted({0, result.n_frames - 1})
    for index, colour in zip(frames, ("tab:blue", "tab:red"), strict=False):
        dose = result.dose_e_per_A2[index]
        row = "pairs" if result.noise_source == "pairs" else "frame"
        label = f"{row} {index}" + ("" if np.isnan(dose) else f" ({dose:.3g} e⁻/Å²)")
        ax.plot(result.q_norm, result.spectra[index], ".", ms=3, color=colour, label=label)
        if result.ok[index] or np.isfinite(result.c0[index]):
            ax.plot(result.q_norm, result.predict(index), "-", color=colour,
                    label=f"fit, R² = {result.r2[index]:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("q / q_N")
    ax.set_ylabel(f"{result.spectrum_kind} spectrum")
    title = "Eq. 4 (paper)" if result.model == "paper" else "Eq. 3 (physical)"
    what = "Frame-pair difference" if result.noise_source == "pairs" else "Vacuum"
    ax.set_title(f"{what} spectrum, {title}")
    ax.legend(fontsize=7)


def _parameter_panel(ax, result: NoiseFitResult) -> None:
    x = result.dose_e_per_A2 if np.all(np.isfinite(result.dose_e_per_A2)) else result.frame
    good = result.ok & (result.r2 >= GOOD_R2)
    for values, name, colour in ((result.c0, "c0", "tab:blue"), (result.c3 / 10, "c3 / 10",
                                 "tab:green"), (result.floor_C, "C", "tab:orange")):
        ax.plot(x, values, "o", ms=3, color=colour, alpha=0.5, label=name)
        ax.plot(x[good], values[good], "o", ms=2, mfc="white", mec="none")
    ax.plot([], [], "o", ms=3, mfc="white", mec="grey", label=f"R² ≥ {GOOD_R2}")
    if x is result.dose_e_per_A2:
        ax.set_xscale("log")
        ax.set_xlabel("frame dose (e⁻/Å²)")
    else:
        ax.set_xlabel("frame (no dose calibration)")
    ax.set_title("Fitted parameters (cf. Fig. 5)")
    ax.legend(fontsize=7)


def _eq2_panel(ax, result: NoiseFitResult) -> None:
    n_d = result.frame_dose_e_per_px
    if not np.any(np.isfinite(n_d)):
        ax.text(0.5, 0.5, "no dose calibration:\nN0 (Eq. 2) needs the frame dose",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    eq2 = eq2_plot_data(result)
    ax.plot(eq2.n_d, eq2.y, "o", ms=3, label=f"{eq2.quantity} per frame")
    if eq2.curve.size:
        ax.plot(eq2.grid, eq2.curve, "-", color="tab:orange",
                label=f"Eq. 2, N0 = {eq2.n0_e_per_px:.3g} e⁻/px (R² = {eq2.r2:.2f})")
        # Frames whose floor vanished (C ≈ 0) would stretch the axis over 20 decades.
        ax.set_ylim(bottom=0.05 * eq2.curve.min())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("frame dose N_D (e⁻/px)")
    ax.set_ylabel(eq2.quantity)
    ax.set_title("Readout noise (cf. Fig. 6)")
    ax.legend(fontsize=7)
