"""What a result was made with: the versions block every run record carries.

Each output of napari-lowdose (a run's ``summary.json``, ``denoise.json``, a
simulated dataset's card, a trained model's metadata) records the versions of
the packages that determined it, so a number in a paper can be traced back to
the software that produced it. This module imports nothing heavy itself: the
version of a package is read from its installed distribution.
"""

from importlib import metadata

from . import __version__

__all__ = ["RUN_PACKAGES", "package_versions", "training_versions"]

#: Packages that determine a segmentation or denoising run.
RUN_PACKAGES = ("torch", "numpy")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def package_versions(*names: str) -> dict[str, str]:
    """``{"napari-lowdose": version, name: version, ...}`` for the named packages.

    Parameters
    ----------
    *names : str
        Distribution names (e.g. ``"torch"``, ``"abtem"``); default :data:`RUN_PACKAGES`.

    Returns
    -------
    dict of str to str
        napari-lowdose's version first, then each package's, in the order given.
    """
    versions = {"napari-lowdose": __version__}
    for name in names or RUN_PACKAGES:
        versions[name] = _version(name)
    return versions


def training_versions() -> dict[str, str]:
    """The versions a trained model's ``training`` record holds (keys of model format 1)."""
    return {"torch": _version("torch"), "napari_lowdose": __version__}
