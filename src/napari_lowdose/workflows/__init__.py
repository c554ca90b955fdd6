"""Headless use cases that both faces (the ``napari-lowdose`` command and the napari docks)
call with plain arguments, and the rules they share.

- :mod:`.policies`: the detector-gain rule and a series' expected e⁻/px for the denoiser
  (electrons per pixel themselves are :func:`napari_lowdose.io.units.electrons_per_pixel`);
- :mod:`.segmentation`: the files, run record and calibrated threshold of a segmentation;
- :mod:`.demo`: the demo's record and its summaries.

Nothing here imports argparse, Qt or napari.
"""
