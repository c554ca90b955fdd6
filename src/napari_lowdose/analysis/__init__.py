"""Analysis of segmented dose series: masks, area against dose, convergence, F1 (Larsen 2023)."""

from .area_vs_dose import (
    AREA_TABLE_COLUMNS,
    PARTICLE_COLUMN,
    WHOLE_FIELD,
    AreaAnalysis,
    analyse_area_vs_dose,
    area_per_frame,
    convergence_dose,
    dose_at_fraction,
    f1_per_frame,
    pixel_area_nm2,
    table_blocks,
)
from .masks import MaskCleaning, clean_mask, probability_mask

__all__ = [
    "AREA_TABLE_COLUMNS",
    "PARTICLE_COLUMN",
    "WHOLE_FIELD",
    "AreaAnalysis",
    "MaskCleaning",
    "analyse_area_vs_dose",
    "area_per_frame",
    "clean_mask",
    "convergence_dose",
    "dose_at_fraction",
    "f1_per_frame",
    "pixel_area_nm2",
    "probability_mask",
    "table_blocks",
]
