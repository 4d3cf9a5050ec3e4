"""The feature schema: which columns a request carries, in what order, and of what kind.

SageMaker sends CSV requests without a header, so the order of the features is part of
the contract between the endpoint, the capture files and the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftloop.errors import DriftloopError

PROBLEMS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Schema:
    """Feature order and kinds. Every feature not listed as categorical is numeric."""

    features: tuple[str, ...]
    categorical: frozenset[str] = field(default_factory=frozenset)
    target: str | None = None
    problem: str = "binary"

    def __post_init__(self) -> None:
        if not self.features:
            raise DriftloopError("schema: no features")
        if len(set(self.features)) != len(self.features):
            raise DriftloopError(f"schema: duplicate feature names in {list(self.features)}")
        unknown = set(self.categorical) - set(self.features)
        if unknown:
            raise DriftloopError(
                f"schema: categorical columns not among the features: {sorted(unknown)}"
            )
        if self.target is not None and self.target in self.features:
            raise DriftloopError(f"schema: target {self.target!r} is also a feature")
        if self.problem not in PROBLEMS:
            raise DriftloopError(f"schema: problem must be one of {PROBLEMS}, not {self.problem!r}")

    def is_categorical(self, name: str) -> bool:
        return name in self.categorical

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(f for f in self.features if f not in self.categorical)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "categorical": [f for f in self.features if f in self.categorical],
            "target": self.target,
            "problem": self.problem,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        try:
            return cls(
                features=tuple(d["features"]),
                categorical=frozenset(d.get("categorical", ())),
                target=d.get("target"),
                problem=d.get("problem", "binary"),
            )
        except (KeyError, TypeError) as exc:
            raise DriftloopError(f"schema: malformed schema object ({exc})") from exc
