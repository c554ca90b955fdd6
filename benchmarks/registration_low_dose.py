"""How well two independent low-dose exposures of one field register, against the low-pass.

The pair tools (the noise fit from frame pairs, the denoising quality readout,
Noise2Noise training pairs) move one exposure onto the other by the nearest whole
pixel. At a few e⁻/px the cross-correlation is noise-dominated at high spatial
frequencies, so the low-pass applied before correlating decides whether that whole
pixel is right. This script measures it on simulated pairs with a known shift:

- ``aggregates``: dark discs of 5–10 px radius on a slowly varying support (a
  low-magnification field, like the real OneView pair);
- ``amorphous``: fine random texture (correlation ~1.5 px, like an amorphous support
  at HR-TEM sampling), where a wide low-pass removes the signal itself;

each exposed with Poisson noise, a detector excess-noise factor of 2.6 and a
correlated-noise blur of 0.6 px (the OneView's var/mean and noise correlation,
``shared/data/real-oneview/README.md``). Printed: for each field, dose and low-pass
σ, the share of pairs moved by the right whole pixel and the rms error in px.

Run::

    PYTHONPATH=src python benchmarks/registration_low_dose.py [--pairs 16]
"""

import argparse

import numpy as np
from scipy import ndimage

from napari_lowdose.analysis.registration import register_translation

SIGMAS_PX = (1.0, 1.5, 2.0, 3.0)
DOSES_E_PER_PX = (2.0, 5.0, 20.0)
SHIFT_PX = (0.3, -1.6)
EXCESS_NOISE = 2.6


def aggregates(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark discs on a slowly varying support, transmission ~1."""
    image = np.ones((size, size))
    yy, xx = np.mgrid[:size, :size]
    for _ in range(40):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(5, 10)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 0.6
    support = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    image *= 1 + 0.05 * support / support.std()
    return ndimage.gaussian_filter(image, 1.0)


def amorphous(rng: np.random.Generator, size: int) -> np.ndarray:
    """Fine random texture of 10 % contrast."""
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5)
    return 1 + 0.1 * texture / texture.std()


def expose(signal: np.ndarray, e_per_px: float, rng: np.random.Generator,
           shift_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A noisy exposure (counts per electron 1) of the signal moved by ``shift_px``."""
    moved = ndimage.shift(signal, shift_px, order=3, mode="nearest") if any(shift_px) else signal
    counts = rng.poisson(np.clip(moved, 0, None) * e_per_px / EXCESS_NOISE) * EXCESS_NOISE
    return ndimage.gaussian_filter(counts.astype(float), 0.6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16, help="pairs per field and dose")
    parser.add_argument("--size", type=int, default=384, help="frame side in px")
    args = parser.parse_args()
    print("| field | e⁻/px | " + " | ".join(f"σ {s:g} px: right, rms" for s in SIGMAS_PX) + " |")
    print("|---|---:|" + "---|" * len(SIGMAS_PX))
    right = np.round(-np.asarray(SHIFT_PX))
    for name, make in (("aggregates", aggregates), ("amorphous", amorphous)):
        for dose in DOSES_E_PER_PX:
            rng = np.random.default_rng(1)
            errors = {s: [] for s in SIGMAS_PX}
            for _ in range(args.pairs):
                signal = make(rng, args.size)
                a = expose(signal, dose, rng)
                b = expose(signal, dose, rng, SHIFT_PX)
                for sigma in SIGMAS_PX:
                    errors[sigma].append(register_translation(a, b, sigma_px=sigma))
            cells = []
            for sigma in SIGMAS_PX:
                found = np.asarray(errors[sigma])
                hits = int(np.all(np.round(found) == right, axis=1).sum())
                rms = float(np.sqrt(np.mean(np.sum((found + SHIFT_PX) ** 2, axis=1))))
                cells.append(f"{hits}/{args.pairs}, {rms:.2f}")
            print(f"| {name} | {dose:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
