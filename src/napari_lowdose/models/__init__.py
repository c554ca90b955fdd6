"""Segmentation and denoising networks (SPEC §4)."""

from .denoiser import DenoiserUNet
from .msdnet import MSDNet, NaiveMSDNet, draw_dilations
from .unet import UNet, UNetBlock

__all__ = ["DenoiserUNet", "MSDNet", "NaiveMSDNet", "UNet", "UNetBlock", "draw_dilations"]
