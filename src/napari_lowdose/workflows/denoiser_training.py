"""Training a denoiser as both faces start it: the defaults of ``napari-lowdose
train-denoiser`` and of the Train-denoiser dock, and the simulated training and validation
sets (Katsuno et al. 2021: L1 loss, Adam 10⁻⁴, random crops, best-PSNR checkpoint).
"""

from dataclasses import dataclass
from pathlib import Path

from ..errors import LowdoseError

__all__ = ["DENOISER_TRAINING_DEFAULTS", "DenoiserTrainingDefaults", "phantom_datasets",
           "simulated_datasets", "validation_crop_px"]


@dataclass(frozen=True)
class DenoiserTrainingDefaults:
    """The defaults of a denoiser training run, read by the command's options and the dock.

    Attributes
    ----------
    epochs : int
        Passes over the training items.
    crop_px : int
        Side of the random training crops.
    max_val_images : int
        Validation items.
    batch_size : int
        Crops per step.
    learning_rate : float
        Adam learning rate (Katsuno et al. 2021: 10⁻⁴).
    seed : int
        Seed of the weights, the crops and the order of the items.
    max_frame_gap : int
        Noise2Noise on a series: pair frames at most this far apart.
    images_per_wave : int
        Simulated source: optics draws per exit wave and epoch.
    clean_cache : int
        Simulated source: noise-free images kept in memory.
    steps_per_epoch : int or None
        Cap on the steps of one epoch (None: one pass over the items).
    own_val_fraction : float
        Fine-tuning on the user's own field: share of its rows held out for validation.
    own_phantom_share : float
        Fine-tuning on the user's own field: phantom pairs mixed in per item of the field
        (:func:`napari_lowdose.train.denoise_own.field_datasets`; docs/models.md).
    phantoms : int
        Phantom source: phantom items per epoch.
    """

    epochs: int = 10
    crop_px: int = 128
    max_val_images: int = 16
    batch_size: int = 8
    learning_rate: float = 1e-4
    seed: int = 0
    max_frame_gap: int = 1
    images_per_wave: int = 4
    clean_cache: int = 512
    steps_per_epoch: int | None = None
    own_val_fraction: float = 0.25
    own_phantom_share: float = 1.0
    phantoms: int = 2048


#: The one set of defaults both faces read.
DENOISER_TRAINING_DEFAULTS = DenoiserTrainingDefaults()


def validation_crop_px(crop_px: int, val_crop_px: int | None) -> int | None:
    """Side of the central validation crops: 2 × the training crop by default, 0 = whole.

    Parameters
    ----------
    crop_px : int
        Side of the training crops.
    val_crop_px : int or None
        The user's choice: None for the default, 0 for whole frames.

    Returns
    -------
    int or None
        None means whole frames.
    """
    return 2 * crop_px if val_crop_px is None else (val_crop_px or None)


def simulated_datasets(data: Path, *, crop_px: int, val_crop_px: int | None, seed: int,
                       dose_range_e_per_A2: tuple[float, float] | None,
                       e_per_px_range: tuple[float, float] | None,
                       images_per_wave: int, clean_cache: int, max_waves: int | None,
                       notes: list[str]):
    """Training and validation pairs drawn from a simulated dataset's exit waves.

    Validation uses the dataset's validation structures, or, when it has none, other
    draws (optics, dose, noise) of the training waves; ``notes`` then says so.

    Parameters
    ----------
    data : Path
        A dataset folder made by ``napari-lowdose simulate``.
    crop_px, val_crop_px : int
        Sides of the training and validation crops (:func:`validation_crop_px`).
    seed : int
        Seed of the draws.
    dose_range_e_per_A2, e_per_px_range : (float, float) or None
        Frame dose range (one of them; default the shipped denoiser's e⁻/px range).
    images_per_wave, clean_cache, max_waves : int
        See :class:`~napari_lowdose.train.denoise_simulated.SimulatedPairs`.
    notes : list of str
        Appended to.

    Returns
    -------
    (SimulatedPairs, SimulatedPairs)
    """
    from ..train.denoise_simulated import DEFAULT_E_PER_PX_RANGE, SimulatedPairs

    common = {"dose_range_e_per_A2": dose_range_e_per_A2,
              "e_per_px_range": e_per_px_range or DEFAULT_E_PER_PX_RANGE,
              "images_per_wave": images_per_wave, "clean_cache": clean_cache}
    train = SimulatedPairs(data, "train", crop_px=crop_px, seed=seed, max_waves=max_waves,
                           **common)
    try:
        val = SimulatedPairs(data, "val", crop_px=val_crop_px, augment=False, seed=seed + 1,
                             **common)
    except LowdoseError:
        val = None
    if val is None or len(val) == 0:
        notes.append("the dataset has no validation structures: validating on other "
                     "draws of the training waves")
        val = SimulatedPairs(data, "train", crop_px=val_crop_px, augment=False,
                             seed=seed + 1, max_waves=max_waves, **common)
    return train, val


def phantom_datasets(*, n_phantoms: int, crop_px: int, val_crop_px: int | None, seed: int,
                     e_per_px_range: tuple[float, float] | None, max_val_images: int,
                     data: Path | None = None, images_per_wave: int = 4,
                     clean_cache: int = 512, max_waves: int | None = None,
                     notes: list[str] | None = None):
    """Phantom pairs with detector excess noise, mixed with a simulated dataset if given.

    Training: ``n_phantoms`` fresh phantoms per epoch
    (:class:`~napari_lowdose.train.denoise_phantoms.PhantomPairs`: aggregates, supports,
    lattice patches; the ``WIDE`` noise model and scintillator excess noise), interleaved
    with the exit-wave pairs of ``data`` when given (:func:`simulated_datasets`, with their
    own noise model). Validation: ``max_val_images`` fixed phantoms, interleaved with the
    dataset's validation pairs.

    Parameters
    ----------
    n_phantoms : int
        Phantom items per epoch.
    crop_px, val_crop_px : int
        Sides of the training and validation crops (:func:`validation_crop_px`).
    seed : int
        Seed of the draws.
    e_per_px_range : (float, float) or None
        Log-uniform e⁻/px range (default the shipped denoiser's).
    max_val_images : int
        Phantom validation items.
    data : Path, optional
        A dataset folder made by ``napari-lowdose simulate`` to mix in.
    images_per_wave, clean_cache, max_waves : int
        See :func:`simulated_datasets`.
    notes : list of str, optional
        Appended to.

    Returns
    -------
    (Dataset, Dataset)
        ``PhantomPairs`` alone, or ``MixedPairs`` of phantoms and exit waves.
    """
    from ..train.denoise_phantoms import MixedPairs, PhantomPairs
    from ..train.denoise_simulated import DEFAULT_E_PER_PX_RANGE

    e_range = e_per_px_range or DEFAULT_E_PER_PX_RANGE
    train = PhantomPairs(n_phantoms, e_per_px_range=e_range, crop_px=crop_px, seed=seed)
    val = PhantomPairs(max_val_images, e_per_px_range=e_range, crop_px=val_crop_px,
                       augment=False, seed=seed + 1)
    if data is None:
        return train, val
    sim_train, sim_val = simulated_datasets(
        data, crop_px=crop_px, val_crop_px=val_crop_px, seed=seed, dose_range_e_per_A2=None,
        e_per_px_range=e_range, images_per_wave=images_per_wave, clean_cache=clean_cache,
        max_waves=max_waves, notes=notes if notes is not None else [])
    return MixedPairs([train, sim_train]), MixedPairs([val, sim_val])
