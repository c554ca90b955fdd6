"""Segmentation and denoising networks (SPEC §4)."""

from .msdnet import MSDNet, NaiveMSDNet, draw_dilations
from .unet import UNet, UNetBlock

__all__ = ["MSDNet", "NaiveMSDNet", "UNet", "UNetBlock", "draw_dilations"]
