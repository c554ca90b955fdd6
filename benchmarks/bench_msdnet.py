"""Benchmark: MSD-net (buffer vs naive concatenation) and U-net, CPU or GPU (issue 5).

Measures, in one run and with identical weights:

* **inference** frames/s of :class:`~napari_lowdose.models.MSDNet` (one
  preallocated feature buffer), :class:`~napari_lowdose.models.NaiveMSDNet`
  (``torch.cat`` at every layer) and :class:`~napari_lowdose.models.UNet` at
  512² and 1024² (batch 1, ``torch.inference_mode``), and that the two MSD-nets
  agree;
* **one training step** (forward, BCE, backward, Adam) of both MSD-nets:
  seconds, peak memory and the bytes autograd saves for the backward pass
  (unique storages, via ``saved_tensors_hooks``). Each training measurement
  runs in a fresh subprocess; its peak memory is the growth of the process's
  peak resident set (``ru_maxrss``) on CPU, or ``torch.cuda.max_memory_allocated``
  on CUDA.

Run::

    PYTHONPATH=src python benchmarks/bench_msdnet.py [--device cpu] [--threads 2]
        [--depth 50] [--width 1] [--kernel 9] [--train-px 512] [--sizes 512,1024]

Prints a Markdown table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch


def _models(depth: int, width: int, kernel: int):
    from napari_lowdose.models import MSDNet, NaiveMSDNet, UNet

    buffer = MSDNet(depth=depth, width=width, kernel_size=kernel, dilation_seed=0)
    naive = NaiveMSDNet(depth=depth, width=width, kernel_size=kernel, dilation_seed=0)
    naive.load_state_dict(buffer.state_dict())
    torch.manual_seed(0)
    return {"MSD-net (buffer)": buffer, "MSD-net (naive cat)": naive, "U-net": UNet()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_inference(model: torch.nn.Module, size: int, device: torch.device,
                   repeats: int) -> tuple[float, torch.Tensor]:
    """Seconds per frame (median of ``repeats`` after one warm-up) and the last output."""
    model = model.to(device).eval()
    # The same input for every model, so that their outputs can be compared.
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(1, 1, size, size, generator=generator).to(device)
    times = []
    with torch.inference_mode():
        out = model(x)
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            out = model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], out.float().cpu()


def train_step_child(args: argparse.Namespace) -> None:
    """In a fresh process: one training step; print its time, peak memory and saved bytes."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    name = args.child
    model = _models(args.depth, args.width, args.kernel)[name].to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    x = torch.randn(1, 1, args.train_px, args.train_px, device=device)
    y = (torch.rand(1, 1, args.train_px, args.train_px, device=device) > 0.5).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    optimiser.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(model(x), y)
    loss.backward()
    optimiser.step()
    _sync(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb,
                      "saved_mb": sum(saved.values()) / 2**20}))


def time_training(name: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", name, "--device", args.device,
               "--threads", str(args.threads), "--depth", str(args.depth),
               "--width", str(args.width), "--kernel", str(args.kernel),
               "--train-px", str(args.train_px)]
    result = subprocess.run(command, capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--kernel", type=int, default=9)
    parser.add_argument("--train-px", type=int, default=512)
    parser.add_argument("--sizes", default="512,1024", help="inference sizes ('' to skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train_step_child(args)
        return
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"device {device}; torch {torch.__version__}; MSD-net depth {args.depth}, "
          f"width {args.width}, {args.kernel}×{args.kernel}\n")
    models = _models(args.depth, args.width, args.kernel)
    print("| model | frame | s/frame | frames/s |\n|---|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",") if s):
        outputs = {}
        for name, model in models.items():
            seconds, outputs[name] = time_inference(model, size, device, args.repeats)
            print(f"| {name} | {size}² | {seconds:.3f} | {1 / seconds:.2f} |")
        difference = (outputs["MSD-net (buffer)"] - outputs["MSD-net (naive cat)"]).abs().max()
        print(f"| buffer vs naive, max abs difference | {size}² | {float(difference):.1e} | |")
    print(f"\n| training step ({args.train_px}², batch 1) | s/step | peak memory growth (MB) "
          "| saved for backward (MB) |")
    print("|---|---:|---:|---:|")
    for name in ("MSD-net (buffer)", "MSD-net (naive cat)"):
        measured = time_training(name, args)
        print(f"| {name} | {measured['seconds']:.2f} | {measured['peak_mb']:.0f} | "
              f"{measured['saved_mb']:.0f} |")


if __name__ == "__main__":
    main()
