"""One synthesis of the whole CDK app per test session, shared by every infra test.

Synthesis starts jsii's Node process and bundles the Lambda code: seconds, so it happens
once (session scope) with the context from cdk.json, into a temporary cloud assembly.
cdk-nag runs during that synthesis; an unacknowledged finding fails it, with the list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

ROOT = Path(__file__).resolve().parents[2]


def cdk_context(**overrides: Any) -> dict[str, Any]:
    """The context block of cdk.json, with overrides."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    return {**context, **overrides}


@dataclass
class Synth:
    outdir: Path
    config: Any
    stacks: dict[str, Any]
    templates: dict[str, dict[str, Any]]  # by role: stateful, model, monitoring, ...
    files: dict[str, Path]  # template file by role

    def template(self, role: str) -> Any:
        from aws_cdk.assertions import Template

        return Template.from_json(self.templates[role])


def synthesize(outdir: Path, **overrides: Any) -> Synth:
    import aws_cdk as cdk

    from infra.config import DriftloopConfig
    from infra.stacks import build_app

    app = cdk.App(context=cdk_context(**overrides), outdir=str(outdir))
    config = DriftloopConfig.from_context(app.node.get_all_context())
    stacks = build_app(app, config)
    assembly = app.synth()
    templates, files = {}, {}
    for role, stack in stacks.items():
        artifact = assembly.get_stack_by_name(stack.stack_name)
        templates[role] = artifact.template
        files[role] = Path(assembly.directory) / artifact.template_file
    return Synth(outdir=outdir, config=config, stacks=stacks, templates=templates, files=files)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    yield synthesize(tmp_path_factory.mktemp("cdk-out"))


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def only(template: dict[str, Any], type_: str) -> dict[str, Any]:
    found = resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))
