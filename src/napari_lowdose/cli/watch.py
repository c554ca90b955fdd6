"""``napari-lowdose watch DIR``: denoise frames while an acquisition program writes them.

In-situ mode after Katsuno et al. (2021): every file that appears in ``DIR``
is taken once it is complete (:mod:`napari_lowdose.insitu.folder`), each of its
frames is denoised (:class:`~napari_lowdose.insitu.FrameDenoiser`) and written
to ``--out`` with a per-frame log (:class:`~napari_lowdose.insitu.InSituOutput`).
The sustained rate and the backlog are printed as it goes; no frame is dropped
silently: a file that cannot be read or a frame that fails is logged, printed,
and makes the exit status 1.
"""

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import LowdoseError

__all__ = ["add_watch_parser", "cmd_watch"]


class WatchError(LowdoseError):
    """The watch cannot start with these options."""


def add_watch_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-lowdose watch``."""
    from ..insitu.folder import DEFAULT_SETTLE_S  # the in-situ package reads files (dask)

    watch = sub.add_parser(
        "watch", help="denoise frames as an acquisition program writes them into a folder",
        description="Watch DIR and denoise every frame written into it (TIFF, MRC, DM, SER, "
                    "EMD, .npy), once each file is complete; results go to --out as "
                    "<name>_denoised.tif with a per-frame watch_log.csv. Ctrl-C stops. "
                    "Exit status 1 when any file could not be read or denoised (each is "
                    "named in watch_log.csv), else 0.")
    watch.add_argument("folder", type=Path, metavar="DIR", help="folder the camera writes to")
    watch.add_argument("--out", type=Path, required=True, metavar="OUT",
                       help="output folder (denoised files and watch_log.csv)")
    watch.add_argument("--model", default=None, metavar="NAME|PATH",
                       help="denoiser (default: the shipped one; see 'napari-lowdose models')")
    watch.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    watch.add_argument("--dose-e-per-A2", type=float, metavar="D",
                       help="dose of every frame (default: from the files, else the frame mean)")
    watch.add_argument("--pixel-size-A", type=float, metavar="S",
                       help="pixel size (default: from the files)")
    watch.add_argument("--counts-per-electron", type=float, metavar="G",
                       help="detector gain (default: the gain the files state, else 1: frames "
                            "in electrons)")
    watch.add_argument("--existing", choices=["process", "skip"], default="process",
                       help="files already in DIR at the start (default: process)")
    watch.add_argument("--order", choices=["name", "mtime"], default="name",
                       help="order of files ready together (default: natural name order)")
    watch.add_argument("--settle-s", type=float, default=DEFAULT_SETTLE_S, metavar="S",
                       help="a file is complete when unchanged this long (default %(default)s s; "
                            "longer than the camera's longest pause within a file)")
    watch.add_argument("--poll-s", type=float, default=0.2, metavar="S",
                       help="how often the folder is listed (default 0.2 s)")
    watch.add_argument("--idle-timeout-s", type=float, metavar="S",
                       help="stop after this long with nothing to do (default: run until "
                            "Ctrl-C)")
    watch.add_argument("--report-s", type=float, default=5.0, metavar="S",
                       help="print the rate and backlog this often (default 5 s)")
    watch.add_argument("--overwrite", action="store_true",
                       help="replace denoised files of the same name in OUT (default: number "
                            "the new ones)")
    watch.set_defaults(func=cmd_watch)


def _check(args: argparse.Namespace) -> None:
    if not args.folder.is_dir():
        raise WatchError(f"{args.folder} is not a folder")
    if args.out.resolve() == args.folder.resolve():
        raise WatchError("--out must not be the watched folder (the results would be "
                         "watched too); use a sub-folder or another folder")
    flags = {"settle_s": "--settle-s", "poll_s": "--poll-s", "report_s": "--report-s",
             "counts_per_electron": "--counts-per-electron", "dose_e_per_A2": "--dose-e-per-A2",
             "pixel_size_A": "--pixel-size-A", "idle_timeout_s": "--idle-timeout-s"}
    for name, flag in flags.items():
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise WatchError(f"{flag} must be positive")


def cmd_watch(args: argparse.Namespace) -> int:
    """Watch, denoise, write and log until stopped; exit 1 if any frame failed."""
    from ..device import describe_device
    from ..insitu import FolderWatcher, FrameDenoiser, InSituOutput, WatchSession
    from ..models.registry import DEFAULT_DENOISER, load_denoiser

    _check(args)
    model_name = args.model or DEFAULT_DENOISER
    model, _ = load_denoiser(model_name, device="cpu")
    processor = FrameDenoiser(model, args.device, dose_e_per_A2=args.dose_e_per_A2,
                              pixel_size_A=args.pixel_size_A,
                              counts_per_electron=args.counts_per_electron)
    watcher = FolderWatcher(args.folder, settle_s=args.settle_s, poll_s=args.poll_s,
                            existing=args.existing, order=args.order)
    output = InSituOutput(args.out, overwrite=args.overwrite)
    session = WatchSession(
        watcher, processor, as_float32=True,
        on_result=lambda result, meta: output.add_frame(
            meta["path"], meta["frame_index_in_file"], result, meta, session.stats))
    print(f"watching {args.folder} → {args.out} with {model_name} on "
          f"{describe_device(processor.device)}; Ctrl-C stops", file=sys.stderr)
    next_report = time.monotonic() + args.report_s
    interrupted = False
    # A service manager or a job queue stops a watch with SIGTERM: the same clean end as
    # Ctrl-C (the files and the log closed, the summary printed).
    previous_handler = _stop_on_sigterm()
    try:
        for event in session.run_iter(idle_timeout_s=args.idle_timeout_s, idle_yield_s=1.0):
            if event.failed:
                output.add_failure(event.result, event.stats)
                where = "" if event.result.frame_index is None else (
                    f" frame {event.result.frame_index}")
                print(f"warning: {event.result.path.name}{where}: {event.result.stage} failed: "
                      f"{event.result.reason}", file=sys.stderr)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + args.report_s
                print(event.stats.summary(), file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        output.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    stats = session.stats
    print(f"{'stopped: ' if interrupted else ''}{stats.summary()}; wrote "
          f"{len(output.written)} denoised file(s) and {output.log_path.name} to {args.out}")
    return 1 if stats.failures else 0


def _stop_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt (main thread only); return the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)
