"""DriftloopConfig: cdk.json context in, one clear error naming the key for bad values."""

from __future__ import annotations

from typing import Any

import pytest

from driftloop.errors import DriftloopError
from infra.config import DriftloopConfig, validate_schedule
from tests.infra.conftest import cdk_context

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


def test_the_cdk_json_defaults_are_valid() -> None:
    # Given the context block shipped in cdk.json (plus CDK feature flags)
    context = cdk_context()
    # When it is parsed
    config = DriftloopConfig.from_context(context)
    # Then it equals the dataclass defaults (cdk.json documents them, nothing differs)
    assert config == DriftloopConfig()
    assert config.env_agnostic


def test_strings_from_the_command_line_are_parsed() -> None:
    # Given values as `cdk synth -c key=value` delivers them (strings)
    context = {
        "instance_count": "2",
        "max_instance_count": "4",
        "min_improvement": "0.01",
        "drift": '{"fdr": 0.1, "min_rows": "500", "critical_features": ["income"]}',
        "quality": '{"metric": "f1", "max_drop": 0.02}',
        "alert_email": "ops@example.com",
        "retrain_schedule": "cron(0 3 ? * MON *)",
    }
    # When parsed
    config = DriftloopConfig.from_context(context)
    # Then they carry the right types
    assert config.instance_count == 2 and config.max_instance_count == 4
    assert config.min_improvement == pytest.approx(0.01)
    assert config.drift == {"fdr": 0.1, "min_rows": 500, "critical_features": ["income"]}
    assert config.quality == {"metric": "f1", "max_drop": 0.02}
    assert config.alert_email == "ops@example.com"
    assert config.retrain_schedule == "cron(0 3 ? * MON *)"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("instance_type", "m5.large", "instance type"),
        ("instance_type", "ml.m5", "instance type"),
        ("train_instance_type", "ml.M5.large", "instance type"),
        ("instance_count", 0, "between 1 and 100"),
        ("instance_count", "two", "integer"),
        ("instance_count", 1.5, "integer"),
        ("instance_count", True, "integer"),
        ("sampling_percentage", 101, "between 0 and 100"),
        ("sampling_percentage", -1, "between 0 and 100"),
        ("drift_schedule", "every hour", "rate("),
        ("drift_schedule", "rate(0 hours)", "at least 1"),
        ("quality_schedule", "rate(1 hours)", "singular"),
        ("quality_schedule", "cron(0 3 * * ?)", "6-field"),
        ("window_hours", 0, "between 1 and 168"),
        ("cooldown_minutes", -5, "between 0"),
        ("alert_email", "not-an-address", "e-mail"),
        ("sklearn_version", "latest", "scikit-learn container version"),
        ("model_data_url", "https://bucket/model.tar.gz", "s3://"),
        ("drift", {"fdr": 1.5}, "(0, 1]"),
        ("drift", {"numeric_threshold": 0}, "(0, 1]"),
        ("drift", {"min_rows": 0}, ">= 1"),
        ("drift", {"bogus": 1}, "unknown fields"),
        ("drift", "[1, 2]", "JSON object"),
        ("quality", {"metric": "accuracyy"}, "one of"),
        ("quality", {"threshold": 2}, "[0, 1]"),
        ("gate_metric", "loss", "one of"),
        ("min_improvement", -0.1, "[0,"),
        ("canary_percent", 100, "between 1 and 99"),
        ("max_deploy_seconds", 60, "between 600 and 14400"),
        ("capture_ia_days", 7, ">= 30"),
        ("log_level", "LOUD", "one of"),
        ("region", "moon-1", "AWS region"),
        ("stack_prefix", "1abc", "starting with a letter"),
    ],
)
def test_bad_values_name_the_key(key: str, value: Any, fragment: str) -> None:
    # Given one bad value
    # When the context is parsed
    with pytest.raises(DriftloopError) as err:
        DriftloopConfig.from_context({key: value})
    # Then the one-line error names the key and says what is expected
    message = str(err.value)
    assert f"'{key}" in message and fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"instance_count": 3, "max_instance_count": 2}, "max_instance_count"),
        ({"capture_glacier_days": 400}, "capture_expire_days"),
        ({"window_hours": 1, "grace_minutes": 60}, "grace_minutes"),
        ({"account": "123456789012"}, "account"),
    ],
)
def test_inconsistent_values_name_a_key(context: dict[str, Any], key: str) -> None:
    # Given values that are fine alone but not together
    # When parsed
    with pytest.raises(DriftloopError, match=f"'{key}'"):
        DriftloopConfig.from_context(context)


def test_unknown_keys_are_rejected_but_cdk_flags_pass() -> None:
    # Given a typo next to a CDK feature flag and a CLI-injected key
    context = {
        "instance_typ": "ml.m5.large",
        "@aws-cdk/core:x": True,
        "aws:cdk:enable-path-metadata": True,
    }
    # When parsed
    # Then the typo is named, the CDK's own keys are not
    with pytest.raises(DriftloopError, match="instance_typ"):
        DriftloopConfig.from_context(context)
    DriftloopConfig.from_context({k: v for k, v in context.items() if k != "instance_typ"})


@pytest.mark.parametrize(
    "expression", ["rate(1 minute)", "rate(5 minutes)", "rate(1 day)", "cron(15 * * * ? *)"]
)
def test_valid_schedules(expression: str) -> None:
    assert validate_schedule("drift_schedule", expression) == expression


def test_a_pinned_environment_needs_account_and_region() -> None:
    # Given both account and region
    config = DriftloopConfig.from_context({"account": "123456789012", "region": "eu-west-1"})
    # Then the stacks are pinned (not environment-agnostic)
    assert not config.env_agnostic and config.region == "eu-west-1"


@pytest.mark.slow
def test_app_py_stops_with_one_line_naming_the_key() -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.infra.conftest import ROOT

    # Given a bad value passed the way the CDK CLI passes context to the app
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(cdk_context(instance_count=0))}
    # When app.py runs
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    # Then it exits 2 with one line naming the key, and no traceback
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("driftloop:")]
    assert errors == [
        "driftloop: cdk.json context 'instance_count': must be between 1 and 100 (got 0)"
    ]
    assert "Traceback" not in result.stderr
