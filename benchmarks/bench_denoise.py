"""Benchmark: denoiser frames/s at 512² and 1024², CPU or GPU (issue 7, item 5).

Katsuno et al. (2021) denoise at ~8 ms per frame (125 frames/s); the issue's
bar is ≥ 125 frames/s at 1024² on one H100. This script measures the
shipped network's architecture (or a checkpoint) on random Poisson frames:

* ``denoise_frames`` end to end (normalisation, percentile clipping,
  host↔device copies, batches), the path the CLI, widget and ``watch`` use;
* the bare network (``model(x)`` on a device-resident batch), to separate
  the network from the data handling;
* on CUDA: fp32, bf16 and fp16 autocast, ``torch.compile`` and CUDA graphs
  (``mode="reduce-overhead"``) where they work, over batch sizes.

Run::

    PYTHONPATH=src python benchmarks/bench_denoise.py [--device cpu] [--threads 2]
        [--model NAME|PATH] [--sizes 512,1024] [--batches 1,4] [--repeats 5]

Prints a Markdown table (one row per setting) and the machine.
"""

import argparse
import contextlib
import platform
import statistics
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _model(name: str | None, device: torch.device):
    from napari_lowdose.models.denoiser import DenoiserUNet
    from napari_lowdose.models.registry import available_denoisers, load_denoiser

    if name is None and not available_denoisers():
        model, label = DenoiserUNet(), "DenoiserUNet() (untrained, default config)"
    else:
        model, _ = load_denoiser(name or available_denoisers()[0], device="cpu")
        label = str(name or available_denoisers()[0])
    return model.to(device).eval(), label


def _median_s(run, repeats: int, device: torch.device) -> float:
    run()  # warm-up (cuDNN autotuning, compilation)
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_pipeline(model, size: int, batch: int, device: torch.device, repeats: int) -> float:
    """Frames/s of ``denoise_frames`` on ``batch`` frames of ``size``² at 5 e⁻/px."""
    from napari_lowdose.models.denoising import denoise_frames

    frames = np.random.default_rng(size).poisson(5.0, (batch, size, size)).astype(np.float32)

    def run():
        for _ in denoise_frames(model, frames, expected_e_per_px=5.0, device=device,
                                batch_size=batch):
            pass

    return batch / _median_s(run, repeats, device)


def bench_network(model, size: int, batch: int, device: torch.device, repeats: int,
                  dtype: torch.dtype | None, compiled: str | None) -> float:
    """Frames/s of the bare network on a device-resident batch."""
    x = torch.rand(batch, 2, size, size, device=device)
    net = model
    if compiled is not None:
        net = torch.compile(model, mode=compiled)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())

    def run():
        with torch.inference_mode(), autocast:
            net(x)

    return batch / _median_s(run, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, label = _model(args.model, device)
    sizes = [int(v) for v in args.sizes.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    n_params = sum(p.numel() for p in model.parameters())
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {args.threads} threads")
    print(f"model: {label}, {n_params / 1e6:.2f} M parameters; device: {where}; "
          f"torch {torch.__version__}\n")
    print("| path | precision | frame | batch | frames/s | ms/frame |")
    print("|---|---|---:|---:|---:|---:|")

    def row(path, precision, size, batch, fps):
        print(f"| {path} | {precision} | {size}² | {batch} | {fps:.1f} | {1e3 / fps:.1f} |",
              flush=True)

    for size in sizes:
        for batch in batches:
            row("denoise_frames", "auto", size, batch,
                bench_pipeline(model, size, batch, device, args.repeats))
            row("network", "fp32", size, batch,
                bench_network(model, size, batch, device, args.repeats, None, None))
            if device.type != "cuda":
                continue
            for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                row("network", name, size, batch,
                    bench_network(model, size, batch, device, args.repeats, dtype, None))
            for mode in ("max-autotune-no-cudagraphs", "reduce-overhead"):
                try:
                    fps = bench_network(model, size, batch, device, args.repeats,
                                        torch.bfloat16, mode)
                except Exception as err:  # noqa: BLE001 - report and go on
                    print(f"| network, torch.compile({mode}) | bf16 | {size}² | {batch} | "
                          f"failed: {type(err).__name__} | |")
                    continue
                row(f"network, torch.compile({mode})", "bf16", size, batch, fps)


if __name__ == "__main__":
    main()
