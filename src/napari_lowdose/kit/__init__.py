"""The device kit: one time-boxed command that simulates, trains, evaluates and benchmarks
on a lent GPU machine and writes everything back in a few files (docs/device-kit.md).

Run with ``bash scripts/device-kit.sh`` (installs the carried wheels first) or
``python -m napari_lowdose.kit``.
"""
