"""A chunk of rows held column-wise: what the readers yield and the profiler consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureBatch:
    """Rows of features, column by column.

    Numeric columns are float64 with NaN for a missing value (an unparseable value is
    counted as malformed by the reader and also stored as NaN only if the reader chose to
    keep the row); categorical columns are object arrays of str with None for missing.
    """

    columns: dict[str, np.ndarray]
    n_rows: int
    predictions: np.ndarray | None = None
    event_ids: list[str] | None = None
    inference_ids: list[str | None] | None = None
    inference_times: np.ndarray | None = None
