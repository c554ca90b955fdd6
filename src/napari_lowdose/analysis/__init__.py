"""Analysis of segmented dose series: area against dose, convergence, F1 (SPEC §5)."""

from .area_vs_dose import (
    AREA_TABLE_COLUMNS,
    AreaAnalysis,
    analyse_area_vs_dose,
    area_per_frame,
    convergence_dose,
    dose_at_fraction,
    f1_per_frame,
)

__all__ = [
    "AREA_TABLE_COLUMNS",
    "AreaAnalysis",
    "analyse_area_vs_dose",
    "area_per_frame",
    "convergence_dose",
    "dose_at_fraction",
    "f1_per_frame",
]
