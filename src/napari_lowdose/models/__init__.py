"""Segmentation networks (MSD-net, U-net; Larsen et al. 2023) and the low-dose denoiser
(Katsuno et al. 2021)."""

from .denoiser import DenoiserUNet
from .msdnet import MSDNet, NaiveMSDNet, draw_dilations
from .unet import UNet, UNetBlock

__all__ = ["DenoiserUNet", "MSDNet", "NaiveMSDNet", "UNet", "UNetBlock", "draw_dilations"]
