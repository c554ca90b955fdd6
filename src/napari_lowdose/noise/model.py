"""Detector noise models: fitted and training models of the noise parameters.

A :class:`NoiseModel` holds the ranges that the noise of Larsen et al. (2023)
is drawn from when training data are simulated — the MTF parameters ``c0`` and
``c3`` of Eq. 1 and the readout noise ``N0`` of Eqs. 2–3, each uniform — and,
for a model fitted to data, the per-frame fit table and a series summary
(N0 with its Eq. 2 R², spectrum kind, model kind, sampling, dose range).

* :meth:`NoiseModel.from_fit` — a model from a :class:`~.fit_result.NoiseFitResult`.
* :meth:`NoiseModel.training_model` — the paper's MTF 4 recipe applied to a
  model: the c0 range widened so that its upper end reaches at least
  0.5 q_N (spatial frequencies up to half-Nyquist kept at half maximum), the
  c3 range kept, and N0 ± 50 % (the paper's 0.01 → [0.005, 0.015]).
* :meth:`NoiseModel.sample` — seeded uniform draws of (c0, c3, N0) for
  :func:`~.synthesis.apply_detector_noise` (Eq. 3).
* :meth:`NoiseModel.to_json` / :meth:`NoiseModel.from_json` — the JSON file
  format of :mod:`.model_io`.

The Table 3 presets MTF 1 … MTF 5 are in :mod:`.presets`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LowdoseError
from .fitting import C0_BOUNDS, C3_BOUNDS
from .model_io import frame_column, noise_model_kwargs, noise_model_to_dict, write_json_atomic
from .spectrum import SPECTRUM_KINDS
from .spectrum_models import MODEL_KINDS

if TYPE_CHECKING:
    from .fit_result import NoiseFitResult

__all__ = [
    "NoFitError",
    "NoiseDraw",
    "NoiseModel",
]

SOURCES: tuple[str, ...] = ("preset", "fit", "training", "user")
#: Beyond these a detector is implausible (a unit or typing error): c0 and c3 beyond the
#: bounds a fit can reach (:data:`.fitting.C0_BOUNDS`, :data:`.fitting.C3_BOUNDS`; Table 3's
#: c0 0.2–0.9, c3 1–5), a readout noise N0 above 1 e⁻/px (Table 3 and direct detectors:
#: 0.001–0.015 e⁻/px).
PLAUSIBLE_C0_MAX = C0_BOUNDS[1]
PLAUSIBLE_C3_MAX = C3_BOUNDS[1]
PLAUSIBLE_N0_MAX_E_PER_PX = 1.0
#: What a fitted model's spectra were taken of (:attr:`NoiseFitResult.noise_source`).
NOISE_SOURCES: tuple[str, ...] = ("vacuum", "pairs")



class NoFitError(LowdoseError, ValueError):
    """No frame of a noise fit succeeded: there is nothing to build a model from."""

@dataclass(frozen=True)
class NoiseDraw:
    """Noise parameters drawn from a :class:`NoiseModel`.

    Attributes
    ----------
    c0, c3 : float or ndarray
        MTF parameters of Eq. 1.
    n0_e_per_px : float or ndarray
        Readout noise in electrons per pixel (Eqs. 2–3).
    """

    c0: float | np.ndarray
    c3: float | np.ndarray
    n0_e_per_px: float | np.ndarray

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`~.synthesis.apply_detector_noise`."""
        return {"c0": self.c0, "c3": self.c3, "n0_e_per_px": self.n0_e_per_px}


def _range(value: Any, name: str, *, positive: bool) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {(lo, hi)}")
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {(lo, hi)}")
    if positive and lo <= 0:
        raise ValueError(f"{name} must be positive, got {(lo, hi)}")
    if not positive and lo < 0:
        raise ValueError(f"{name} must be non-negative, got {(lo, hi)}")
    return (lo, hi)


def _opt_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or null, got {value!r}") from None


def _eq_float(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a == b) or (math.isnan(a) and math.isnan(b))


@dataclass(frozen=True, eq=False)
class NoiseModel:
    """Ranges of the detector noise parameters, optionally with the fit they came from.

    Parameters
    ----------
    name : str
        Label (e.g. ``"MTF4"`` or ``"fit: series.tif"``).
    c0_range, c3_range : tuple of float
        Uniform ranges of the MTF parameters of Eq. 1 (``c0`` in ``q / q_N``).
    n0_range_e_per_px : tuple of float
        Uniform range of the readout noise ``N0`` (e⁻/px, Eqs. 2–3).
    n0_e_per_px : float, optional
        Central / fitted N0 (NaN if unknown).
    source : {"preset", "fit", "training", "user"}
        Where the model comes from.
    model_kind : {"paper", "physical"} or None
        For fitted models: Eq. 4 or Eq. 3 fit.
    spectrum_kind : {"magnitude", "power"} or None
        For fitted models: the spectrum that was fitted.
    sampling_A : float or None
        Pixel size of the fitted data in Å/px.
    dose_range_e_per_A2 : tuple of float or None
        Frame-dose range of the fitted data.
    n0_r2 : float or None
        R² of the series Eq. 2 fit.
    description : str
        Free text.
    frames : dict of str to ndarray, optional
        Per-frame fit table (columns of :meth:`NoiseFitResult.to_columns`).
    noise_source : {"vacuum", "pairs"} or None
        For fitted models: fitted to a vacuum region or to frame-pair differences.
    """

    name: str
    c0_range: tuple[float, float]
    c3_range: tuple[float, float]
    n0_range_e_per_px: tuple[float, float]
    n0_e_per_px: float = float("nan")
    source: str = "user"
    model_kind: str | None = None
    spectrum_kind: str | None = None
    sampling_A: float | None = None
    dose_range_e_per_A2: tuple[float, float] | None = None
    n0_r2: float | None = None
    description: str = ""
    frames: Mapping[str, np.ndarray] | None = field(default=None, repr=False)
    noise_source: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty string")
        set_(self, "c0_range", _range(self.c0_range, "c0_range", positive=True))
        set_(self, "c3_range", _range(self.c3_range, "c3_range", positive=True))
        set_(
            self,
            "n0_range_e_per_px",
            _range(self.n0_range_e_per_px, "n0_range_e_per_px", positive=False),
        )
        n0 = _opt_float(self.n0_e_per_px, "n0_e_per_px")
        set_(self, "n0_e_per_px", float("nan") if n0 is None else n0)
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.noise_source not in (None, *NOISE_SOURCES):
            raise ValueError(f"noise_source must be one of {NOISE_SOURCES}, "
                             f"got {self.noise_source!r}")
        if self.model_kind is not None and self.model_kind not in MODEL_KINDS:
            raise ValueError(f"model_kind must be one of {MODEL_KINDS} or None")
        if self.spectrum_kind is not None and self.spectrum_kind not in SPECTRUM_KINDS:
            raise ValueError(f"spectrum_kind must be one of {SPECTRUM_KINDS} or None")
        if self.model_kind == "physical" and self.spectrum_kind not in (None, "power"):
            raise ValueError("a physical (Eq. 3) fit is made on the power spectrum")
        s = _opt_float(self.sampling_A, "sampling_A")
        if s is not None and not s > 0:
            raise ValueError(f"sampling_A must be positive, got {s}")
        set_(self, "sampling_A", s)
        if self.dose_range_e_per_A2 is not None:
            lo, hi = (float(v) for v in self.dose_range_e_per_A2)
            set_(self, "dose_range_e_per_A2", (lo, hi))
        set_(self, "n0_r2", _opt_float(self.n0_r2, "n0_r2"))
        if not isinstance(self.description, str):
            raise ValueError("description must be a string")
        if self.frames is not None:
            if not isinstance(self.frames, Mapping):
                raise ValueError("frames must be a mapping of column name to values")
            cols = {str(k): frame_column(str(k), v) for k, v in self.frames.items()}
            lengths = {k: v.shape for k, v in cols.items()}
            if len({s for s in lengths.values()}) > 1 or any(
                len(s) != 1 for s in lengths.values()
            ):
                raise ValueError(f"frame table columns must be 1-D of equal length: {lengths}")
            set_(self, "frames", cols)

    # -- comparison ---------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoiseModel):
            return NotImplemented
        scalars = ("name", "source", "model_kind", "spectrum_kind", "description")
        if any(getattr(self, k) != getattr(other, k) for k in scalars):
            return False
        for k in ("c0_range", "c3_range", "n0_range_e_per_px", "dose_range_e_per_A2"):
            a, b = getattr(self, k), getattr(other, k)
            if (a is None) != (b is None):
                return False
            if a is not None and not all(_eq_float(x, y) for x, y in zip(a, b, strict=True)):
                return False
        for k in ("n0_e_per_px", "sampling_A", "n0_r2"):
            if not _eq_float(getattr(self, k), getattr(other, k)):
                return False
        fa, fb = self.frames, other.frames
        if (fa is None) != (fb is None):
            return False
        if fa is not None and fb is not None:
            if list(fa) != list(fb):
                return False
            for k in fa:
                a, b = fa[k], fb[k]
                if a.dtype != b.dtype:
                    return False
                nan_ok = a.dtype.kind == "f"
                if not np.array_equal(a, b, equal_nan=nan_ok):
                    return False
        return True

    __hash__ = None  # type: ignore[assignment]

    # -- construction -------------------------------------------------------

    @classmethod
    def from_fit(
        cls,
        result: NoiseFitResult,
        *,
        name: str = "fitted",
        quantiles: tuple[float, float] = (0.05, 0.95),
        r2_min: float | None = None,
        description: str = "",
    ) -> NoiseModel:
        """Model from a series (or one-frame) fit.

        Parameters
        ----------
        result : NoiseFitResult
            Output of :func:`~.fitting.fit_noise`.
        name : str, optional
            Model name.
        quantiles : tuple of float, optional
            The c0 and c3 ranges are these quantiles of the successfully
            fitted frames (``(0, 1)`` for min–max); quantiles keep a few badly
            constrained frames from stretching the range.
        r2_min : float, optional
            Only frames with R² ≥ this enter the ranges (the paper marks
            R² ≥ 0.98 as good); ignored if no frame passes.
        description : str, optional
            Free text.

        Returns
        -------
        NoiseModel
            ``source="fit"``; ``N0`` is the series value of Eq. 2 and its range
            that single value (``(0, 0)`` and NaN if the fit had no dose).

        Raises
        ------
        ValueError
            If no frame was fitted successfully.
        """
        use = np.asarray(result.ok, dtype=bool).copy()
        if not use.any():
            raise NoFitError("no frame of the region could be fitted, so there is no noise "
                             "model to write; is the region vacuum (see noise_fits.csv)?")
        if r2_min is not None:
            better = use & (np.asarray(result.r2) >= r2_min)
            if better.any():
                use = better
        q_lo, q_hi = quantiles
        c0 = np.quantile(result.c0[use], [q_lo, q_hi])
        c3 = np.quantile(result.c3[use], [q_lo, q_hi])
        n0 = float(result.readout.n0_e_per_px)
        n0_range = (n0, n0) if math.isfinite(n0) else (0.0, 0.0)
        dose = np.asarray(result.dose_e_per_A2, dtype=np.float64)
        dose = dose[np.isfinite(dose)]
        dose_range = (float(dose.min()), float(dose.max())) if dose.size else None
        r2 = result.readout.r2
        return cls(
            name=name,
            c0_range=(float(c0[0]), float(c0[1])),
            c3_range=(float(c3[0]), float(c3[1])),
            n0_range_e_per_px=n0_range,
            n0_e_per_px=n0,
            source="fit",
            model_kind=result.model,
            spectrum_kind=result.spectrum_kind,
            sampling_A=result.sampling_A,
            dose_range_e_per_A2=dose_range,
            n0_r2=None if not math.isfinite(r2) else float(r2),
            description=description,
            frames=result.to_columns(),
            noise_source=result.noise_source,
        )

    def training_model(
        self,
        *,
        c0_upper_at_least: float = 0.5,
        n0_rel_spread: float = 0.5,
        name: str | None = None,
    ) -> NoiseModel:
        """The paper's MTF 4 recipe: a training model built on this one.

        The c0 range is widened so its upper end is at least
        ``c0_upper_at_least`` (half-Nyquist by default), the c3 range is kept,
        and ``N0`` becomes ``n0_e_per_px · (1 ± n0_rel_spread)`` (± 50 %: the
        paper's fitted 0.01 gives Table 3's [0.005, 0.015]). If this model
        has no central N0, its N0 range is kept.

        Parameters
        ----------
        c0_upper_at_least : float, optional
            Lowest allowed upper end of the c0 range, in ``q / q_N``.
        n0_rel_spread : float, optional
            Relative half-width of the N0 range (0 ≤ spread ≤ 1).
        name : str, optional
            Name of the new model (default: ``"<name> (training)"``).

        Returns
        -------
        NoiseModel
            ``source="training"``, with this model's fit summary and table.
        """
        if not 0 <= n0_rel_spread <= 1:
            raise ValueError(f"n0_rel_spread must be in [0, 1], got {n0_rel_spread}")
        lo, hi = self.c0_range
        c0_range = (lo, max(hi, float(c0_upper_at_least)))
        n0 = self.n0_e_per_px
        if math.isfinite(n0):
            n0_range = (n0 * (1.0 - n0_rel_spread), n0 * (1.0 + n0_rel_spread))
        else:
            n0_range = self.n0_range_e_per_px
        desc = (
            f"MTF 4 recipe applied to {self.name!r}: c0 upper end >= {c0_upper_at_least} q_N, "
            f"N0 ± {100 * n0_rel_spread:g} %"
        )
        return NoiseModel(
            name=name or f"{self.name} (training)",
            c0_range=c0_range,
            c3_range=self.c3_range,
            n0_range_e_per_px=n0_range,
            n0_e_per_px=n0,
            source="training",
            model_kind=self.model_kind,
            spectrum_kind=self.spectrum_kind,
            sampling_A=self.sampling_A,
            dose_range_e_per_A2=self.dose_range_e_per_A2,
            n0_r2=self.n0_r2,
            description=desc,
            frames=self.frames,
        )

    # -- sampling -----------------------------------------------------------

    def sample(
        self, rng: np.random.Generator | int | None = None, size: int | None = None
    ) -> NoiseDraw:
        """Draw ``(c0, c3, N0)`` uniformly from the model's ranges.

        Parameters
        ----------
        rng : numpy.random.Generator or int or None
            Generator or seed (same seed → same draws).
        size : int, optional
            Number of draws; ``None`` gives Python floats.

        Returns
        -------
        NoiseDraw
            Use ``apply_detector_noise(..., **draw.as_kwargs())`` for one draw.
        """
        rng = np.random.default_rng(rng)
        vals = [
            rng.uniform(lo, hi, size=size)
            for lo, hi in (self.c0_range, self.c3_range, self.n0_range_e_per_px)
        ]
        if size is None:
            vals = [float(v) for v in vals]
        return NoiseDraw(c0=vals[0], c3=vals[1], n0_e_per_px=vals[2])

    # -- serialisation ------------------------------------------------------

    def implausible(self) -> list[str]:
        """Why the model's values are unlikely for a detector (empty when they are not).

        Warnings, not errors: a model is still used, but a value like N0 = 10⁶ e⁻/px (a
        unit or typing error) is named before a dataset is simulated with it.
        """
        notes = []
        if self.c0_range[1] > PLAUSIBLE_C0_MAX:
            notes.append(f"c0 up to {self.c0_range[1]:g} (a fit reaches at most "
                         f"{PLAUSIBLE_C0_MAX:g}; Table 3: 0.2–0.9)")
        if self.c3_range[1] > PLAUSIBLE_C3_MAX:
            notes.append(f"c3 up to {self.c3_range[1]:g} (a fit reaches at most "
                         f"{PLAUSIBLE_C3_MAX:g}; Table 3: 1–5)")
        if self.n0_range_e_per_px[1] > PLAUSIBLE_N0_MAX_E_PER_PX:
            notes.append(f"readout noise N0 up to {self.n0_range_e_per_px[1]:g} e⁻/px (Table 3 "
                         "and direct detectors: 0.001–0.015)")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as ``None``)."""
        return noise_model_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoiseModel:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` for invalid input."""
        kwargs = noise_model_kwargs(data)
        try:
            return cls(**kwargs)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"invalid noise model: {exc}") from exc

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as JSON, atomically (temporary file + ``os.replace``).

        Parameters
        ----------
        path : str or path-like
            Destination file.

        Returns
        -------
        pathlib.Path
            The written path.
        """
        return write_json_atomic(self.to_dict(), path)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> NoiseModel:
        """Read a model written by :meth:`to_json`.

        Raises
        ------
        ValueError
            If the file is not valid JSON, not a noise model, or inconsistent.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a valid JSON noise model ({exc})") from exc
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
