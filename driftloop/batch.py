"""A chunk of rows held column-wise: what the readers yield and the profiler consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class FeatureBatch:
    """Rows of features, column by column.

    Numeric columns are float64 with NaN for a missing value (an unparseable value is
    counted as malformed by the reader and also stored as NaN only if the reader chose to
    keep the row); categorical columns are object arrays of str with None for missing.

    `codes` may hold categorical columns a second time, dictionary-encoded: name ->
    (int32 codes, -1 for missing; distinct names), so that counting them is a bincount.
    A reader that has them sets it; `columns[name]` is always the same data as
    `names[codes]`, so a consumer may use either, and whoever changes a column drops
    the batch's codes.
    """

    columns: dict[str, np.ndarray]
    n_rows: int
    predictions: np.ndarray | None = None
    event_ids: list[str] | None = None
    inference_ids: list[str | None] | None = None
    inference_times: np.ndarray | None = None
    codes: dict[str, tuple[np.ndarray, list[str]]] | None = None

    def rows(self, a: int, b: int) -> FeatureBatch:
        """Rows a to b (views where the fields are arrays)."""
        return FeatureBatch(
            columns={k: v[a:b] for k, v in self.columns.items()},
            n_rows=len(range(self.n_rows)[a:b]),
            predictions=None if self.predictions is None else self.predictions[a:b],
            event_ids=None if self.event_ids is None else self.event_ids[a:b],
            inference_ids=None if self.inference_ids is None else self.inference_ids[a:b],
            inference_times=None if self.inference_times is None else self.inference_times[a:b],
            codes=(
                None
                if self.codes is None
                else {k: (c[a:b], names) for k, (c, names) in self.codes.items()}
            ),
        )


def concat_batches(batches: list[FeatureBatch]) -> FeatureBatch | None:
    """The rows of `batches` one after another (None for no batches).

    Columns are taken from the first batch; an optional field is kept only when every
    batch has it, and `codes` (which each batch numbers its own way) is dropped.
    """
    if not batches:
        return None
    if len(batches) == 1:
        return batches[0]

    def joined(field: str) -> np.ndarray | None:
        parts = [getattr(b, field) for b in batches]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    def listed(field: str) -> list[Any] | None:
        parts = [getattr(b, field) for b in batches]
        return None if any(p is None for p in parts) else [x for p in parts for x in p]

    return FeatureBatch(
        columns={
            name: np.concatenate([b.columns[name] for b in batches]) for name in batches[0].columns
        },
        n_rows=sum(b.n_rows for b in batches),
        predictions=joined("predictions"),
        event_ids=listed("event_ids"),
        inference_ids=listed("inference_ids"),
        inference_times=joined("inference_times"),
    )
