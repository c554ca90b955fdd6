"""The result of a noise fit: per-frame parameters, the Eq. 2 summary and the CSV table.

:class:`NoiseFitResult` holds, for every frame of a series, the fitted
parameters of the Eq. 4 ("paper") or Eq. 3 ("physical") spectrum model of
Larsen et al. (2023), the floor ``C`` of Eq. 1, R² and a status, plus the
series readout noise N0 of Eq. 2 (:class:`~.readout.ReadoutFit`);
:func:`fit_table_csv` writes the per-frame table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.tables import csv_cell
from .readout import ReadoutFit
from .spectrum_models import paper_spectrum_model, physical_spectrum_model

__all__ = ["FIT_TABLE_COLUMNS", "NoiseFitResult", "fit_table_csv"]

_COLUMNS: tuple[str, ...] = (
    "frame",
    "dose_e_per_A2",
    "frame_dose_e_per_px",
    "c0",
    "c1",
    "c2",
    "c3",
    "amplitude_A",
    "background_B",
    "floor_C",
    "n0_e_per_px",
    "r2",
    "c0_std",
    "c3_std",
    "ok",
    "message",
)


@dataclass(frozen=True, eq=False)
class NoiseFitResult:
    """Per-frame noise-model fits of one frame or a series, plus the Eq. 2 summary.

    Every per-frame attribute is an array of shape ``(n_frames,)``; a frame
    that could not be fitted holds NaN and ``ok = False``.

    Attributes
    ----------
    model : {"paper", "physical"}
        Which model was fitted (Eq. 4 or Eq. 3).
    spectrum_kind : {"magnitude", "power"}
        Which spectrum was fitted.
    frame : ndarray of int
        Frame indices.
    dose_e_per_A2, frame_dose_e_per_px : ndarray
        Frame dose in e⁻/Å² and ``N_D`` in e⁻/px (NaN when unknown).
    c0, c3 : ndarray
        MTF half-maximum frequency (``q / q_N``) and curvature.
    c1, c2 : ndarray
        Eq. 4 plateau and floor (paper model; NaN for the physical model).
    amplitude_A, background_B : ndarray
        Eq. 3 shot- and readout-noise power (physical model; NaN for paper).
    floor_C : ndarray
        Eq. 1 floor: ``c2 / c1`` (paper) or ``√(B / (A + B))`` (physical).
    n0_e_per_px : ndarray
        Per-frame readout noise: ``N_D · B / A`` (physical) or Eq. 2 inverted
        for the frame's ``C`` (paper).
    r2 : ndarray
        Coefficient of determination of the frame's fit (linear space).
    c0_std, c3_std : ndarray
        Standard errors from the fit's covariance.
    ok : ndarray of bool
        Whether the fit succeeded with parameters inside their bounds.
    message : ndarray of str
        ``"ok"`` or why not.
    sampling_A : float or None
        Pixel size in Å/px.
    readout : ReadoutFit
        Series readout noise (Eq. 2).
    q_norm, spectra : ndarray or None
        The fitted spectrum (kept for plotting the fit against the data).
    noise_source : {"vacuum", "pairs"}
        What the spectra were taken of: a vacuum region of every frame, or the
        differences of frame pairs of one field (:mod:`.pairs`; a "frame" is then a
        group of pairs).
    """

    model: str
    spectrum_kind: str
    frame: np.ndarray
    dose_e_per_A2: np.ndarray
    frame_dose_e_per_px: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    c3: np.ndarray
    amplitude_A: np.ndarray
    background_B: np.ndarray
    floor_C: np.ndarray
    n0_e_per_px: np.ndarray
    r2: np.ndarray
    c0_std: np.ndarray
    c3_std: np.ndarray
    ok: np.ndarray
    message: np.ndarray
    sampling_A: float | None
    readout: ReadoutFit
    q_norm: np.ndarray | None = field(default=None, repr=False)
    spectra: np.ndarray | None = field(default=None, repr=False)
    noise_source: str = "vacuum"

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frame.size)

    def to_columns(self) -> dict[str, np.ndarray]:
        """Per-frame table as a dict of equal-length columns (CSV/DataFrame ready)."""
        return {name: getattr(self, name) for name in _COLUMNS}

    def to_rows(self) -> list[dict[str, Any]]:
        """Per-frame table as a list of ``{column: python scalar}`` dicts."""
        cols = self.to_columns()
        return [{k: v[i].item() for k, v in cols.items()} for i in range(self.n_frames)]

    def summary(self) -> dict[str, Any]:
        """Series summary: model, spectrum kind, N0 (Eq. 2), parameter ranges."""
        ok = self.ok
        return {
            "model": self.model,
            "spectrum_kind": self.spectrum_kind,
            "noise_source": self.noise_source,
            "sampling_A": self.sampling_A,
            "n_frames": self.n_frames,
            "n_ok": int(ok.sum()),
            "n0_e_per_px": self.readout.n0_e_per_px,
            "n0_r2": self.readout.r2,
            "n0_method": self.readout.method,
            "c0_range": _nan_range(self.c0[ok]),
            "c3_range": _nan_range(self.c3[ok]),
            "dose_range_e_per_A2": _nan_range(self.dose_e_per_A2),
        }

    def predict(self, index: int = 0, q_norm: np.ndarray | None = None) -> np.ndarray:
        """Fitted spectrum of frame ``index`` on ``q_norm`` (default: fitted rings)."""
        if q_norm is None:
            if self.q_norm is None:
                raise ValueError("no q_norm stored with this result; pass q_norm")
            q_norm = self.q_norm
        if self.model == "paper":
            return paper_spectrum_model(
                q_norm, self.c0[index], self.c1[index], self.c2[index], self.c3[index]
            )
        return physical_spectrum_model(
            q_norm,
            self.c0[index],
            self.c3[index],
            self.amplitude_A[index],
            self.background_B[index],
        )


def _nan_range(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    return (float(x.min()), float(x.max()))



#: Per-frame CSV columns after ``frame, dose_e_per_A2, dose_e_per_px`` for each model.
FIT_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "paper": ("c0", "c1", "c2", "c3", "floor_C", "n0_e_per_px", "r2", "ok", "message"),
    "physical": ("c0", "c3", "amplitude_A", "background_B", "floor_C", "n0_e_per_px", "r2",
                 "ok", "message"),
}


def fit_table_csv(result: NoiseFitResult) -> str:
    """The per-frame fit table as CSV text (one row per frame).

    Columns: ``frame, dose_e_per_A2, dose_e_per_px``, the parameters of the
    fitted model (Eq. 4 or Eq. 3), ``r2, ok, message``, then ``model``,
    ``spectrum_kind``, the series ``series_n0_e_per_px`` (Eq. 2) and the
    ``noise_source`` (vacuum or frame pairs), so that every row says what produced it.
    """
    columns = result.to_columns()
    columns["dose_e_per_px"] = columns["frame_dose_e_per_px"]
    names = ("frame", "dose_e_per_A2", "dose_e_per_px") + FIT_TABLE_COLUMNS[result.model]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names + ("model", "spectrum_kind", "series_n0_e_per_px", "noise_source"))
    for i in range(result.n_frames):
        cells = [csv_cell(columns[name][i]) for name in names]
        writer.writerow(cells + [result.model, result.spectrum_kind,
                                 repr(float(result.readout.n0_e_per_px)),
                                 result.noise_source])
    return buf.getvalue()
