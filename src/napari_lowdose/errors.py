"""The errors napari-lowdose reports to users, and how they are reported: in one line.

Nothing heavy is imported here, so any module can raise these cheaply.
"""

#: Longest reason kept for a file or frame that cannot be handled (a log column, a list).
REASON_MAX_CHARS = 160


def one_line(err: BaseException, *, max_chars: int | None = None) -> str:
    """The first line of an error's message (its type's name when it has none).

    Every face reports a failure this way: a notification, a status line, a log row or
    the command line's ``napari-lowdose: error: …``, never a traceback.

    Parameters
    ----------
    err : BaseException
        The error.
    max_chars : int, optional
        Cut the line to this many characters.

    Returns
    -------
    str
    """
    text = str(err).strip() or type(err).__name__
    line = text.splitlines()[0]
    return line if max_chars is None else line[:max_chars]


def short_reason(err: BaseException) -> str:
    """Why a file or frame could not be handled: :func:`one_line`, at most
    :data:`REASON_MAX_CHARS` characters (for a log column or a list of failures)."""
    return one_line(err, max_chars=REASON_MAX_CHARS)


class LowdoseError(Exception):
    """Base class of the errors napari-lowdose reports to users in one line."""


class SeriesReadError(LowdoseError):
    """A file could not be read as a TEM image series."""


class UnsupportedFormatError(SeriesReadError):
    """The file's extension is not one napari-lowdose reads."""


class DoseCalibrationError(LowdoseError):
    """A dose table or dose parameters are invalid for a series."""
