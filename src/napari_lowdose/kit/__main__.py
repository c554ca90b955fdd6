"""``python -m napari_lowdose.kit``: the device kit (docs/device-kit.md)."""

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from .config import full_config, tiny_config
from .run import run_kit


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the kit, return 0 (the results say what failed)."""
    parser = argparse.ArgumentParser(prog="python -m napari_lowdose.kit",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "kit-out")),
                        help="results folder (default $OUT, else kit-out)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lowdose-kit"),
                        help="scratch folder for exit waves and models")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="total wall-clock budget in seconds (default 540; tiny 60)")
    parser.add_argument("--tiny", action="store_true",
                        help="the CPU dry run: every stage at tiny sizes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--structures", type=int, default=None, help="exit waves wanted")
    parser.add_argument("--no-shipped", action="store_true",
                        help="evaluate only the new networks")
    args = parser.parse_args(argv)
    # A hard stop (timeout's SIGTERM) unwinds like an error, so the results are written.
    signal.signal(signal.SIGTERM, _stop)
    changes = {}
    if args.budget_s is not None:
        changes["budget_s"] = args.budget_s
    if args.structures is not None:
        changes["n_structures"] = args.structures
    if args.no_shipped:
        changes["shipped"] = False
    config = (tiny_config if args.tiny else full_config)(**changes)
    command = os.environ.get("LOWDOSE_KIT_COMMAND") or shlex.join(
        ["python", "-m", "napari_lowdose.kit", *(sys.argv[1:] if argv is None else argv)])
    run_kit(config, args.out, args.work, command=command, device_name=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
