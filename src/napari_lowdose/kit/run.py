"""The kit's run: waves → three trainings → battery and PSNR → benchmark → files.

Each stage runs under :func:`~.budget.run_stage` with its share of the budget; whatever
happens, :func:`run_kit` ends by writing ``kit.json`` (settings, stage outcomes, training
summaries, tables), ``kit.md`` (the tables), ``kit.log`` and the trained model files
(at most 8 files in all, each at most 16 MiB: what the device tool brings back).
"""

import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .budget import Deadline, run_stage
from .config import KitConfig

__all__ = ["MAX_FILE_BYTES", "MAX_FILES", "NETWORKS", "run_kit"]

#: What the device tool returns: at most 8 files of at most 16 MiB each.
MAX_FILES = 8
MAX_FILE_BYTES = 16 * 2**20
#: The trained networks: name → (kind, arch).
NETWORKS = {"msdnet": ("segment", "msdnet"), "unet": ("segment", "unet"),
            "denoiser": ("denoise", "denoiser")}


def _logger(path: Path) -> logging.Logger:
    log = logging.getLogger("napari_lowdose.kit")
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    for handler in (logging.FileHandler(path, encoding="utf-8"),
                    logging.StreamHandler(sys.stdout)):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    return log


def _build(name: str, config: KitConfig):
    from ..models.checkpoint import build_model

    settings = {"msdnet": config.msdnet, "unet": config.unet, "denoiser": config.denoiser}
    return build_model(NETWORKS[name][1], dict(settings[name]))


def run_kit(config: KitConfig, out: Path, work: Path, *, command: str,
            device_name: str = "auto") -> dict[str, Any]:
    """Run every stage within ``config.budget_s`` and write the results to ``out``.

    Parameters
    ----------
    config : KitConfig
    out : Path
        Results folder ($OUT on the device machine).
    work : Path
        Scratch folder (exit waves, model sidecars).
    command : str
        The kit's command line, recorded in every model file and in ``kit.json``.
    device_name : str
        Torch device (``"auto"``: CUDA > MPS > CPU).

    Returns
    -------
    dict
        What ``kit.json`` holds.
    """
    import torch

    from ..device import describe_device, select_device
    from ..provenance import training_versions

    total = Deadline(config.budget_s)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    log = _logger(out / "kit.log")
    device = select_device(device_name)
    report: dict[str, Any] = {
        "command": command, "config": config.to_dict(), "device": describe_device(device),
        "torch": torch.__version__, "versions": training_versions(), "stages": {},
        "training": {}, "battery": {}, "denoiser_psnr": {}, "benchmark": []}
    log.info("kit: %s on %s, budget %.0f s", command, report["device"], config.budget_s)
    stages = report["stages"]
    state: dict[str, Any] = {}
    try:
        run_stage("waves", lambda: _waves(config, work, total, log, state), log, stages)
        for name in NETWORKS:
            share = total.share(1.0, of_s=config.share_train[name] * config.budget_s)
            result = run_stage(f"train_{name}", lambda n=name, d=share: _train(
                n, config, work, device, d, log, state, command), log, stages)
            if result is not None:
                report["training"][name] = result
        run_stage("evaluate", lambda: _evaluate(config, device, total, log, state, report),
                  log, stages)
        run_stage("benchmark", lambda: _benchmark(config, device, total, log, state, report),
                  log, stages)
    finally:
        report["elapsed_s"] = round(total.elapsed_s(), 1)
        _write(out, report, state, log)
    return report


def _waves(config: KitConfig, work: Path, total: Deadline, log: logging.Logger,
           state: dict[str, Any]) -> None:
    from ..simulate.structures import StructureRecipe
    from .images import ImageRanges
    from .waves import load_waves, simulate_waves

    recipe = StructureRecipe(size_px=config.size_px, sampling_range_A=config.sampling_range_A,
                             diameter_range_A=config.diameter_range_A)
    deadline = total.share(1.0, of_s=config.share_waves * config.budget_s)
    # One cache per recipe and seed: a rerun reuses its waves, another recipe starts anew.
    key = hashlib.sha1(json.dumps([recipe.to_dict(), config.seed]).encode()).hexdigest()[:10]
    root = work / f"waves-{key}"
    done = simulate_waves(root, config.n_structures, recipe, seed=config.seed,
                          workers=config.workers, deadline=deadline, log=log)
    if len(done) < 2:
        raise RuntimeError(f"only {len(done)} exit waves in time; need 2 or more")
    n_val = min(config.n_val_structures, max(1, len(done) // 10))
    waves = load_waves(root, done)
    state["train_waves"], state["val_waves"] = waves[:-n_val], waves[-n_val:]
    state["ranges"] = ImageRanges(dose_range_e_per_A2=config.dose_range_e_per_A2,
                                  e_per_px_range=config.e_per_px_range,
                                  detectors=tuple(config.detectors))
    state["data"] = {"structure_recipe": recipe.to_dict(), "seed": config.seed,
                     "n_train_waves": len(waves) - n_val, "n_val_waves": n_val,
                     "detectors": list(config.detectors),
                     "dose_range_e_per_A2": list(config.dose_range_e_per_A2),
                     "e_per_px_range": list(config.e_per_px_range),
                     "images": "drawn fresh every step (Table 1 optics, Eq. 3 noise)"}


def _train(name: str, config: KitConfig, work: Path, device: Any, deadline: Deadline,
           log: logging.Logger, state: dict[str, Any], command: str) -> dict[str, Any]:
    from .images import FreshImages, fixed_items
    from .training import TrainOptions, train_network

    if "train_waves" not in state:
        raise RuntimeError("no exit waves (the waves stage failed)")
    kind, arch = NETWORKS[name]
    ranges = state["ranges"]
    dataset = FreshImages(state["train_waves"], kind, config.crop_px, ranges, config.seed)
    val = fixed_items(state["val_waves"], kind, config.crop_px, ranges, config.n_val_items,
                      config.seed)
    options = TrainOptions(batch_size=config.batch_size, val_every_steps=config.val_every_steps,
                           loader_workers=config.loader_workers,
                           compile=config.compile and device.type == "cuda",
                           reserve_s=min(10.0, 0.2 * deadline.left_s()),
                           max_steps=config.max_steps,
                           lr=1e-3 if kind == "segment" else 3e-4)
    metadata = {"command": command, "kit": {"network": name, "command": command},
                "dataset": state["data"], "n_val_items": len(val)}
    if kind == "denoise":
        metadata["source"] = {"kind": "kit", "trained_e_per_px_range":
                              list(config.e_per_px_range)}
    path = work / "models" / f"{name}.safetensors"
    result = train_network(kind, arch, _build(name, config), dataset, val, out=path,
                           options=options, device=device, deadline=deadline,
                           metadata=metadata, log=log)
    if result["file"]:
        state.setdefault("models", {})[name] = path
    return result


def _evaluate(config: KitConfig, device: Any, total: Deadline, log: logging.Logger,
              state: dict[str, Any], report: dict[str, Any]) -> None:
    from ..models.registry import (
        available_denoisers,
        available_models,
        load_denoiser,
        load_model,
        resolve_denoiser,
        resolve_model,
    )
    from ..workflows.battery import BATTERY, battery_condition
    from ..workflows.battery_runs import table_markdown
    from ..workflows.segmentation import resolve_threshold
    from .evaluate import SeriesBank, denoiser_psnr, evaluate_segmenters, psnr_table

    deadline = total.share(1.0, of_s=config.share_eval * config.budget_s)
    conditions = ([battery_condition(n) for n in config.conditions] if config.conditions
                  else list(BATTERY))
    bank = SeriesBank(config.frames, config.battery_size_px)
    new = state.get("models", {})
    segmenters = {f"kit-{n}": str(p) for n, p in new.items() if NETWORKS[n][0] == "segment"}
    denoisers = {f"kit-{n}": str(p) for n, p in new.items() if NETWORKS[n][0] == "denoise"}
    if config.shipped:
        segmenters.update({n: n for n in available_models()})
        denoisers.update({n: n for n in available_denoisers()})
    loaded = {}
    for name, where in segmenters.items():
        model, metadata = load_model(resolve_model(where), device=device)
        loaded[name] = (model, resolve_threshold(None, metadata, name), metadata)
    rows, table = evaluate_segmenters(loaded, conditions, config.particles, bank,
                                      device=str(device), deadline=deadline.share(0.75),
                                      log=log)
    report["battery"] = {"rows": rows, "table": table, "markdown": table_markdown(table)}
    den = {name: load_denoiser(resolve_denoiser(where), device=device)[0]
           for name, where in denoisers.items()}
    psnr_rows = denoiser_psnr(den, conditions, config.particles, bank, device=str(device),
                              deadline=deadline, log=log)
    report["denoiser_psnr"] = {"table": psnr_table(psnr_rows), "frames": len(psnr_rows)}


def _benchmark(config: KitConfig, device: Any, total: Deadline, log: logging.Logger,
               state: dict[str, Any], report: dict[str, Any]) -> None:
    from ..models.registry import DEFAULT_DENOISER, load_denoiser, load_model, resolve_denoiser
    from .bench import benchmark

    deadline = total.share(1.0, of_s=config.share_bench * config.budget_s)
    networks = []
    for name, (kind, _) in NETWORKS.items():
        path = state.get("models", {}).get(name)
        if path is not None:
            model = (load_denoiser(path, device=device) if kind == "denoise"
                     else load_model(path, device=device))[0]
        elif kind == "denoise":
            model = load_denoiser(resolve_denoiser(DEFAULT_DENOISER), device=device)[0]
        else:
            model = _build(name, config)
        networks.append((name, kind, model, config.bench_sizes[name]))
    precisions = config.bench_precisions if device.type == "cuda" else ("fp32",)
    modes = config.bench_modes if device.type == "cuda" else tuple(
        m for m in config.bench_modes if m == "eager") or ("eager",)
    report["benchmark"] = benchmark(networks, batch_sizes=config.bench_batches,
                                    precisions=precisions, modes=modes,
                                    frames_per_pass=config.bench_frames,
                                    repeats=config.bench_repeats, device=str(device),
                                    deadline=deadline, log=log)


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Device kit results\n\n`{report['command']}` on {report['device']}, "
             f"{report.get('elapsed_s')} s.\n", "## Stages\n", "| stage | status | seconds |",
             "|---|---|---|"]
    lines += [f"| {k} | {v['status']}{' — ' + v['error'] if v.get('error') else ''} "
              f"| {v['seconds']} |" for k, v in report["stages"].items()]
    lines += ["\n## Training\n", "| network | steps | crops/s | compiled | amp | best |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['steps']} | {v['crops_per_s']} | {v['compiled']} | {v['amp']} "
              f"| {json.dumps(v['best'])} |" for k, v in report["training"].items()]
    lines += ["\n## Validation battery (F1 against dose)\n",
              report["battery"].get("markdown", "(not run)\n")]
    lines += ["## Denoiser PSNR against dose (mean per e⁻/px bin)\n",
              "| model | e⁻/px | frames | PSNR (dB) |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['e_per_px_from']:g}–{r['e_per_px_to']:g} | {r['frames']} "
              f"| {r['psnr_dB']} |" for r in report["denoiser_psnr"].get("table", [])]
    lines += ["\n## Inference benchmark (end to end, frames/s)\n",
              "| network | px | batch | precision | mode | frames/s | status |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['network']} | {r['size_px']} | {r['batch']} | {r['precision']} "
              f"| {r['mode']} | {r['frames_per_s']} | {r['status']} |"
              for r in report["benchmark"]]
    return "\n".join(lines) + "\n"


def _write(out: Path, report: dict[str, Any], state: dict[str, Any],
           log: logging.Logger) -> None:
    """Model files (each ≤ 16 MiB), kit.json, kit.md, and the log last."""
    returned = {}
    for name, path in state.get("models", {}).items():
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            log.warning("%s is %.1f MiB, over the %d MiB a returned file may have; kept out",
                        path, size / 2**20, MAX_FILE_BYTES // 2**20)
            continue
        shutil.copyfile(path, out / f"kit-{name}.safetensors")
        returned[name] = f"kit-{name}.safetensors"
    report["returned_models"] = returned
    report["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    (out / "kit.json").write_text(json.dumps(report, indent=1, default=str) + "\n",
                                  encoding="utf-8")
    (out / "kit.md").write_text(_markdown(report), encoding="utf-8")
    log.info("kit: wrote %s", sorted(p.name for p in out.iterdir()))
    for handler in log.handlers:
        handler.flush()
