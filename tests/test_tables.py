"""The one CSV writer of per-frame tables."""

import csv
import io

import numpy as np
import pytest

from napari_lowdose.io.tables import table_to_csv


def test_table_round_trips_through_csv_with_exact_numbers():
    table = {
        "frame": np.arange(3),
        "dose_e_per_A2": np.array([0.1, 1 / 3, 1e6]),
        "in_converged_band": np.array([False, True, True]),
        "note": ["a", "b,c", "d"],
    }
    rows = list(csv.DictReader(io.StringIO(table_to_csv(table))))
    assert list(rows[0]) == list(table)
    assert [int(r["frame"]) for r in rows] == [0, 1, 2]
    assert [float(r["dose_e_per_A2"]) for r in rows] == table["dose_e_per_A2"].tolist()
    assert [r["in_converged_band"] for r in rows] == ["false", "true", "true"]
    assert rows[1]["note"] == "b,c"


def test_columns_of_different_length_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        table_to_csv({"a": [1, 2], "b": [1]})
