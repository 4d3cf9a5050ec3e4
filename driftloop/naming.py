"""The names driftloop gives the SageMaker resources its retraining workflow creates.

One definition for both sides of a contract: the workflow's steps create training jobs,
processing jobs, models and endpoint configs with these names, and the infra scopes the
IAM statements that allow those calls to the same prefix. A SageMaker name is at most 63
characters of `[A-Za-z0-9-]`; the endpoint's part is cut to ENDPOINT_PART characters so
that kind, time, run hash and a retry suffix always fit, and the IAM resource is
`{name_prefix(endpoint)}*` with the cut applied, never the full endpoint name (a name that
IAM would not match is an AccessDenied on the first retraining).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

SAGEMAKER_NAME_MAX = 63
# endpoint part (30) + "-" + kind (<= 5) + "-" + yyyymmddHHMMSS (14) + "-" + hash (8) = 60,
# which leaves 3 characters for a retry suffix ("-a" + one digit) on a task's attempts.
ENDPOINT_PART = 30
KINDS = ("train", "eval", "model")


def _safe(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text)[:limit].strip("-") or "driftloop"


def name_prefix(endpoint: str) -> str:
    """What every workflow-created SageMaker name of this endpoint starts with (IAM scope)."""
    return f"{_safe(endpoint, ENDPOINT_PART)}-"


def resource_name(endpoint: str, kind: str, run_id: str, when: datetime) -> str:
    """A SageMaker name (<= 60 of [A-Za-z0-9-]) unique per run: endpoint, kind, time, run hash."""
    if kind not in KINDS:
        raise ValueError(f"unknown SageMaker resource kind {kind!r} (known: {KINDS})")
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{name_prefix(endpoint)}{kind}-{when.strftime('%Y%m%d%H%M%S')}-{digest}"
