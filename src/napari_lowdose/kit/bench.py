"""Inference speed through the functions the command line uses.

Frames per second of :func:`~napari_lowdose.models.inference.predict_probabilities`
(``segment``) and :func:`~napari_lowdose.models.denoising.denoise_frames` (``denoise``),
end to end (numpy frames in, numpy results out, host–device copies included), over
frame sizes, batch sizes, precisions (:func:`~napari_lowdose.models.streaming.
forced_precision`) and execution modes: eager, :func:`torch.compile`, and
``torch.compile(mode="reduce-overhead")``, which replays CUDA graphs.

Each case: one warm-up pass over the frames (compilation and graph capture happen
there), then ``repeats`` timed passes; the median is reported. Cases run in the order
given and stop when the deadline passes.
"""

import json
import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..models.streaming import forced_precision
from .budget import Deadline

__all__ = ["MODES", "benchmark"]

#: Execution modes: name → torch.compile mode (None: eager).
MODES: dict[str, str | None] = {"eager": None, "compile": "default",
                                "cudagraphs": "reduce-overhead"}


def _run(kind: str, model: Any, frames: np.ndarray, batch: int, device: str) -> None:
    from ..models.denoising import denoise_frames
    from ..models.inference import predict_probabilities

    if kind == "denoise":
        for _ in denoise_frames(model, frames, expected_e_per_px=5.0, device=device,
                                batch_size=batch):
            pass
    else:
        for _ in predict_probabilities(model, frames, device=device, batch_size=batch):
            pass


def benchmark(networks: Sequence[tuple[str, str, Any, Sequence[int]]], *,
              batch_sizes: Sequence[int], precisions: Sequence[str], modes: Sequence[str],
              frames_per_pass: int, repeats: int, device: str, deadline: Deadline,
              log: logging.Logger) -> list[dict[str, Any]]:
    """Time every case; return one row per case (failures recorded, not raised).

    Parameters
    ----------
    networks : sequence of (name, kind, model, sizes)
        ``kind`` is ``"segment"`` or ``"denoise"``; ``sizes`` are frame sides in px.
    batch_sizes, precisions, modes : sequence
        Batch sizes, ``"fp32"``/``"bf16"``/``"fp16"``, and :data:`MODES` names.
    frames_per_pass : int
        Frames per timed pass (rounded up to a whole number of batches).
    repeats : int
        Timed passes per case.
    device : str
    deadline : Deadline
    log : logging.Logger
    """
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for name, kind, model, sizes in networks:
        for mode in modes:
            net = model if MODES[mode] is None else torch.compile(model, mode=MODES[mode],
                                                                   dynamic=False)
            for size in sizes:
                for batch in batch_sizes:
                    n = max(1, -(-int(frames_per_pass) // batch)) * batch
                    frames = rng.poisson(5.0, size=(n, size, size)).astype(np.float32)
                    for precision in precisions:
                        if deadline.expired():
                            log.warning("benchmark: out of time at %s %s", name, mode)
                            return rows
                        row = {"network": name, "size_px": size, "batch": batch,
                               "precision": precision, "mode": mode, "frames": n}
                        try:
                            with forced_precision(precision):
                                _run(kind, net, frames, batch, device)
                                times = []
                                for _ in range(int(repeats)):
                                    _sync(device)
                                    start = time.perf_counter()
                                    _run(kind, net, frames, batch, device)
                                    _sync(device)
                                    times.append(time.perf_counter() - start)
                            seconds = statistics.median(times)
                            row.update(frames_per_s=round(n / seconds, 2), status="ok")
                        except Exception as error:  # noqa: BLE001 - a case may not run here
                            row.update(frames_per_s=None,
                                       status=f"{type(error).__name__}: {error}"[:200])
                        log.info("benchmark %s", json.dumps(row))
                        rows.append(row)
    return rows


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
