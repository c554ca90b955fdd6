"""EMD (HDF5) reader: Berkeley/NCEM EMD and Thermo Fisher Velox files (h5py).

The image data set stays on disk (dask or h5py slicing). Berkeley files give
the pixel size through their ``dim`` vectors, Velox files through the
``BinaryResult.PixelSize`` of their JSON metadata, with the exposure time
(``ExposureTime``) and the gain (``CountsToElectrons``, ``PixelValueToCameraCounts``).
"""

import json
import math
import re
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ...errors import SeriesReadError, short_reason
from ..series import DoseHints, Series
from ..units import normalise_unit
from ._common import _finish, _jsonable, _pixel_size, _to_frames

__all__ = ["read_emd"]


def read_emd(path: str | Path) -> Series:
    """Read a Berkeley (NCEM) or Velox .emd file; the HDF5 dataset stays on disk."""
    import h5py

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except Exception as err:
        raise SeriesReadError(f"{path.name}: not a readable EMD/HDF5 file ({short_reason(err)})") \
            from None
    try:
        if "Data" in h5 and "Image" in h5["Data"]:
            return _finish(_read_velox(h5, path))
        return _finish(_read_berkeley(h5, path))
    except SeriesReadError:
        h5.close()
        raise
    except Exception as err:
        h5.close()
        why = short_reason(err)
        raise SeriesReadError(f"{path.name}: unexpected EMD layout ({why})") from None


def _read_berkeley(h5: Any, path: Path) -> Series:
    import h5py

    groups: list[Any] = []

    def visit(_name: str, obj: Any) -> None:
        group_type = np.asarray(obj.attrs.get("emd_group_type", 0)) if hasattr(obj, "attrs") else 0
        if isinstance(obj, h5py.Group) and int(group_type) == 1:
            groups.append(obj)

    h5.visititems(visit)
    candidates = []
    for group in groups:
        for name, obj in group.items():
            if isinstance(obj, h5py.Dataset) and not name.startswith("dim") and obj.ndim >= 2:
                candidates.append((group, obj))
    if not candidates:
        raise SeriesReadError(f"{path.name}: no image data set in this EMD file")
    group, dset = max(candidates, key=lambda gd: gd[1].size)
    dims = []
    for axis in range(1, dset.ndim + 1):
        dim = group.get(f"dim{axis}")
        if dim is None:
            dims.append((None, "", ""))
            continue
        values = np.asarray(dim[: min(len(dim), 2)], dtype=np.float64)
        dims.append((values, _jsonable(dim.attrs.get("name", "")),
                     normalise_unit(dim.attrs.get("units", ""))))
    warn: list[str] = []
    step = [float(v[1] - v[0]) if v is not None and len(v) > 1 else math.nan for v, _, _ in dims]
    # The dims name their axes: (…, x, y) is stored x first (py4DSTEM's R_x, R_y); napari's
    # last two axes are (y, x), so such data are shown transposed, as their dims say.
    x_first = (_axis_letter(dims[-2][1]), _axis_letter(dims[-1][1])) == ("x", "y")
    rows, cols = (-1, -2) if x_first else (-2, -1)
    pixel_size = _pixel_size((step[rows], step[cols]), (dims[rows][2], dims[cols][2]), warn,
                             "EMD dim vectors")
    data = da.from_array(dset, chunks=(1,) * (dset.ndim - 2) + tuple(dset.shape[-2:]))
    if x_first:
        data = data.swapaxes(-1, -2)
    elif dset.ndim == 2:
        data = dset  # h5py dataset: napari slices it lazily
    meta = {
        "emd_group": group.name,
        "dataset": dset.name,
        "dims": [{"name": n, "units": u} for _, n, u in dims],
        "transposed": bool(x_first),
        "root_attrs": _jsonable(dict(h5.attrs)),
    }
    return Series(_to_frames(data), pixel_size, "EMD (Berkeley/NCEM)", path,
                  f"{group.name} dim vectors" if pixel_size else "", meta, DoseHints(),
                  warnings=warn)


def _axis_letter(name: Any) -> str:
    """'x' or 'y' for a dim named x, y, R_x, Q_y, … (any case); '' otherwise."""
    match = re.search(r"(?:^|[_\s])([xy])$", str(name).strip().lower())
    return match.group(1) if match else ""


def _read_velox(h5: Any, path: Path) -> Series:
    images = h5["Data"]["Image"]
    if not len(images):
        raise SeriesReadError(f"{path.name}: Velox file holds no image")
    key = sorted(images.keys())[0]
    group = images[key]
    dset = group["Data"]  # (y, x, frames)
    if dset.ndim != 3:
        raise SeriesReadError(f"{path.name}: unexpected Velox image shape {dset.shape}")
    meta: dict[str, Any] = {"velox_image": key}
    warn: list[str] = []
    pixel_size = None
    if "Metadata" in group:
        raw = np.asarray(group["Metadata"][:, 0]).tobytes().rstrip(b"\x00")
        try:
            record = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            record = {}
        meta["velox_metadata"] = record
        size = record.get("BinaryResult", {}).get("PixelSize", {})
        units = record.get("BinaryResult", {}).get("PixelUnitX", "m"), \
            record.get("BinaryResult", {}).get("PixelUnitY", "m")
        if "width" in size and "height" in size:
            pixel_size = _pixel_size((float(size["height"]), float(size["width"])),
                                     (units[1], units[0]), warn, "Velox BinaryResult")
    data = da.from_array(dset, chunks=tuple(dset.shape[:2]) + (1,)).transpose(2, 0, 1)
    hints = _velox_dose_hints(meta.get("velox_metadata", {}).get("BinaryResult", {}))
    return Series(_to_frames(data), pixel_size, "EMD (Velox)", path,
                  "Velox BinaryResult.PixelSize" if pixel_size else "", meta, hints,
                  warnings=warn)


def _velox_number(record: dict[str, Any], key: str) -> float | None:
    try:
        value = float(record.get(key))  # Velox writes numbers as strings
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _velox_dose_hints(binary: dict[str, Any]) -> DoseHints:
    """Exposure time and gain a Velox image states (``BinaryResult``).

    ``CountsToElectrons`` is electrons per camera count and ``PixelValueToCameraCounts``
    camera counts per stored pixel value, so a pixel value is
    ``PixelValueToCameraCounts × CountsToElectrons`` electrons: the gain is its inverse.
    """
    hints = DoseHints()
    exposure = _velox_number(binary, "ExposureTime")
    if exposure is not None:
        hints.exposure_time_s = exposure
        hints.notes.append(f"exposure time {exposure:.6g} s from Velox BinaryResult.ExposureTime")
    electrons = _velox_number(binary, "CountsToElectrons")
    if electrons is not None:
        per_value = _velox_number(binary, "PixelValueToCameraCounts") or 1.0
        hints.counts_per_electron = 1.0 / (electrons * per_value)
        hints.counts_per_electron_key = ("Velox BinaryResult.CountsToElectrons × "
                                         "PixelValueToCameraCounts")
        hints.notes.append(f"counts per electron {hints.counts_per_electron:.4g} from Velox "
                           f"CountsToElectrons {electrons:g} e⁻/count × "
                           f"PixelValueToCameraCounts {per_value:g}")
    return hints

