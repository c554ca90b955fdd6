"""In-situ mode: denoise frames while an acquisition program writes them into a folder.

Katsuno et al. (2021) denoise at video rate so that beam-sensitive specimens can
be watched at low dose while they are acquired. This package is pure (no Qt,
no napari); the ``napari-lowdose watch DIR`` command and the Denoise widget's
live-folder mode both drive it.

:mod:`~napari_lowdose.insitu.folder`
    Which files are taken, complete files only, exactly once and in natural
    order (:class:`FolderWatcher`).
:mod:`~napari_lowdose.insitu.frames`
    Every frame of a ready file, with its metadata and dose
    (:func:`read_frames`).
:mod:`~napari_lowdose.insitu.session`
    Poll → read → process → callback, frame by frame, never skipping one
    (:class:`WatchSession`).
:mod:`~napari_lowdose.insitu.stats`
    Sustained rate, backlog and failures (:class:`RateMeter`,
    :class:`WatchStats`, :class:`Failure`).
:mod:`~napari_lowdose.insitu.denoiser`
    One frame in, one denoised frame out (:class:`FrameDenoiser`).
:mod:`~napari_lowdose.insitu.output`
    The output folder: denoised files and ``watch_log.csv``
    (:class:`InSituOutput`).
"""

from .denoiser import FrameDenoiser
from .folder import (
    DEFAULT_PATTERNS,
    DEFAULT_SETTLE_S,
    TEMPORARY_SUFFIXES,
    FolderWatcher,
    check_complete,
    is_temporary_name,
    natural_key,
)
from .frames import frame_metadata, read_frame, read_frames
from .output import LOG_COLUMNS, LOG_FILE, InSituOutput, output_name
from .session import WatchEvent, WatchSession
from .stats import Failure, RateMeter, WatchStats

__all__ = [
    "DEFAULT_PATTERNS",
    "DEFAULT_SETTLE_S",
    "LOG_COLUMNS",
    "LOG_FILE",
    "TEMPORARY_SUFFIXES",
    "Failure",
    "FolderWatcher",
    "FrameDenoiser",
    "InSituOutput",
    "RateMeter",
    "WatchEvent",
    "WatchSession",
    "WatchStats",
    "check_complete",
    "frame_metadata",
    "is_temporary_name",
    "natural_key",
    "output_name",
    "read_frame",
    "read_frames",
]
