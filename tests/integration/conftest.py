"""Fixtures for handler tests under moto: a fake Lambda context, AWS mocks, events, EMF output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parent.parent / "events"


@dataclass
class FakeLambdaContext:
    """What Powertools and the handlers read from a Lambda context; remaining time is settable."""

    function_name: str = "driftloop-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:driftloop-test"
    aws_request_id: str = "6f1c6a5e-0000-4000-8000-000000000000"
    remaining_ms: list[int] = field(default_factory=lambda: [900_000])

    def get_remaining_time_in_millis(self) -> int:
        # Pops a scripted sequence (the last value repeats) so tests can run out of time.
        return self.remaining_ms.pop(0) if len(self.remaining_ms) > 1 else self.remaining_ms[0]


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def aws() -> Iterator[None]:
    """A fresh moto world per test; handler clients are re-created inside it."""
    from moto import mock_aws

    from lambdas import _aws

    _aws.reset_clients()
    with mock_aws():
        yield
    _aws.reset_clients()


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """An event from tests/events/{name}.json with top-level fields replaced."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(overrides)
    return dict(event)


def emf_records(text: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format documents printed to stdout."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            out.append(doc)
    return out


def metric_values(records: list[dict[str, Any]], name: str, **dims: str) -> list[float]:
    """Every value of metric `name` (in documents whose dimensions match `dims`)."""
    values: list[float] = []
    for doc in records:
        names = {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
        if name not in names or any(doc.get(k) != v for k, v in dims.items()):
            continue
        value = doc[name]
        values.extend(value if isinstance(value, list) else [value])
    return values
