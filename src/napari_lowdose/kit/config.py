"""The kit's settings: the full run for the GPU machine and a tiny one for the CPU check."""

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["KitConfig", "full_config", "tiny_config"]


@dataclass(frozen=True)
class KitConfig:
    """Everything one kit run does (shares are fractions of the whole budget)."""

    budget_s: float = 540.0
    seed: int = 17
    # Exit waves: the validation battery's ranges (workflows.battery): particles ~1–4 nm
    # (the diameter is clipped to 80 % of the field) at 0.05–0.10 Å/px.
    n_structures: int = 1000
    n_val_structures: int = 40
    size_px: int = 512
    sampling_range_A: tuple[float, float] = (0.05, 0.10)
    diameter_range_A: tuple[float, float] = (10.0, 40.0)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Images (fresh every step): MTF presets 1–5 and a direct detector, the battery's doses
    # (5–5·10³ e⁻/Å²) and above; Table 1 optics (defocus −200…200 Å).
    detectors: tuple[str, ...] = ("MTF 1", "MTF 2", "MTF 3", "MTF 4", "MTF 5", "DIRECT")
    dose_range_e_per_A2: tuple[float, float] = (5.0, 1e4)
    e_per_px_range: tuple[float, float] = (0.05, 100.0)
    # Training.
    crop_px: int = 256
    batch_size: int = 16
    loader_workers: int = 14
    n_val_items: int = 64
    val_every_steps: int = 150
    max_steps: int | None = None
    compile: bool = True
    msdnet: dict[str, Any] = field(default_factory=lambda: {
        "depth": 50, "width": 1, "kernel_size": 9, "max_dilation": 10})
    unet: dict[str, Any] = field(default_factory=lambda: {"base_channels": 16, "levels": 3})
    denoiser: dict[str, Any] = field(default_factory=lambda: {"base_channels": 40,
                                                              "levels": 3})
    # Evaluation (the validation battery) and benchmark.
    conditions: tuple[str, ...] = ()  # empty: every battery condition
    particles: int = 1
    frames: int = 40
    battery_size_px: int | None = None  # None: each condition's own field
    shipped: bool = True
    bench_sizes: dict[str, tuple[int, ...]] = field(default_factory=lambda: {
        "msdnet": (512,), "unet": (512,), "denoiser": (512, 1024)})
    bench_batches: tuple[int, ...] = (1, 4, 16)
    bench_precisions: tuple[str, ...] = ("bf16", "fp16", "fp32")
    bench_modes: tuple[str, ...] = ("eager", "compile", "cudagraphs")
    bench_frames: int = 32
    bench_repeats: int = 3
    # Shares of the budget.
    share_waves: float = 0.30
    share_train: dict[str, float] = field(default_factory=lambda: {
        "msdnet": 0.17, "unet": 0.12, "denoiser": 0.12})
    share_eval: float = 0.15
    share_bench: float = 0.08

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return asdict(self)


def full_config(**changes: Any) -> KitConfig:
    """The GPU run (540 s)."""
    return replace(KitConfig(), **changes)


def tiny_config(**changes: Any) -> KitConfig:
    """A CPU dry run of every stage at tiny sizes (tests)."""
    tiny = KitConfig(
        budget_s=60.0, n_structures=3, n_val_structures=1, size_px=64,
        sampling_range_A=(0.3, 0.3), diameter_range_A=(8.0, 12.0), workers=1,
        crop_px=32, batch_size=2, loader_workers=0, n_val_items=2, val_every_steps=2,
        max_steps=3, compile=False,
        msdnet={"depth": 4, "width": 1, "kernel_size": 3, "max_dilation": 3},
        unet={"base_channels": 4, "levels": 2}, denoiser={"base_channels": 4, "levels": 2},
        conditions=("soi-fig9",), particles=1, frames=3, battery_size_px=64,
        bench_sizes={"msdnet": (64,), "unet": (64,), "denoiser": (64,)},
        bench_batches=(1,), bench_precisions=("fp32",), bench_modes=("eager",),
        bench_frames=1, bench_repeats=1)
    return replace(tiny, **changes)
