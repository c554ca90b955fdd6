"""npe2 sample-data contribution: the synthetic dose series with its truth mask."""

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
