"""The AWS edge shared by every driftloop Lambda: environment, clients, S3, state table, events.

Handlers stay thin by leaning on these helpers. Clients are created lazily, on first use,
so a test (or the local loop) can set the environment and start moto before any client
exists; `reset_clients()` drops them between tests. Nothing here computes statistics.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson

from driftloop.errors import DriftloopError
from driftloop.windows import format_iso, parse_iso

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sfn import SFNClient

# Capture files above this size are spooled to /tmp instead of memory while they are read.
SPOOL_BYTES = 16 * 1024 * 1024

_clients: dict[str, Any] = {}


class ConfigError(DriftloopError):
    """The function's environment is missing or malformed (a deployment bug, not bad data)."""


# --- environment ---------------------------------------------------------------------------------


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    raise ConfigError(f"environment variable {name} is not set")


def env_int(name: str, default: int | None = None, *, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError(f"environment variable {name} is not set")
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(
            f"environment variable {name} must be a whole number, not {raw!r}"
        ) from exc
    if value < minimum:
        raise ConfigError(f"environment variable {name} must be >= {minimum}, not {value}")
    return value


def env_float(name: str, default: float | None = None) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError(f"environment variable {name} is not set")
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} must be a number, not {raw!r}") from exc


def env_json(name: str, default: Any = None) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError(f"environment variable {name} is not set")
        return default
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"environment variable {name} is not valid JSON: {exc}") from exc


def env_time(name: str) -> datetime | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_iso(raw, where=f"environment variable {name}")
    except DriftloopError as exc:
        raise ConfigError(str(exc)) from exc


def event_time(event: Any) -> datetime:
    """The event's `time` (set by EventBridge, or by the local loop's clock), else now.

    Using the event's time makes a run reproducible: a retried invocation of the same
    scheduled event plans the same windows.
    """
    raw = event.get("time") if isinstance(event, dict) else None
    if isinstance(raw, str) and raw:
        return parse_iso(raw, where="event time")
    return datetime.now(UTC)


# --- clients -------------------------------------------------------------------------------------


def client(service: str) -> Any:
    """A cached boto3 client (region and endpoint from the standard AWS environment)."""
    if service not in _clients:
        import boto3  # lazily: tests start moto first

        _clients[service] = boto3.client(service)  # type: ignore[call-overload]
    return _clients[service]


def s3() -> S3Client:
    return client("s3")  # type: ignore[no-any-return]


def dynamodb() -> DynamoDBClient:
    return client("dynamodb")  # type: ignore[no-any-return]


def events() -> EventBridgeClient:
    return client("events")  # type: ignore[no-any-return]


def sfn() -> SFNClient:
    return client("stepfunctions")  # type: ignore[no-any-return]


def sagemaker() -> SageMakerClient:
    return client("sagemaker")  # type: ignore[no-any-return]


def reset_clients() -> None:
    """Forget cached clients (tests start a fresh moto per test)."""
    _clients.clear()


# --- S3 ------------------------------------------------------------------------------------------


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise DriftloopError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise DriftloopError(f"no bucket in {uri!r}")
    return bucket, key


def list_keys(bucket: str, prefix: str) -> Iterator[str]:
    """Every key under `prefix`, in S3's (lexicographic) order."""
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def list_subfolders(bucket: str, prefix: str) -> list[str]:
    """The immediate "folders" under `prefix` (which must end with '/'), as full prefixes."""
    out: list[str] = []
    pages = (
        s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    )
    for page in pages:
        out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return out


def is_missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


def get_bytes(bucket: str, key: str) -> bytes:
    return s3().get_object(Bucket=bucket, Key=key)["Body"].read()


def download(bucket: str, key: str) -> IO[bytes]:
    """The object as a seekable binary file, in memory up to SPOOL_BYTES, then in /tmp."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # the caller closes it
    # One streamed GET: the transfer manager behind download_fileobj adds threads and a
    # HEAD per object, which dominates for the many small files data capture writes.
    body = s3().get_object(Bucket=bucket, Key=key)["Body"]
    shutil.copyfileobj(body, spool, 1 << 20)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def put_bytes(bucket: str, key: str, body: bytes, content_type: str) -> str:
    s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return f"s3://{bucket}/{key}"


def put_json(bucket: str, key: str, doc: Any) -> str:
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    return put_bytes(bucket, key, body, "application/json")


# --- state table ---------------------------------------------------------------------------------


def get_checkpoint(table: str, pk: str) -> datetime | None:
    """The checkpoint's `window_end` (None when the check never ran)."""
    item = (
        dynamodb().get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
    )
    if not item or "window_end" not in item:
        return None
    return parse_iso(item["window_end"]["S"], where=f"state table {table} item {pk}")


def advance_checkpoint(table: str, pk: str, previous: datetime | None, new: datetime) -> bool:
    """Move the checkpoint from `previous` to `new` only if nobody moved it meanwhile.

    A conditional write on the previous value: of two concurrent runs that checked the
    same window, exactly one advances it. Returns False for the loser.
    """
    item = {
        "pk": {"S": pk},
        "window_end": {"S": format_iso(new)},
        "updated_at": {"S": format_iso(datetime.now(UTC))},
    }
    if previous is None:
        condition, values = "attribute_not_exists(pk)", None
    else:
        condition, values = "window_end = :prev", {":prev": {"S": format_iso(previous)}}
    kwargs: dict[str, Any] = {"TableName": table, "Item": item, "ConditionExpression": condition}
    if values:
        kwargs["ExpressionAttributeValues"] = values
    try:
        dynamodb().put_item(**kwargs)
    except Exception as exc:
        if _error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    return _error_code(exc)


# --- EventBridge ---------------------------------------------------------------------------------


def put_event(
    bus: str, detail_type: str, detail: dict[str, Any], *, source: str = "driftloop"
) -> str:
    """Put one event; raise if EventBridge reports the entry failed. Returns the event id."""
    resp = events().put_events(
        Entries=[
            {
                "Source": source,
                "DetailType": detail_type,
                "Detail": orjson.dumps(detail, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                "EventBusName": bus,
            }
        ]
    )
    entry = resp["Entries"][0] if resp.get("Entries") else {}
    if resp.get("FailedEntryCount", 0) or "EventId" not in entry:
        raise DriftloopError(
            f"EventBridge rejected the {detail_type!r} event on bus {bus}: "
            f"{entry.get('ErrorCode', '?')} {entry.get('ErrorMessage', '')}"
        )
    return entry["EventId"]


# --- Lambda context ------------------------------------------------------------------------------


def remaining_ms(context: Any) -> int | None:
    """Milliseconds left in this invocation (None when there is no Lambda context)."""
    fn = getattr(context, "get_remaining_time_in_millis", None)
    return int(fn()) if callable(fn) else None
