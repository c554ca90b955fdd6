"""The MTF noise models of Larsen et al. (2023), Table 3, and two beyond it.

MTF 1 … MTF 5, each with ``N0 ∈ [0.005, 0.015]`` e⁻/px; MTF 4 (the paper's
training recipe, :meth:`~.model.NoiseModel.training_model`) performed best.
``DIRECT`` is a direct-detector-like MTF (nearly flat, c0 0.7–0.9, N0 ≈ 0.001
e⁻/px); ``WIDE`` spans all of them (c0 0.2–0.9, c3 1–5, N0 0.0008–0.015 e⁻/px), for
networks that must hold up on any of these detectors (the validation battery,
:mod:`napari_lowdose.workflows.battery`).
"""

from __future__ import annotations

from .model import NoiseModel

__all__ = ["PRESETS", "preset"]


def _preset(number: int, c0: tuple[float, float], c3: tuple[float, float]) -> NoiseModel:
    return NoiseModel(
        name=f"MTF{number}",
        c0_range=c0,
        c3_range=c3,
        n0_range_e_per_px=(0.005, 0.015),
        n0_e_per_px=0.01,
        source="preset",
        description=f"Larsen et al. (2023), Table 3, MTF {number}",
    )


#: The MTF models of Larsen et al. (2023), Table 3 (MTF 4 performed best).
PRESETS: dict[str, NoiseModel] = {
    m.name: m
    for m in (
        _preset(1, (0.4, 0.6), (2.0, 3.0)),
        _preset(2, (0.4, 0.6), (1.0, 5.0)),
        _preset(3, (0.2, 0.3), (1.0, 5.0)),
        _preset(4, (0.25, 0.6), (2.0, 5.0)),
        _preset(5, (0.6, 0.8), (2.0, 5.0)),
    )
}
PRESETS["DIRECT"] = NoiseModel(
    name="DIRECT", c0_range=(0.7, 0.9), c3_range=(2.0, 5.0),
    n0_range_e_per_px=(0.0008, 0.0012), n0_e_per_px=0.001, source="preset",
    description="direct-detector-like MTF (c0 0.7–0.9, N0 ≈ 0.001 e⁻/px)")
PRESETS["WIDE"] = NoiseModel(
    name="WIDE", c0_range=(0.2, 0.9), c3_range=(1.0, 5.0),
    n0_range_e_per_px=(0.0008, 0.015), n0_e_per_px=0.008, source="preset",
    description="Table 3's MTF 1–5 and a direct detector together (c0 0.2–0.9, c3 1–5, "
                "N0 0.0008–0.015 e⁻/px)")


def preset(name: str) -> NoiseModel:
    """Table 3 preset by name (``"MTF4"``, ``"MTF 4"``, ``"mtf4"`` or ``"4"``).

    Parameters
    ----------
    name : str
        Preset name (also ``"direct"`` and ``"wide"``).

    Returns
    -------
    NoiseModel
        The preset.
    """
    key = str(name).replace(" ", "").upper()
    if key not in PRESETS and not key.startswith("MTF"):
        key = "MTF" + key
    try:
        return PRESETS[key]
    except KeyError:
        raise ValueError(f"unknown noise preset {name!r}; choose from {list(PRESETS)}") from None
