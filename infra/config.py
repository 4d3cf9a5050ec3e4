"""The one typed, validated configuration of a driftloop deployment.

`app.py` reads the CDK context (cdk.json, `cdk synth -c key=value`) exactly once into a
frozen `DriftloopConfig` and passes it down; nothing under `infra/` reads the context or
the environment itself. Every value is checked here, so a typo in cdk.json is a one-line
error naming the key, not a half-synthesized template or a failed CloudFormation update
an hour later. Values given with `-c` arrive as strings; numbers and JSON objects are
parsed from them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from driftloop.errors import DriftloopError

# ml.<family>.<size>, e.g. ml.m5.large, ml.c6i.2xlarge, ml.g5.12xlarge.
INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.(?:[0-9]*x?large|medium|small|micro|metal)$")
# A prebuilt SageMaker scikit-learn container version, e.g. 1.2-1, 1.4-2-py312.
SKLEARN_VERSION_RE = re.compile(r"^\d+\.\d+(?:\.\d+)?(?:-\d+)?(?:-py3\d+)?$")
RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON_RE = re.compile(r"^cron\(([^()]+)\)$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
S3_URL_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$")
STACK_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,39}$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# The fields of driftloop.drift.DriftConfig and driftloop.quality.QualityConfig that a
# deployment may set; the Lambdas receive them as JSON (DRIFT_CONFIG / QUALITY_CONFIG).
# Fields left out keep the library's defaults.
DRIFT_UNIT_FIELDS = (
    "fdr",
    "numeric_threshold",
    "categorical_threshold",
    "unseen_threshold",
    "missing_threshold",
    "drift_share",
)
DRIFT_FIELDS = (*DRIFT_UNIT_FIELDS, "psi_threshold", "min_rows", "critical_features")
QUALITY_FIELDS = ("problem", "metric", "max_drop", "min_labels", "threshold")
QUALITY_METRICS = (
    "accuracy", "precision", "recall", "f0_5", "f1", "f2", "auc",
    "mae", "mse", "rmse", "r2",
)  # fmt: skip


def _fail(key: str, message: str, value: Any) -> DriftloopError:
    return DriftloopError(f"cdk.json context '{key}': {message} (got {value!r})")


def _as_int(key: str, value: Any, *, low: int, high: int | None = None) -> int:
    parsed: Any = value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        parsed = int(value.strip())
    if isinstance(parsed, float) and parsed.is_integer():
        parsed = int(parsed)
    if isinstance(parsed, bool) or not isinstance(parsed, int):
        raise _fail(key, "must be an integer", value)
    if parsed < low or (high is not None and parsed > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise _fail(key, f"must be {bound}", value)
    return parsed


def _as_float(key: str, value: Any, *, low: float, high: float, low_open: bool = False) -> float:
    parsed: Any = value
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            raise _fail(key, "must be a number", value) from None
    if isinstance(parsed, bool) or not isinstance(parsed, int | float):
        raise _fail(key, "must be a number", value)
    parsed = float(parsed)
    too_low = parsed <= low if low_open else parsed < low
    if not math.isfinite(parsed) or too_low or parsed > high:
        left = "(" if low_open else "["
        raise _fail(key, f"must be in {left}{low:g}, {high:g}]", value)
    return parsed


def _as_str(key: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(key, f"must be {what}", value)
    return value


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _fail(key, "must be true or false", value)


def _as_object(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _fail(key, "must be a JSON object", value) from None
    if not isinstance(value, dict):
        raise _fail(key, "must be a JSON object", value)
    return dict(value)


def validate_schedule(key: str, value: Any) -> str:
    """An EventBridge schedule expression: `rate(N unit)` (N >= 1) or a 6-field `cron(...)`."""
    if not isinstance(value, str):
        raise _fail(key, "must be a schedule expression such as 'rate(1 hour)'", value)
    rate = RATE_RE.fullmatch(value)
    if rate:
        n, unit = int(rate.group(1)), rate.group(2)
        if n < 1:
            raise _fail(key, "rate must be at least 1", value)
        if (n == 1) != (not unit.endswith("s")):
            raise _fail(key, "use 'rate(1 hour)' / 'rate(2 hours)' (singular only for 1)", value)
        return value
    cron = CRON_RE.fullmatch(value)
    if cron and len(cron.group(1).split()) == 6:
        return value
    raise _fail(
        key, "must be 'rate(N minutes|hours|days)' or a 6-field 'cron(m h dom mon dow y)'", value
    )


def _drift_settings(key: str, value: Any) -> dict[str, Any]:
    raw = _as_object(key, value)
    unknown = sorted(set(raw) - set(DRIFT_FIELDS))
    if unknown:
        raise _fail(key, f"unknown fields {unknown} (known: {list(DRIFT_FIELDS)})", raw)
    out: dict[str, Any] = {}
    for name, item in raw.items():
        where = f"{key}.{name}"
        if name in DRIFT_UNIT_FIELDS:
            out[name] = _as_float(where, item, low=0.0, high=1.0, low_open=True)
        elif name == "psi_threshold":
            out[name] = _as_float(where, item, low=0.0, high=10.0, low_open=True)
        elif name == "min_rows":
            out[name] = _as_int(where, item, low=1)
        else:  # critical_features
            if not isinstance(item, list) or not all(isinstance(f, str) and f for f in item):
                raise _fail(where, "must be a list of feature names", item)
            out[name] = list(item)
    return out


def _quality_settings(key: str, value: Any) -> dict[str, Any]:
    raw = _as_object(key, value)
    unknown = sorted(set(raw) - set(QUALITY_FIELDS))
    if unknown:
        raise _fail(key, f"unknown fields {unknown} (known: {list(QUALITY_FIELDS)})", raw)
    out: dict[str, Any] = {}
    for name, item in raw.items():
        where = f"{key}.{name}"
        if name == "problem":
            if item not in ("binary", "regression"):
                raise _fail(where, "must be 'binary' or 'regression'", item)
            out[name] = item
        elif name == "metric":
            if item not in QUALITY_METRICS:
                raise _fail(where, f"must be one of {list(QUALITY_METRICS)}", item)
            out[name] = item
        elif name == "max_drop":
            out[name] = _as_float(where, item, low=0.0, high=math.inf)
        elif name == "min_labels":
            out[name] = _as_int(where, item, low=1)
        else:  # threshold
            out[name] = _as_float(where, item, low=0.0, high=1.0)
    return out


@dataclass(frozen=True)
class DriftloopConfig:
    """Everything a deployment may choose; defaults are the cdk.json defaults.

    The stacks are environment-agnostic unless `account` and `region` are both given: the
    scikit-learn image URI then comes from a region mapping built from the SageMaker SDK's
    tables, resolved by CloudFormation at deploy time.
    """

    stack_prefix: str = "Driftloop"
    account: str | None = None
    region: str | None = None
    # -- serving
    sklearn_version: str = "1.4-2-py312"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    max_instance_count: int = 2
    invocations_per_instance: int = 1000  # target-tracking target, per instance per minute
    sampling_percentage: int = 100
    model_data_url: str | None = None  # default: s3://{artifacts}/models/initial/model.tar.gz
    # -- blue/green deployment guardrails
    canary_percent: int = 10
    canary_wait_seconds: int = 600
    termination_wait_seconds: int = 300
    max_deploy_seconds: int = 3600
    rollback_5xx_threshold: int = 1  # 5xx errors per minute on the new fleet that roll back
    rollback_latency_ms: int = 1000  # p99 ModelLatency that rolls back
    # -- scheduled checks
    drift_schedule: str = "rate(1 hour)"
    quality_schedule: str = "rate(6 hours)"
    window_hours: int = 1
    grace_minutes: int = 15
    label_delay_hours: int = 24
    drift: Mapping[str, Any] = field(default_factory=dict)
    quality: Mapping[str, Any] = field(default_factory=dict)
    lambda_memory_mb: int = 1024
    lambda_timeout_seconds: int = 900
    log_level: str = "INFO"
    alert_email: str | None = None
    # -- storage lifecycle
    capture_ia_days: int = 30
    capture_glacier_days: int = 90
    capture_expire_days: int = 365
    noncurrent_expire_days: int = 30
    log_expire_days: int = 365
    # -- retraining
    retrain_schedule: str | None = None
    cooldown_minutes: int = 360
    lookback_hours: int = 168
    gate_metric: str = "auc"
    min_improvement: float = 0.0
    train_instance_type: str = "ml.m5.large"
    train_volume_gb: int = 30
    train_max_runtime_minutes: int = 120
    evaluate_instance_type: str = "ml.m5.large"
    workflow_timeout_hours: int = 12

    def __post_init__(self) -> None:
        if self.max_instance_count < self.instance_count:
            raise _fail(
                "max_instance_count",
                f"must be >= instance_count ({self.instance_count})",
                self.max_instance_count,
            )
        if not self.capture_ia_days < self.capture_glacier_days < self.capture_expire_days:
            raise _fail(
                "capture_expire_days",
                "lifecycle days must grow: capture_ia_days < capture_glacier_days "
                f"< capture_expire_days ({self.capture_ia_days}, {self.capture_glacier_days})",
                self.capture_expire_days,
            )
        if self.grace_minutes >= self.window_hours * 60:
            raise _fail("grace_minutes", "must be shorter than a window", self.grace_minutes)
        if (self.account is None) != (self.region is None):
            raise _fail("account", "give both 'account' and 'region', or neither", self.account)

    @property
    def env_agnostic(self) -> bool:
        return self.region is None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> DriftloopConfig:
        """Build the config from CDK context; keys the config does not know are errors.

        CDK's own feature flags (`@aws-cdk/...`) and other namespaced keys (with ':' or
        '/') are left to the CDK.
        """
        known = {f.name for f in fields(cls)}
        ours = {k: v for k, v in context.items() if not k.startswith("@") and ":" not in k}
        unknown = sorted(set(ours) - known)
        if unknown:
            raise DriftloopError(
                f"cdk.json context: unknown key(s) {unknown}; known keys: {sorted(known)}"
            )
        values: dict[str, Any] = {}
        for key, value in ours.items():
            values[key] = _PARSERS[key](key, value)
        return cls(**values)


def _optional(parse: Any) -> Any:
    def inner(key: str, value: Any) -> Any:
        return None if value is None or value == "" else parse(key, value)

    return inner


def _int(low: int, high: int | None = None) -> Any:
    return lambda key, value: _as_int(key, value, low=low, high=high)


def _instance_type(key: str, value: Any) -> str:
    return _as_str(key, value, INSTANCE_TYPE_RE, "a SageMaker instance type such as ml.m5.large")


def _gate_metric(key: str, value: Any) -> str:
    if value not in QUALITY_METRICS:
        raise _fail(key, f"must be one of {list(QUALITY_METRICS)}", value)
    return str(value)


_PARSERS: dict[str, Any] = {
    "stack_prefix": lambda k, v: _as_str(
        k, v, STACK_PREFIX_RE, "letters, digits and '-', starting with a letter (max 40)"
    ),
    "account": _optional(lambda k, v: _as_str(k, str(v), ACCOUNT_RE, "a 12-digit account id")),
    "region": _optional(lambda k, v: _as_str(k, v, REGION_RE, "an AWS region such as eu-west-1")),
    "sklearn_version": lambda k, v: _as_str(
        k, v, SKLEARN_VERSION_RE, "a SageMaker scikit-learn container version such as 1.4-2-py312"
    ),
    "instance_type": _instance_type,
    "instance_count": _int(1, 100),
    "max_instance_count": _int(1, 100),
    "invocations_per_instance": _int(1),
    "sampling_percentage": _int(0, 100),
    "model_data_url": _optional(
        lambda k, v: _as_str(k, v, S3_URL_RE, "an s3://bucket/key URL of a model.tar.gz")
    ),
    "canary_percent": _int(1, 99),
    "canary_wait_seconds": _int(0, 3600),
    "termination_wait_seconds": _int(0, 3600),
    "max_deploy_seconds": _int(600, 14400),
    "rollback_5xx_threshold": _int(1),
    "rollback_latency_ms": _int(1),
    "drift_schedule": validate_schedule,
    "quality_schedule": validate_schedule,
    "window_hours": _int(1, 168),
    "grace_minutes": _int(0, 1440),
    "label_delay_hours": _int(0, 24 * 90),
    "drift": _drift_settings,
    "quality": _quality_settings,
    "lambda_memory_mb": _int(128, 10240),
    "lambda_timeout_seconds": _int(1, 900),
    "log_level": lambda k, v: _as_str(
        k, v, re.compile("|".join(LOG_LEVELS)), f"one of {list(LOG_LEVELS)}"
    ),
    "alert_email": _optional(lambda k, v: _as_str(k, v, EMAIL_RE, "an e-mail address")),
    "capture_ia_days": _int(30),  # S3 refuses STANDARD_IA transitions before 30 days
    "capture_glacier_days": _int(1),
    "capture_expire_days": _int(1),
    "noncurrent_expire_days": _int(1),
    "log_expire_days": _int(1),
    "retrain_schedule": _optional(validate_schedule),
    "cooldown_minutes": _int(0, 60 * 24 * 30),
    "lookback_hours": _int(1, 24 * 365),
    "gate_metric": _gate_metric,
    "min_improvement": lambda k, v: _as_float(k, v, low=0.0, high=1e6),
    "train_instance_type": _instance_type,
    "train_volume_gb": _int(1, 16384),
    "train_max_runtime_minutes": _int(1, 60 * 24 * 5),
    "evaluate_instance_type": _instance_type,
    "workflow_timeout_hours": _int(1, 24 * 7),
}
