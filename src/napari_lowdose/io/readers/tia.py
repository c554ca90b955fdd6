"""FEI TIA reader: .ser image series, or the .emi beside them (ncempy headers).

Frames are memory-mapped one by one on demand; the pixel size comes from the
TIA element calibration (metres), the exposure time from the .emi record.
"""

import warnings
from pathlib import Path

import numpy as np

from ...errors import SeriesReadError, short_reason
from ..series import DoseHints, Series
from ._common import _finish, _jsonable, _lazy_stack, _pixel_size, _to_frames

__all__ = ["read_ser"]


def _ser_path(path: Path) -> Path:
    if path.suffix.lower() == ".ser":
        return path
    candidates = sorted(path.parent.glob(f"{path.stem}_*.ser"))
    if not candidates:
        raise SeriesReadError(f"{path.name}: no {path.stem}_1.ser data file beside this .emi")
    return candidates[0]


def read_ser(path: str | Path) -> Series:
    """Read an FEI TIA series (.ser, or the .emi beside it) frame by frame on demand."""
    from ncempy.io import ser

    path = Path(path)
    ser_path = _ser_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with ser.fileSER(ser_path) as ser_file:
                head = dict(ser_file.head)
                if head.get("DataTypeID") != 0x4122:
                    raise SeriesReadError(f"{ser_path.name}: TIA file holds spectra, not images")
                n_valid = int(head["ValidNumberElements"])
                if n_valid < 1:
                    raise SeriesReadError(f"{ser_path.name}: TIA series holds no frame")
                frame0, meta0 = ser_file.getDataset(0)
                emi = dict(ser_file._emi or {})
                offsets = [int(o) for o in head["DataOffsetArray"][:n_valid]]
    except SeriesReadError:
        raise
    except Exception as err:
        raise SeriesReadError(f"{ser_path.name}: not a readable TIA .ser file "
                              f"({short_reason(err)})") from None
    frame_shape = tuple(int(n) for n in frame0.shape)
    dtype = frame0.dtype
    file_size = ser_path.stat().st_size
    header_bytes = 50  # 2-D element header: 2 × (f8, f8, i4) calibrations, i2 type, 2 × i4 size
    nbytes = int(np.prod(frame_shape)) * dtype.itemsize
    if any(o + header_bytes + nbytes > file_size for o in offsets):
        raise SeriesReadError(f"{ser_path.name}: file is truncated")

    def read_frame(i: int) -> np.ndarray:
        # TIA writes rows bottom-up; flip to the orientation TIA displays (as ncempy does).
        return np.memmap(ser_path, dtype=dtype, mode="r", offset=offsets[i] + header_bytes,
                         shape=frame_shape)[::-1]

    data = read_frame(0) if n_valid == 1 else _lazy_stack(read_frame, n_valid, frame_shape, dtype)
    cal = meta0.get("Calibration", ())
    warn: list[str] = []
    pixel_size = None
    if len(cal) >= 2:
        # TIA stores calibrations in metres, X first.
        pixel_size = _pixel_size(
            (cal[1]["CalibrationDelta"], cal[0]["CalibrationDelta"]), ("m", "m"), warn, "TIA"
        )
    meta = {"ser_header": _jsonable({k: v for k, v in head.items() if "Array" not in k}),
            "emi": _jsonable(emi)}
    hints = DoseHints()
    for key in ("Exposure time [s]", "Exposure Time [s]"):
        if key in emi:
            hints.exposure_time_s = float(emi[key])
            hints.notes.append(f"exposure time from EMI '{key}'")
    series = Series(
        _to_frames(data), pixel_size, "FEI TIA (SER/EMI)", path,
        "TIA element calibration (m)" if pixel_size else "", meta, hints, warnings=warn,
    )
    return _finish(series)

