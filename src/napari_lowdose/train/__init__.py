"""Training of the segmentation networks (Larsen et al. 2023) and the denoiser
(Katsuno et al. 2021).

Submodules are imported explicitly (``from napari_lowdose.device import
select_device``); this package imports none of them itself.
"""
