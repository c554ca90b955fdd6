"""Training of the segmentation and denoising networks (SPEC §4).

Submodules are imported explicitly (``from napari_lowdose.device import
select_device``); this package imports none of them itself.
"""
