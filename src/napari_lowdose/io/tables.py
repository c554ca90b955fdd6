"""Per-frame tables as CSV text: one writer for every table napari-lowdose exports.

Columns carry their units in their names (``dose_e_per_A2``, ``area_nm2``).
Numbers are written with full precision (``repr``), booleans as ``true`` /
``false``, NaN as ``nan``; the text round-trips through ``csv`` and pandas.
"""

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["csv_cell", "table_to_csv"]


def csv_cell(value: Any) -> str:
    """One CSV cell: exact numbers, lower-case booleans, text as is."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def table_to_csv(table: Mapping[str, Sequence[Any] | np.ndarray]) -> str:
    """CSV text of a column table (all columns the same length), header first."""
    names = list(table)
    lengths = {len(table[name]) for name in names}
    if len(lengths) > 1:
        raise ValueError(f"table columns differ in length: {sorted(lengths)}")
    n_rows = lengths.pop() if lengths else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in range(n_rows):
        writer.writerow([csv_cell(table[name][row]) for name in names])
    return buffer.getvalue()
