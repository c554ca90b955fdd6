"""Command-line interface: ``napari-lowdose COMMAND ...``.

The same steps as the napari widgets, headless (for batch work on a cluster
node): one module per command, each a thin face over the core. Errors are
printed as one line on stderr with a non-zero exit status.
"""

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import LowdoseError, one_line
from ._common import PROG, parse_roi
from .calibrate import add_calibrate_parser
from .demo import add_demo_parser
from .denoise import add_denoise_parser
from .evaluate import add_evaluate_parser
from .fit_noise import add_fit_noise_parser
from .info import add_info_parser
from .models import add_models_parser
from .segment import add_segment_parser
from .simulate import add_simulate_parser
from .train import add_train_parser
from .train_denoiser import add_train_denoiser_parser
from .watch import add_watch_parser

__all__ = ["build_parser", "main", "parse_roi"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-lowdose`` command."""
    parser = argparse.ArgumentParser(prog=PROG, description="Low-dose HR-TEM analysis, headless.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_info_parser(sub)
    add_fit_noise_parser(sub)
    add_demo_parser(sub)
    add_simulate_parser(sub)
    add_train_parser(sub)
    add_calibrate_parser(sub)
    add_models_parser(sub)
    add_segment_parser(sub)
    add_evaluate_parser(sub)
    add_train_denoiser_parser(sub)
    add_denoise_parser(sub)
    add_watch_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-lowdose`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LowdoseError as err:
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the system refused a file (disk full, read-only, permission)
        if args.debug:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"{PROG}: error: {err.strerror or one_line(err)}{where}", file=sys.stderr)
        return 1
    except Exception as err:
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(err).__name__}: {one_line(err)} "
              "(rerun with --debug for details)", file=sys.stderr)
        return 1


