"""Fixtures for handler tests under moto: a fake Lambda context, AWS mocks, events, EMF output."""

from __future__ import annotations

import functools
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


def event_sink(bus: str) -> str:
    """Route every `driftloop` event on `bus` to a new SQS queue; returns the queue URL."""
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"sink-{bus}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    if bus != "default":
        events.create_event_bus(Name=bus)
    events.put_rule(
        Name="sink", EventBusName=bus, EventPattern=json.dumps({"source": ["driftloop"]})
    )
    events.put_targets(Rule="sink", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return url


def received_events(queue_url: str) -> list[dict[str, Any]]:
    """Drain the sink queue: the EventBridge events delivered so far."""
    import boto3

    sqs = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def make_table(name: str = "state") -> None:
    import boto3

    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def checkpoint(table: str, pk: str) -> str | None:
    import boto3

    item = boto3.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": pk}}).get("Item")
    return item["window_end"]["S"] if item else None


# --- data for the scheduled checks ---------------------------------------------------------------

FEATURES = ("income", "age", "region")
REGIONS = ("north", "south", "east", "west")


def loan_schema() -> Any:
    from driftloop.schema import Schema

    return Schema(
        features=FEATURES, categorical=frozenset({"region"}), target="default", problem="binary"
    )


def loan_rows(rng: Any, n: int, *, shift: float = 0.0) -> tuple[Any, Any, Any, Any]:
    """`n` rows of (income, age, region) and a score; `shift` moves income by that many sds."""
    import numpy as np

    income = rng.normal(50.0 + 10.0 * shift, 10.0, n)
    age = rng.uniform(20.0, 70.0, n)
    region = rng.choice(np.array(REGIONS, dtype=object), n)
    score = 1.0 / (1.0 + np.exp(-(income - 50.0) / 10.0))
    return income, age, region, score


def loan_baseline(seed: int = 0, n: int = 2000, metrics: dict[str, float] | None = None) -> Any:
    """The baseline profile of `n` stable rows (built once per arguments, then copied)."""
    from driftloop.profile import DatasetProfile

    chosen = metrics if metrics is not None else {"auc": 0.85, "accuracy": 0.8}
    return DatasetProfile.from_json(_baseline_json(seed, n, tuple(sorted(chosen.items()))))


@functools.lru_cache(maxsize=16)
def _baseline_json(seed: int, n: int, metrics: tuple[tuple[str, float], ...]) -> bytes:
    import numpy as np

    from driftloop.batch import FeatureBatch
    from driftloop.profile import build_baseline

    income, age, region, score = loan_rows(np.random.default_rng(seed), n)
    batch = FeatureBatch(
        columns={"income": income, "age": age, "region": region}, n_rows=n, predictions=score
    )
    return bytes(build_baseline([batch], loan_schema(), n_bins=20, metrics=dict(metrics)).to_json())


def capture_lines(
    rng: Any,
    n: int,
    when: Any,
    *,
    shift: float = 0.0,
    id_prefix: str = "e",
    inference_ids: bool = False,
) -> tuple[bytes, list[str], list[float]]:
    """`n` one-row capture records at `when`; returns the bytes, the row ids and the scores."""
    from driftloop.capture import encode_capture_record

    income, age, region, score = loan_rows(rng, n, shift=shift)
    out, ids = [], []
    for i in range(n):
        eid = f"{id_prefix}-{i}"
        inf_id = f"inf-{eid}" if inference_ids else None
        out.append(
            encode_capture_record(
                input_data=f"{income[i]:.4f},{age[i]:.2f},{region[i]}".encode(),
                input_content_type="text/csv",
                output_data=f"{score[i]:.6f}".encode(),
                output_content_type="text/csv",
                event_id=eid,
                inference_time=when,
                inference_id=inf_id,
            )
        )
        ids.append(inf_id or eid)
    return b"".join(out), ids, [float(s) for s in score]
