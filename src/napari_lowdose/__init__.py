"""napari-lowdose: interactive low-dose HR-TEM analysis in napari."""

__version__ = "0.1.0"
