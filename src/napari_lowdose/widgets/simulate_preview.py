"""The preview of the 'Simulate' dock: its steps, its layers and its description.

Structure 0 of the dataset the settings would make
(:func:`~napari_lowdose.simulate.exitwaves.simulate_structure`), imaged with the
optics of its image epoch 0 (Larsen et al. 2023, Table 1), then the detector
noise of Eq. 3 at a chosen dose
(:func:`~napari_lowdose.simulate.series.preview_noisy_image`). No notifications here.
"""

import numpy as np

from ..io.dose import FrameDose
from ..io.layers import LOWDOSE_KEY, image_layer_kwargs
from ..simulate.optics import TABLE1_OPTICS

__all__ = ["noise_rng", "preview_steps", "preview_text", "set_preview_layer"]


def noise_rng(seed: int, draw: int) -> np.random.Generator:
    """Generator of the preview's ``draw``-th noise realisation (reproducible)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0, 4, int(draw))))


def preview_steps(request: dict):
    """Generator: None after each of its first two steps, then the preview dict.

    The dock moves its progress bars (and napari's activity bar, made in the GUI thread)
    as the items arrive.

    ``request``: seed, recipe (StructureRecipe), noise_model (NoiseModel), dose (e⁻/Å²).
    """
    from ..simulate.dataset import image_rng
    from ..simulate.exitwaves import simulate_structure
    from ..simulate.series import preview_clean_image, preview_noisy_image

    seed = request["seed"]
    structure = simulate_structure(0, seed, request["recipe"])
    yield None
    clean, optics = preview_clean_image(structure, image_rng(seed, 0, 0), TABLE1_OPTICS)
    yield None
    sampling = structure.geometry.sampling_A
    noisy, record = preview_noisy_image(
        clean, request["dose"], sampling, request["noise_model"], noise_rng(seed, 0)
    )
    yield {
        "structure": structure,
        "clean": clean,
        "optics": optics,
        "noisy": noisy,
        "record": record,
        "sampling_A": sampling,
        "seed": seed,
        "noise_model": request["noise_model"],
    }


def preview_text(preview: dict) -> str:
    """The preview's status lines: particle, optics, dose and noise."""
    p = preview
    params = p["structure"].particle.parameters
    r = p["record"]
    o = p["optics"]
    return (
        f"{params['sampling_A']:.4f} Å/px, Au {params['diameter_A']:.1f} Å "
        f"({params['n_au_atoms']} atoms), mask {p['structure'].mask.mean():.1%}\n"
        f"defocus {o.defocus_A:.0f} Å, Cs {o.cs_A / 1e4:.2f} µm, "
        f"focal spread {o.focal_spread_A:.1f} Å, blur {o.blur_A:.2f} Å\n"
        f"{r['dose_e_per_A2']:.3g} e⁻/Å² = {r['electrons_per_px']:.3g} e⁻/px, "
        f"{p['noise_model'].name}: c0 {r['c0']:.3g}, c3 {r['c3']:.3g}, "
        f"N0 {r['n0_e_per_px']:.3g}"
    )


def set_preview_layer(viewer, layer, name, data, kind, sampling_A, noise_record, truth):
    """Update ``layer`` in place if it is still in the viewer, else add one named ``name``.

    ``kind``: "image" or "labels". The layer's ``metadata["lowdose"]`` is that of a
    read file (pixel size; with ``noise_record`` the dose and the noise; the truth).
    """
    lowdose = {
        "format": "simulated (napari-lowdose, abTEM)",
        "path": "",
        "pixel_size_A": [sampling_A, sampling_A],
        "pixel_size_source": "simulation",
        "dose": None,
        "dose_hints": {},
        "warnings": [],
        "truth": truth,
    }
    if noise_record is not None:
        dose = FrameDose([noise_record["dose_e_per_A2"]], "metadata", "simulation")
        lowdose["dose"] = dose.to_metadata()
        lowdose["dose_hints"] = {"counts_per_electron": 1.0}
        lowdose["noise"] = noise_record
    metadata = {LOWDOSE_KEY: lowdose}
    calibration = image_layer_kwargs((sampling_A, sampling_A), 2)
    if layer is not None and layer in viewer.layers:
        layer.data = data
        layer.scale = calibration["scale"]
        layer.units = calibration["units"]
        layer.axis_labels = calibration["axis_labels"]
        layer.metadata = metadata
        if kind == "image":
            layer.reset_contrast_limits()
        return layer
    if kind == "image":
        layer = viewer.add_image(data, name=name, metadata=metadata, **calibration)
    else:
        layer = viewer.add_labels(data, name=name, metadata=metadata, opacity=0.3, **calibration)
    # Framed on the preview, not on every layer: beside a real series of micrometres the
    # few nanometres of a preview would be a dot.
    viewer.reset_view(layers=[layer])
    return layer
