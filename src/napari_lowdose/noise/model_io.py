"""JSON form of a detector noise model (:class:`~.model.NoiseModel`).

Files carry ``"format": "napari-lowdose/noise-model"`` and a version; they
round-trip exactly (floats are written with ``repr`` precision, NaN as
``null``) and are written atomically. The per-frame fit table (columns of
:meth:`~.fit_result.NoiseFitResult.to_columns`) is stored column by column.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import NoiseModel

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "frame_column",
    "noise_model_kwargs",
    "noise_model_to_dict",
    "write_json_atomic",
]

FORMAT = "napari-lowdose/noise-model"
FORMAT_VERSION = 1

_KEYS: tuple[str, ...] = (
    "format",
    "version",
    "name",
    "source",
    "noise_source",
    "model_kind",
    "spectrum_kind",
    "sampling_A",
    "c0_range",
    "c3_range",
    "n0_range_e_per_px",
    "n0_e_per_px",
    "n0_r2",
    "dose_range_e_per_A2",
    "description",
    "n_frames",
    "frames",
)
_INT_COLUMNS = {"frame"}
_BOOL_COLUMNS = {"ok"}
_STR_COLUMNS = {"message"}


def frame_column(name: str, values: Any) -> np.ndarray:
    """One column of the per-frame fit table as a typed array (``None`` → NaN)."""
    if name in _STR_COLUMNS:
        return np.asarray([str(v) for v in values], dtype=str)
    if name in _BOOL_COLUMNS:
        if not all(isinstance(v, bool | np.bool_) for v in values):
            raise ValueError(f"column {name!r} must hold booleans")
        return np.asarray(values, dtype=bool)
    if name in _INT_COLUMNS:
        return np.asarray(values, dtype=np.int64)
    out = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return out


def _column_to_json(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind == "f":
        return [None if not math.isfinite(v) else v for v in arr.tolist()]
    return arr.tolist()


def _float_to_json(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return v


def _n_rows(frames: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(frames.values())).shape[0]) if frames else 0


def noise_model_to_dict(model: NoiseModel) -> dict[str, Any]:
    """JSON-ready dict of a noise model (NaN written as ``None``)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": model.name,
        "source": model.source,
        "noise_source": model.noise_source,
        "model_kind": model.model_kind,
        "spectrum_kind": model.spectrum_kind,
        "sampling_A": model.sampling_A,
        "c0_range": list(model.c0_range),
        "c3_range": list(model.c3_range),
        "n0_range_e_per_px": list(model.n0_range_e_per_px),
        "n0_e_per_px": _float_to_json(model.n0_e_per_px),
        "n0_r2": _float_to_json(model.n0_r2),
        "dose_range_e_per_A2": (
            None if model.dose_range_e_per_A2 is None else list(model.dose_range_e_per_A2)
        ),
        "description": model.description,
        "n_frames": None if model.frames is None else _n_rows(model.frames),
        "frames": (
            None
            if model.frames is None
            else {k: _column_to_json(v) for k, v in model.frames.items()}
        ),
    }


def noise_model_kwargs(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a noise-model JSON document; the :class:`~.model.NoiseModel` keyword arguments.

    Raises ``ValueError`` for a document that is not a (supported) noise model.
    """
    if not isinstance(data, Mapping):
        raise ValueError("a noise model must be a JSON object")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ValueError(f"not a napari-lowdose noise model (format={fmt!r}, want {FORMAT!r})")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"bad noise-model version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"noise-model version {version} is newer than supported ({FORMAT_VERSION})"
        )
    required = ("name", "c0_range", "c3_range", "n0_range_e_per_px")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"noise model is missing required keys: {missing}")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ValueError(f"noise model has unknown keys: {unknown}")
    frames = data.get("frames")
    if frames is not None:
        if not isinstance(frames, Mapping) or not all(
            isinstance(v, list) for v in frames.values()
        ):
            raise ValueError("'frames' must map column names to lists")
        n_rows = data.get("n_frames")
        lengths = {len(v) for v in frames.values()}
        if n_rows is not None and lengths and lengths != {n_rows}:
            raise ValueError(
                f"frame table has {sorted(lengths)} rows but n_frames is {n_rows}"
            )
    dose = data.get("dose_range_e_per_A2")
    n0 = data.get("n0_e_per_px")
    try:
        return dict(
            name=data["name"],
            c0_range=tuple(data["c0_range"]),
            c3_range=tuple(data["c3_range"]),
            n0_range_e_per_px=tuple(data["n0_range_e_per_px"]),
            n0_e_per_px=float("nan") if n0 is None else n0,
            source=data.get("source", "user"),
            noise_source=data.get("noise_source"),
            model_kind=data.get("model_kind"),
            spectrum_kind=data.get("spectrum_kind"),
            sampling_A=data.get("sampling_A"),
            dose_range_e_per_A2=None if dose is None else tuple(dose),
            n0_r2=data.get("n0_r2"),
            description=data.get("description", ""),
            frames=frames,
        )
    except (TypeError, KeyError) as exc:
        raise ValueError(f"invalid noise model: {exc}") from exc


def write_json_atomic(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as JSON, atomically (temporary file + ``os.replace``); the path."""
    path = Path(path)
    text = json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
