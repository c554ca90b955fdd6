"""Simulated denoiser training pairs beyond HR-TEM: phantoms, detector excess noise, mixes.

:class:`PhantomPairs` images the cheap clean fields of
:func:`napari_lowdose.simulate.phantoms.phantom_image` (aggregates of particles at low
magnification, amorphous supports, lattice patches at other samplings) with the
detector noise of Eq. 3 (Larsen et al. 2023) drawn from a wide noise model
(default the ``WIDE`` preset: Table 3's MTF 1–5 and a direct detector), and, for
most items, the excess noise of scintillator cameras beyond Eq. 3: a gain spread
(each electron's signal varies; blurred by the MTF) and a white part that scales with
the signal (:func:`napari_lowdose.noise.apply_detector_noise`, ``gain_spread`` and
``white_excess``). Real scintillator frames carry far more noise per pixel than Eq. 3
gives at their stated gain: Eq. 3 with the Table 3 MTFs gives a pixel variance of
0.1–0.4 ``N_D`` (the MTF spreads each electron), a Gatan OneView pair 2.6 ``N_D``
with a power spectrum that falls only to ~0.55 at Nyquist
(``shared/data/real-oneview``); ``gain_spread`` ≈ 1.5 and ``white_excess`` ≈ 2 with
``c0`` ≈ 0.7, ``c3`` ≈ 1 reproduce both. The excess is drawn per item, so the network
learns to denoise without being told it (its noise-level channel stays ``N_D``, the
electrons per pixel the frame's calibration states).

:class:`MixedPairs` interleaves sources (e.g. phantoms and the exit waves of a
simulated dataset, :class:`.denoise_simulated.SimulatedPairs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..noise.model import NoiseModel
from ..noise.presets import preset
from ..noise.synthesis import apply_detector_noise
from ..simulate.imaging import NOISE_MARGIN_PX
from ..simulate.phantoms import phantom_image
from .denoise_simulated import DEFAULT_E_PER_PX_RANGE
from .denoise_sources import PairSource
from .loop import TrainingError

__all__ = ["ExcessNoise", "MixedPairs", "PhantomPairs"]

#: Side of the frames when whole frames are asked for (``crop_px=None``).
_WHOLE_FRAME_PX = 256


@dataclass(frozen=True)
class ExcessNoise:
    """Ranges of the detector noise beyond Eq. 3 (drawn uniformly per item).

    Parameters
    ----------
    gain_spread_range : (float, float)
        Variance of one electron's signal (mean 1), before the MTF.
    white_excess_range : (float, float)
        Variance of the white, signal-proportional noise after the MTF, per electron.
    plain_fraction : float
        Share of items with Eq. 3's noise alone (no excess), as on direct detectors
        and in the Table 3 recipe.
    """

    gain_spread_range: tuple[float, float] = (0.0, 2.0)
    white_excess_range: tuple[float, float] = (0.0, 4.0)
    plain_fraction: float = 0.25

    def __post_init__(self) -> None:
        for name in ("gain_spread_range", "white_excess_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise TrainingError(f"{name} must satisfy 0 <= low <= high, got {lo}, {hi}")
        if not 0 <= self.plain_fraction <= 1:
            raise TrainingError("plain_fraction must lie in 0…1")

    def sample(self, rng: np.random.Generator) -> tuple[float, float]:
        """``(gain_spread, white_excess)`` of one item."""
        if rng.random() < self.plain_fraction:
            return 0.0, 0.0
        return (float(rng.uniform(*self.gain_spread_range)),
                float(rng.uniform(*self.white_excess_range)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


class PhantomPairs(PairSource):
    """Noisy/noise-free pairs of phantom fields (:func:`.phantom_image`).

    Item ``index`` of an epoch draws, from ``SeedSequence(seed, spawn_key=(epoch,
    index))``, a phantom, a log-uniform dose in electrons per pixel, one draw of the
    noise model, the excess noise and the flips. Input: the detector frame in
    electrons per pixel; target: the phantom × e⁻/px (infinite dose, no MTF). Half
    the items carry the noisy crop's own mean as their expected e⁻/px, as frames
    without a dose are normalised at inference
    (:func:`napari_lowdose.models.normalisation.normalise_counts`).

    Parameters
    ----------
    n_items : int
        Items per epoch.
    e_per_px_range : (float, float), optional
        Log-uniform range of the electrons per vacuum pixel.
    noise_model : NoiseModel, optional
        Ranges of Eq. 3's MTF and readout; default the ``WIDE`` preset.
    excess : ExcessNoise, optional
        Ranges of the excess noise; ``ExcessNoise(plain_fraction=1)`` for Eq. 3 alone.
    crop_px : int or None, optional
        Side of the items (None: 256 px).
    augment : bool, optional
        New draws every epoch and flips; otherwise epoch 0's draws (validation).
    seed : int, optional
        Seed of all draws.
    """

    kind = "phantoms"

    def __init__(self, n_items: int = 2048, *,
                 e_per_px_range: Sequence[float] = DEFAULT_E_PER_PX_RANGE,
                 noise_model: NoiseModel | None = None, excess: ExcessNoise | None = None,
                 crop_px: int | None = 128, augment: bool = True, seed: int = 0) -> None:
        super().__init__(crop_px, augment, seed)
        if int(n_items) < 1:
            raise TrainingError("a phantom source needs at least 1 item")
        self.n_items = int(n_items)
        lo, hi = (float(v) for v in e_per_px_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise TrainingError(f"the e⁻/px range must satisfy 0 < low <= high, got {lo}, {hi}")
        self.e_per_px_range = (lo, hi)
        self.noise_model = noise_model if noise_model is not None else preset("WIDE")
        if not isinstance(self.noise_model, NoiseModel):
            raise TrainingError("noise_model must be a NoiseModel")
        self.excess = excess if excess is not None else ExcessNoise()

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= int(index) < self.n_items:
            raise IndexError(index)
        rng = self._rng(index)
        side = self.crop_px or _WHOLE_FRAME_PX
        m = NOISE_MARGIN_PX
        clean = phantom_image((side + 2 * m, side + 2 * m), rng)
        lo, hi = self.e_per_px_range
        e_per_px = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        draw = self.noise_model.sample(rng)
        gain_spread, white_excess = self.excess.sample(rng)
        noisy = apply_detector_noise(
            clean, e_per_px, 1.0, c0=float(draw.c0), c3=float(draw.c3),
            n0_e_per_px=float(draw.n0_e_per_px), rng=rng, workers=1,
            gain_spread=gain_spread, white_excess=white_excess)
        crop = (slice(m, m + side), slice(m, m + side))
        noisy, target = noisy[crop], clean[crop] * np.float32(e_per_px)
        expected = e_per_px
        if rng.random() < 0.5:
            mean = float(noisy.mean())
            expected = mean if mean > 0.05 * e_per_px else e_per_px
        return self._item(noisy, target, expected, rng)

    def trained_e_per_px_range(self) -> list[float]:
        """Lowest and highest expected electrons per vacuum pixel of the items."""
        return list(self.e_per_px_range)

    def describe(self) -> dict[str, Any]:
        """Items, dose range, noise model, excess noise and crops."""
        return {**self._common(), "trained_e_per_px_range": self.trained_e_per_px_range(),
                "noise_model": self.noise_model.to_dict(), "excess_noise": self.excess.to_dict(),
                "phantoms": "napari_lowdose.simulate.phantoms.phantom_image",
                "reference": "noise-free phantom * N_D (infinite dose; no MTF, no readout)"}


class MixedPairs(Dataset):
    """Items of several pair sources, interleaved (one of each in turn while they last).

    Parameters
    ----------
    sources : sequence of Dataset
        Pair sources (``set_epoch``, ``describe`` and ``trained_e_per_px_range`` are
        used when present).
    """

    kind = "mixed"

    def __init__(self, sources: Sequence[Dataset]) -> None:
        self.sources = [s for s in sources if s is not None]
        if not self.sources:
            raise TrainingError("a mix needs at least one source")
        lengths = [len(s) for s in self.sources]
        self._order: list[tuple[int, int]] = []
        for k in range(max(lengths)):
            self._order.extend((i, k) for i, n in enumerate(lengths) if k < n)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        source, item = self._order[int(index)]
        return self.sources[source][item]

    @property
    def card(self) -> dict[str, Any] | None:
        """The card of the first source with a simulated dataset (None: no dataset)."""
        return next((s.card for s in self.sources if getattr(s, "card", None) is not None),
                    None)

    def set_epoch(self, epoch: int) -> None:
        """Choose the random draws of ``epoch`` in every source."""
        for source in self.sources:
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)

    def trained_e_per_px_range(self) -> list[float] | None:
        """The union of the sources' e⁻/px ranges (None if one has none)."""
        ranges = [getattr(s, "trained_e_per_px_range", lambda: None)() for s in self.sources]
        if any(r is None for r in ranges):
            return None
        return [min(r[0] for r in ranges), max(r[1] for r in ranges)]

    def describe(self) -> dict[str, Any]:
        """The sources' descriptions, and the first dataset path and noise model among them."""
        parts = [s.describe() if hasattr(s, "describe") else {} for s in self.sources]
        return {"kind": self.kind, "n_items": len(self), "sources": parts,
                "path": next((p["path"] for p in parts if p.get("path")), None),
                "trained_e_per_px_range": self.trained_e_per_px_range(),
                "noise_model": next((p["noise_model"] for p in parts if p.get("noise_model")),
                                    None)}
