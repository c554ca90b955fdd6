"""``napari-lowdose denoise`` (Katsuno et al. 2021).

``denoise`` streams a series through a denoiser and writes ``denoised.tif`` (float32,
the input's units, pixel size and per-frame dose) and ``denoise.json`` (the run record)
together
(:func:`napari_lowdose.io.outputs.write_output_folder`): an error leaves no
partial folder, and an existing folder needs ``--overwrite``. With ``--reference FILE``
(an independent exposure of the same field), or for a series frame against next frame,
``denoise.json`` holds the quality readout (``quality``: the unbiased MSE of raw, best
Gaussian and denoiser, :mod:`napari_lowdose.analysis.denoise_quality`), also printed.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..analysis.denoise_quality_runs import NOT_JUDGED
from ..errors import LowdoseError
from ..io.outputs import check_output_folder, result_array, write_output_folder
from ..io.writers import write_series_tiff
from ..provenance import package_versions
from ._common import (
    TILE_HELP,
    add_dose_options,
    open_calibrated,
    parse_frames,
    progress_bar,
    series_expected_e_per_px,
    series_gain,
    tile_argument,
)

__all__ = ["DENOISE_FILES", "DenoiseError", "add_denoise_parser", "cmd_denoise", "parse_frames"]

DENOISE_FILES = ("denoised.tif", "denoise.json")


class DenoiseError(LowdoseError):
    """Denoising or denoiser training cannot run as asked."""


def add_denoise_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``denoise``."""
    from ..models.registry import DEFAULT_DENOISER

    den = sub.add_parser("denoise", help="denoise a series with a trained denoiser")
    den.add_argument("series", type=Path, metavar="SERIES")
    den.add_argument("--model", default=DEFAULT_DENOISER, metavar="NAME|PATH",
                     help=f"shipped denoiser or .safetensors file (default {DEFAULT_DENOISER})")
    den.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    den.add_argument("--frames", metavar="A:B", help="denoise frames A…B-1 only (default all)")
    den.add_argument("--batch-size", type=int, default=1, help="frames per batch (default 1)")
    den.add_argument("--tile", type=tile_argument, default="auto", metavar="PX|auto|none",
                     help=TILE_HELP)
    den.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="writes " + " and ".join(DENOISE_FILES))
    den.add_argument("--overwrite", action="store_true", help="replace files in an existing DIR")
    den.add_argument("--reference", type=Path, metavar="FILE",
                     help="an independent exposure of the same field (same detector): the "
                          "quality readout (unbiased MSE of raw, best Gaussian and denoiser, "
                          "no clean image needed) is judged against it; without it a series "
                          "is judged frame against next frame")
    den.add_argument("--no-quality", action="store_true",
                     help="skip the quality readout")
    den.add_argument("--dihedral-average", action="store_true",
                     help="average the denoiser over the 8 flips and quarter turns of each "
                          "frame (8× the time; usually a lower error)")
    add_dose_options(den)
    den.set_defaults(func=cmd_denoise)



def cmd_denoise(args: argparse.Namespace) -> int:
    """Denoise a series; write denoised.tif and denoise.json together."""
    import numpy as np

    from ..device import describe_device, select_device
    from ..models.denoising import denoise_frames, dose_warnings, judged_on_training_files
    from ..models.registry import load_denoiser, resolve_denoiser

    if args.batch_size < 1:
        raise DenoiseError("--batch-size must be at least 1")
    check_output_folder(args.out, overwrite=args.overwrite)
    device = select_device(args.device)
    model_path = resolve_denoiser(args.model)
    model, metadata = load_denoiser(model_path, device="cpu")
    series = open_calibrated(args)
    single = series.data.ndim == 2
    n = 1 if single else int(series.data.shape[0])
    selected = range(n) if args.frames is None else parse_frames(args.frames, n)
    if single and args.frames is not None and len(selected) != 1:
        raise DenoiseError("the input is a single image; --frames can only select 0:1")
    e_per_px, how = series_expected_e_per_px(series)
    gain = series_gain(args, series)
    frames = series.frames
    first_mean = (None if e_per_px is not None or not len(selected)
                  else float(np.mean(np.asarray(frames[selected[0]], dtype=np.float64))))
    reference = read_reference(args, frames, selected)  # a bad one fails now, not after
    warnings = dose_warnings(
        metadata, None if e_per_px is None else [e_per_px[i] for i in selected],
        counts_per_electron=gain, frame_mean_counts=first_mean,
        gain_known=bool(args.counts_per_electron or series.dose_hints.counts_per_electron))
    if reference is not None:
        seen = judged_on_training_files(metadata, [series.path, args.reference])
        warnings += [seen] if seen else []
    for warning in warnings:
        print(f"napari-lowdose: warning: {warning}", file=sys.stderr)
    shape = (len(selected), *frames.shape[-2:])
    # A large series keeps its results in a scratch file, not in memory.
    with result_array(shape, np.float32, args.out) as denoised:
        bar = progress_bar(len(selected), unit="frame", desc="denoise")
        started = time.perf_counter()
        try:
            stream = denoise_frames(model, frames, expected_e_per_px=e_per_px,
                                    counts_per_electron=gain, device=device,
                                    batch_size=args.batch_size, frame_indices=list(selected),
                                    tile_px=args.tile,
                                    dihedral_average=args.dihedral_average)
            position = {index: k for k, index in enumerate(selected)}
            for index, frame in stream:
                denoised[position[index]] = frame
                bar.update(1)
        except ValueError as error:
            raise DenoiseError(str(error)) from error
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        doses = (None if series.frame_dose is None
                 else series.frame_dose.dose_e_per_A2[list(selected)])
        record = _run_record(args, series, model_path, metadata, describe_device(device), selected,
                             doses, e_per_px, how, gain, seconds)
        record["warnings"] = warnings
        record["dihedral_average"] = bool(args.dihedral_average)
        readout = None
        if not args.no_quality:
            readout, against = _quality(frames, denoised, selected, e_per_px, gain,
                                        reference)
            record["quality"] = (None if readout is None
                                 else {**readout.to_dict(), "against": against,
                                       "reference": None if args.reference is None
                                       else str(Path(args.reference).resolve())})
        pixel = None if series.pixel_size_A is None else float(np.mean(series.pixel_size_A))
        out_data = denoised[0] if single else denoised
        provenance = {"denoised": {"model": str(args.model), "input": str(series.path),
                                   "frames": [selected.start, selected.stop]}}
        write_output_folder(args.out, {
            "denoised.tif": lambda p: write_series_tiff(p, out_data, pixel, dose_e_per_A2=doses,
                                                        extra_metadata=provenance),
            "denoise.json": lambda p: p.write_text(json.dumps(record, indent=2, default=str)),
        }, overwrite=args.overwrite)
    if readout is not None:
        print(f"quality ({record['quality']['against']}): {readout.summary()}")
    elif not args.no_quality:
        print(f"quality: {NOT_JUDGED} (give --reference FILE)")
    rate = len(selected) / seconds if seconds > 0 else float("inf")
    print(f"{len(selected)} frame(s) denoised in {seconds:.2f} s ({rate:.1f} frames/s, "
          f"{describe_device(device)}); wrote {', '.join(DENOISE_FILES)} to {args.out}")
    return 0


def _quality(frames, denoised, selected: range, e_per_px, gain: float, reference):
    """The quality readout of the run (:func:`~napari_lowdose.analysis.denoise_quality.
    run_quality`): against ``--reference``, or frame against next frame."""

    from ..analysis.denoise_quality_runs import run_quality

    raw = [frames[i] for i in selected]
    peaks = None if e_per_px is None else [float(e_per_px[i]) * gain for i in selected]
    try:
        return run_quality(raw, denoised, reference=reference, peaks=peaks)
    except ValueError as error:
        raise DenoiseError(f"the quality readout: {error}") from error


def read_reference(args: argparse.Namespace, frames, selected: range):
    """``--reference``'s first frame, checked against the series before any denoising: the
    same frame size, and an independent exposure (not the same file); None without one."""
    import numpy as np

    from ..analysis.denoise_quality import check_independent
    from ..io.readers import read_series

    if args.reference is None or args.no_quality:
        return None
    try:
        ref_data = read_series(args.reference).data
    except (LowdoseError, OSError) as error:
        raise DenoiseError(f"--reference {args.reference}: {error}") from error
    reference = np.asarray(ref_data[0] if ref_data.ndim == 3 else ref_data)
    if reference.shape != tuple(frames.shape[-2:]):
        raise DenoiseError(f"--reference {args.reference} has frames of "
                           f"{reference.shape}, the series {tuple(frames.shape[-2:])}")
    try:
        check_independent(np.asarray(frames[selected[0]]), reference)
    except ValueError as error:
        raise DenoiseError(f"--reference {args.reference}: {error}") from error
    return reference


def _run_record(args: argparse.Namespace, series, model_path: Path, metadata: dict[str, Any],
                device: str, selected: range, doses, e_per_px, how: str, gain: float,
                seconds: float) -> dict[str, Any]:
    """What a denoising run was made with: model, device, versions, input, dose, frames."""

    dose = series.frame_dose
    indices = list(selected)
    return {
        "input": str(Path(series.path).resolve()),
        "format": series.format,
        "shape": list(series.data.shape),
        "pixel_size_A": None if series.pixel_size_A is None else list(series.pixel_size_A),
        "pixel_size_source": series.pixel_size_source,
        "frames": {"start": selected.start, "stop": selected.stop, "count": len(indices)},
        "dose": None if dose is None else {
            "source": dose.source, "detail": dose.detail,
            "dose_e_per_A2": [float(v) for v in doses]},
        "normalisation": {
            "expected_e_per_px": (None if e_per_px is None
                                  else [float(e_per_px[i]) for i in indices]),
            "from": how,
            "counts_per_electron": gain,
        },
        "model": {"name": str(args.model), "file": str(model_path.resolve()),
                  "metadata": metadata},
        "device": device,
        "batch_size": args.batch_size,
        "tile_px": args.tile,
        "seconds": seconds,
        "versions": package_versions(),
    }
