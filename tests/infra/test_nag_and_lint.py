"""Security and template hygiene: cdk-nag (AwsSolutions) and cfn-lint on every template."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT, Synth

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


def test_cdk_nag_reports_nothing_unacknowledged(synth: Synth) -> None:
    # Given the app synthesized with AwsSolutionsChecks registered as a validation plugin
    report_path = synth.outdir / "validation-report.json"
    # When the validation report is read (synthesis would also have failed on a finding)
    report = json.loads(report_path.read_text())
    # Then no plugin reports a violation
    violations = [
        (v.get("ruleName"), r.get("constructPath"))
        for plugin in report.get("pluginReports", [])
        for v in plugin.get("violations", [])
        for r in v.get("violatingResources", [])
    ]
    assert violations == []


def test_cdk_nag_is_registered_and_acknowledgements_carry_reasons(synth: Synth) -> None:
    # Given the construct tree's acknowledgement metadata
    import aws_cdk as cdk

    app = cdk.App.of(synth.stacks["stateful"])
    assert app is not None
    acks: dict[str, str] = {}
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in (entry.data or {}).items():
                    acks[f"{construct.node.path}:{rule}"] = str(reason)
    # Then there are acknowledgements, each with a real sentence as its reason
    assert len(acks) > 10
    for where, reason in acks.items():
        assert len(reason) > 30, where
    # And no blanket acknowledgement of a whole granular rule
    assert not any(k.endswith((":AwsSolutions-IAM5", ":AwsSolutions-IAM4")) for k in acks)


# The templates are region-agnostic; lint them for a few regions that have every service
# driftloop uses (cfn-lint's all-regions mode flags SageMaker as missing in new regions,
# which the image mapping lists because the SDK does).
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    # Given every synthesized template
    from cfnlint.api import ManualArgs, lint
    from cfnlint.match import Match

    problems: list[str] = []
    for role, path in synth.files.items():
        # When cfn-lint checks it
        matches: list[Match] = lint(path.read_text(), config=ManualArgs(regions=LINT_REGIONS))
        # Then there is no error (E-rule); warnings are printed for the reader
        for m in matches:
            line = f"{role}: {m.rule.id} {m.message} ({m.linenumber})"
            if m.rule.id.startswith("E"):
                problems.append(line)
            elif m.rule.id.startswith("W"):
                print(line)
    assert problems == []


@pytest.mark.slow
def test_cdk_cli_synth_offline_without_credentials(tmp_path: Path) -> None:
    # Given an environment with no AWS credentials, profile or region at all
    if shutil.which("npx") is None:
        pytest.skip("npx is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env["HOME"] = str(tmp_path)  # no ~/.aws either
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    env["CDK_DISABLE_VERSION_CHECK"] = "1"
    out = tmp_path / "cdk.out"
    # When the CDK CLI synthesizes the app as a user would
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "-q", "--no-notices", "--output", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Then it succeeds and writes every stack's template
    assert result.returncode == 0, result.stderr[-3000:]
    names = {p.name for p in out.glob("*.template.json")}
    assert {"DriftloopStateful.template.json", "DriftloopModel.template.json"} <= names
    assert "DriftloopMonitoring.template.json" in names
