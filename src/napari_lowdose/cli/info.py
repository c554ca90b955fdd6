"""``napari-lowdose info``: format, shape, pixel size and dose of a series."""

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import add_dose_options, open_calibrated

__all__ = ["add_info_parser", "cmd_info", "series_info"]


def add_info_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``info``."""
    info = sub.add_parser("info", help="format, shape, pixel size and dose of a series")
    info.add_argument("series", type=Path, metavar="SERIES")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_dose_options(info)
    info.set_defaults(func=cmd_info)


def series_info(series) -> dict[str, Any]:
    """A JSON-serialisable summary of an opened series."""
    dose = series.frame_dose
    info: dict[str, Any] = {
        "file": str(series.path),
        "format": series.format,
        "shape": list(series.data.shape),
        "axes": list(series.axis_labels),
        "dtype": str(series.data.dtype),
        "pixel_size_A": None if series.pixel_size_A is None else list(series.pixel_size_A),
        "pixel_size_source": series.pixel_size_source,
        "n_frames": series.n_frames,
        "dose": None,
        "dose_hints": series.dose_hints.to_metadata(),
        "warnings": list(series.warnings),
    }
    if dose is not None:
        d = dose.dose_e_per_A2
        info["dose"] = {
            "source": dose.source,
            "detail": dose.detail,
            "min_e_per_A2": float(d.min()),
            "max_e_per_A2": float(d.max()),
            "total_e_per_A2": float(d.sum()),
            "dose_e_per_A2": [float(v) for v in d],
        }
    return info


def _format_info(info: dict[str, Any]) -> str:
    shape = " × ".join(str(n) for n in info["shape"])
    lines = [
        f"file:        {info['file']}",
        f"format:      {info['format']}",
        f"shape:       {shape} ({', '.join(info['axes'])})",
        f"dtype:       {info['dtype']}",
    ]
    px = info["pixel_size_A"]
    if px is None:
        lines.append("pixel size:  uncalibrated (the file states no length calibration)")
    else:
        size = f"{px[0]:.6g} Å/px" if px[0] == px[1] else f"{px[0]:.6g} × {px[1]:.6g} Å/px (y × x)"
        lines.append(f"pixel size:  {size}  [{info['pixel_size_source']}]")
    dose = info["dose"]
    if dose is None and info["dose_hints"].get("counts_per_electron"):
        lines.append("dose:        not stated per frame; the file states its gain: "
                     "--dose-source counts gives it from the mean counts (best over vacuum, "
                     "--counts-roi)")
    elif dose is None:
        lines.append("dose:        unknown (give --dose CSV, --dose-rate with --exposure-s, "
                     "or --counts-per-electron)")
    else:
        per_px = ""
        if px is not None:
            area = px[0] * px[1]
            per_px = (f"; {dose['min_e_per_A2'] * area:.4g} … {dose['max_e_per_A2'] * area:.4g}"
                      " e⁻/px")
        lines.append(f"dose:        {dose['min_e_per_A2']:.4g} … {dose['max_e_per_A2']:.4g} "
                     f"e⁻/Å² per frame{per_px}, total {dose['total_e_per_A2']:.4g} e⁻/Å²")
        detail = f" ({dose['detail']})" if dose["detail"] else ""
        lines.append(f"dose source: {dose['source']}{detail}")
    for note in info["dose_hints"].get("notes", []):
        lines.append(f"note:        {note}")
    for warning in info["warnings"]:
        lines.append(f"warning:     {warning}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    """Print format, shape, dtype, pixel size and dose summary of a series."""
    info = series_info(open_calibrated(args))
    print(json.dumps(info, indent=2) if args.json else _format_info(info))
    return 0


