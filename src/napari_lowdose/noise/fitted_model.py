"""Noise models made from a fit: their name and description (the same words from
``fit-noise`` and the Detector-noise dock) and the training model of a fit (MTF 4 recipe)."""

from __future__ import annotations

from typing import Any

from .fit_result import NoiseFitResult
from .model import NoiseModel

__all__ = ["fit_description", "fitted_model_name", "training_model_from_fit"]


def fitted_model_name(source: str) -> str:
    """The name of a noise model fitted to ``source`` (a file or a layer): ``fit of …``."""
    return f"fit of {source}"


def fit_description(what: str, result: NoiseFitResult) -> str:
    """What a fitted model was fitted to and how, e.g. ``ROI (0, 64, 0, 64), paper model,
    magnitude spectrum``: ``fit-noise`` and the Detector-noise dock write the same."""
    return f"{what}, {result.model} model, {result.spectrum_kind} spectrum"


def training_model_from_fit(
    result: NoiseFitResult,
    *,
    name: str = "fitted (training)",
    c0_upper_at_least: float = 0.5,
    n0_rel_spread: float = 0.5,
    **from_fit_kwargs: Any,
) -> NoiseModel:
    """Fit result → training model by the MTF 4 recipe.

    Shorthand for ``NoiseModel.from_fit(result, **from_fit_kwargs)
    .training_model(...)``; see :meth:`NoiseModel.training_model`.

    Parameters
    ----------
    result : NoiseFitResult
        Series fit.
    name : str, optional
        Name of the training model.
    c0_upper_at_least, n0_rel_spread : float, optional
        Recipe parameters (0.5 q_N, ± 50 %).
    **from_fit_kwargs
        Passed to :meth:`NoiseModel.from_fit`.

    Returns
    -------
    NoiseModel
        The training model.
    """
    fitted = NoiseModel.from_fit(result, **from_fit_kwargs)
    return fitted.training_model(
        c0_upper_at_least=c0_upper_at_least, n0_rel_spread=n0_rel_spread, name=name
    )
