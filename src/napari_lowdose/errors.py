"""Exceptions raised by the readers and the dose calibration."""


class LowdoseError(Exception):
    """Base class of the errors napari-lowdose reports to users in one line."""


class SeriesReadError(LowdoseError):
    """A file could not be read as a TEM image series."""


class UnsupportedFormatError(SeriesReadError):
    """The file's extension is not one napari-lowdose reads."""


class DoseCalibrationError(LowdoseError):
    """A dose table or dose parameters are invalid for a series."""
