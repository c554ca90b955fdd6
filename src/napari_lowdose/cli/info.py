"""``napari-lowdose info``: format, shape, pixel size and dose of a series."""

import argparse
import json
from pathlib import Path
from typing import Any

from ..io.dose import DOSE_SOURCE_LABELS
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
        "exposure_s": series.dose_hints.exposure_time_s,
        "counts_per_electron": series.dose_hints.counts_per_electron,
        "dose": None,
        "dose_hints": series.dose_hints.to_metadata(),
        "warnings": list(series.warnings),
    }
    if dose is not None:
        d = dose.dose_e_per_A2
        info["dose"] = {
            "source": dose.source,
            "source_label": DOSE_SOURCE_LABELS.get(dose.source, dose.source),
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
        size = (f"{px[0]:.6g} Å/px ({px[0] / 10:.4g} nm/px)" if px[0] == px[1]
                else f"{px[0]:.6g} × {px[1]:.6g} Å/px (y × x)")
        lines.append(f"pixel size:  {size}  [{info['pixel_size_source']}]")
    hints = info["dose_hints"]
    if info["exposure_s"]:
        lines.append(f"exposure:    {info['exposure_s'] * 1e3:.4g} ms per frame")
    if info["counts_per_electron"]:
        gain = info["counts_per_electron"]
        where = hints.get("counts_per_electron_key") or "stated by the file"
        offset = f", offset {hints['counts_offset']:g} counts" if hints.get("counts_offset") \
            else ""
        lines.append(f"gain:        {gain:.4g} counts/e⁻ ({1 / gain:.4g} e⁻/count{offset})  "
                     f"[{where}]")
    lines += _dose_lines(info["dose"], px, hints)
    for note in info["dose_hints"].get("notes", []):
        lines.append(f"note:        {note}")
    for warning in info["warnings"]:
        lines.append(f"warning:     {warning}")
    return "\n".join(lines)


def _dose_lines(dose: dict[str, Any] | None, px: list[float] | None,
                hints: dict[str, Any]) -> list[str]:
    if dose is None and hints.get("counts_per_electron") and px is None:
        return ["dose:        not stated per frame; the file states its gain but no pixel "
                "size (give --pixel-size-A)"]
    if dose is None:
        return ["dose:        unknown (give --dose CSV, --dose-rate with --exposure-s, "
                "or --counts-per-electron)"]

    def span(scale: float, unit: str) -> str:
        low, high = dose["min_e_per_A2"] * scale, dose["max_e_per_A2"] * scale
        return f"{low:.4g} {unit}" if low == high else f"{low:.4g} … {high:.4g} {unit}"

    per_px = "" if px is None else f"; {span(px[0] * px[1], 'e⁻/px')}"
    frames = len(dose["dose_e_per_A2"])
    each = "" if frames == 1 else f" per frame over {frames} frames"
    detail = f": {dose['detail']}" if dose["detail"] else ""
    return [f"dose:        {span(1.0, 'e⁻/Å²')}{each}{per_px}, total "
            f"{dose['total_e_per_A2']:.4g} e⁻/Å²",
            f"dose source: {dose['source']} ({dose['source_label']}{detail})"]


def cmd_info(args: argparse.Namespace) -> int:
    """Print format, shape, dtype, pixel size and dose summary of a series."""
    info = series_info(open_calibrated(args))
    print(json.dumps(info, indent=2) if args.json else _format_info(info))
    return 0


