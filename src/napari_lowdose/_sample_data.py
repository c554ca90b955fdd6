"""npe2 sample-data contributions: dose series with their truth masks.

* :func:`synthetic_dose_series` — the fast synthetic series (no multislice).
* :func:`simulated_au_ceo2_series` — an abTEM-simulated CeO2-supported Au
  particle (Larsen et al. 2023, SOI Fig. 9; :mod:`.simulate.series`).
"""

from .io.dose import FrameDose
from .io.layers import LOWDOSE_KEY, image_layer_kwargs
from .simulate.synthetic_series import make_synthetic_dose_series


def synthetic_dose_series():
    """Synthetic dose series (50 frames, 10 → 10⁴ e⁻/Å²) and its particle mask."""
    series = make_synthetic_dose_series()
    p = series.parameters
    dose = FrameDose(series.dose_e_per_A2, "metadata", "synthetic series generator")
    lowdose = {
        "format": "synthetic (napari-lowdose)",
        "path": "",
        "pixel_size_A": [p.sampling_A, p.sampling_A],
        "pixel_size_source": "synthetic series generator",
        "dose": dose.to_metadata(),
        "dose_hints": {"counts_per_electron": p.counts_per_electron},
        "warnings": [],
        "truth": series.metadata(),
    }
    image_kwargs = {
        "name": "synthetic dose series",
        "auto_contrast": True,
        "metadata": {LOWDOSE_KEY: lowdose, "source_metadata": series.metadata()},
        **image_layer_kwargs((p.sampling_A, p.sampling_A), 3),
    }
    mask_kwargs = {
        "name": "particle truth",
        "opacity": 0.3,
        "metadata": {LOWDOSE_KEY: {"truth": series.metadata()}},
        **image_layer_kwargs((p.sampling_A, p.sampling_A), 2),
    }
    return [
        (series.counts, image_kwargs, "image"),
        (series.particle_mask, mask_kwargs, "labels"),
    ]


#: Seed of the simulated sample (a particle covering ~19 % of the field).
SIMULATED_SAMPLE_SEED = 2


def simulated_au_ceo2_series():
    """Simulated Au/CeO2 dose series (50 frames, 10 → 10⁴ e⁻/Å², SOI Fig. 9) and its mask."""
    from .simulate.series import simulate_dose_series

    series = simulate_dose_series(SIMULATED_SAMPLE_SEED)
    s = series.sampling_A
    truth = series.metadata()
    dose = FrameDose(series.dose_e_per_A2, "metadata", "abTEM simulation (napari-lowdose)")
    lowdose = {
        "format": "simulated (napari-lowdose, abTEM)",
        "path": "",
        "pixel_size_A": [s, s],
        "pixel_size_source": "simulation",
        "dose": dose.to_metadata(),
        "dose_hints": {"counts_per_electron": 1.0},
        "warnings": [],
        "truth": truth,
    }
    image_kwargs = {
        "name": "simulated Au/CeO2 dose series",
        "auto_contrast": True,
        "metadata": {LOWDOSE_KEY: lowdose, "source_metadata": {"frames": series.records}},
        **image_layer_kwargs((s, s), 3),
    }
    mask_kwargs = {
        "name": "particle truth",
        "opacity": 0.3,
        "metadata": {LOWDOSE_KEY: {"truth": truth}},
        **image_layer_kwargs((s, s), 2),
    }
    return [
        (series.frames, image_kwargs, "image"),
        (series.mask, mask_kwargs, "labels"),
    ]
