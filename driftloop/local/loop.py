"""The local closed loop: weeks of a drifting world, replayed in minutes with no AWS account.

`python -m driftloop.local.loop` (`make demo`) plays the whole driftloop story on a
laptop: moto's server on 127.0.0.1 is AWS; the buckets and state table come from the
CDK app's own stateful template (CloudFormation on moto); the first model is trained
by the local script-mode runner and served by the local endpoint with data capture on;
then a simulated clock replays the traffic day by day. Mid-way the world changes
(covariate shift plus concept drift: borrowers get poorer and a rate shock makes
leverage matter more), so the serving model decays. The same Lambda handlers that run
in AWS check drift and quality on the EventBridge schedule, their events reach the
retraining trigger through an EventBridge rule with an SQS target, and the retraining
workflow runs its steps in the Step Functions definition's order: prepare data, train,
evaluate champion against challenger, gate, register, blue/green deploy (canary, bake,
shift or roll back), check. Labels arrive late, in the SageMaker ground-truth merge
format. Everything lands under --out: a mirror of every bucket, metrics.json and
timeline.html.

The loop's own code is orchestration only: it never computes a statistic or makes a
decision the deployed system would make differently.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.errors import DriftloopError
from driftloop.local.clock import Schedule, SimClock, iso
from driftloop.local.moto_server import MOTO_ACCOUNT_ID, MotoServer
from driftloop.local.progress import Progress, render_table

DEFAULT_DAYS = 14
MIN_DAYS = 14
DEFAULT_REQUESTS_PER_DAY = 72
ROWS_PER_REQUEST = 64
DEFAULT_SEED = 7
DEFAULT_OUT = Path("out/demo")
START = datetime(2026, 1, 1, tzinfo=UTC)
# A SageMaker endpoint writes capture in files per instance and period; the local one
# rolls its file every hour of simulated time (the folder granularity).
STACK_PREFIX = "DriftloopDemo"


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    """What a demo run does; the defaults are `make demo`."""

    days: int = DEFAULT_DAYS
    seed: int = DEFAULT_SEED
    out: Path = DEFAULT_OUT
    requests_per_day: int = DEFAULT_REQUESTS_PER_DAY
    rows_per_request: int = ROWS_PER_REQUEST
    onset_day: int | None = None  # default: half way
    train_rows: int = 5000
    quiet: bool = False
    min_days: int = MIN_DAYS  # the e2e test runs a shorter timeline

    def __post_init__(self) -> None:
        if self.days < self.min_days:
            raise DriftloopError(f"--days must be at least {self.min_days}, not {self.days}")
        if self.requests_per_day < 24:
            raise DriftloopError(
                f"--requests-per-day must be at least 24 (one an hour), not {self.requests_per_day}"
            )
        if self.rows_per_request < 1:
            raise DriftloopError("rows per request must be at least 1")
        onset = self.onset
        if not 2 <= onset <= self.days - 3:
            raise DriftloopError(
                f"drift onset day {onset} must leave two stable days and three drifted days"
            )

    @property
    def onset(self) -> int:
        return self.days // 2 if self.onset_day is None else self.onset_day

    @property
    def start(self) -> datetime:
        return START

    @property
    def end(self) -> datetime:
        return START + timedelta(days=self.days)

    @property
    def onset_time(self) -> datetime:
        return START + timedelta(days=self.onset)


def parse_args(argv: Sequence[str] | None = None) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop.local.loop",
        description="Run driftloop's closed loop locally (moto on 127.0.0.1, simulated clock).",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"simulated days to replay (>= {MIN_DAYS}; default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (data, models)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder (default %(default)s); replaced if it exists",
    )
    parser.add_argument(
        "--requests-per-day",
        type=int,
        default=DEFAULT_REQUESTS_PER_DAY,
        help=f"endpoint requests per simulated day, {ROWS_PER_REQUEST} rows each "
        "(default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary table")
    args = parser.parse_args(argv)
    try:
        return DemoOptions(
            days=args.days,
            seed=args.seed,
            out=args.out,
            requests_per_day=args.requests_per_day,
            quiet=args.quiet,
        )
    except DriftloopError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


# ---------------------------------------------------------------------------------------
# The world: demo data before and after the drift onset
# ---------------------------------------------------------------------------------------


def drifted_regime() -> Any:
    """The world after the onset: covariate shift and concept drift at once.

    Borrowers get poorer with weaker credit (covariate shift: the drift check sees it),
    and a rate shock makes leverage dominate while credit history counts for less and
    mortgages turn risky (concept drift: the old model's ranking decays, which only the
    late labels reveal).
    """
    from training import datagen

    return datagen.combine("covariate_shift", "concept_drift")


@dataclass
class Traffic:
    """Every row the demo sends, in request order, and how rows group into requests."""

    frame: Any  # pandas DataFrame: request_time, label_time, request, FEATURES..., default
    features: tuple[str, ...]
    target: str
    request_starts: np.ndarray  # row index where each request begins (plus len at the end)
    request_times: list[datetime]

    @property
    def n_requests(self) -> int:
        return len(self.request_times)

    @property
    def n_rows(self) -> int:
        return len(self.frame)


def make_traffic(options: DemoOptions, label_delay_hours: tuple[float, float]) -> Traffic:
    """Requests over the timeline, `rows_per_request` rows each, with late-arriving labels."""
    import pandas as pd

    from training import datagen

    rng = np.random.default_rng(options.seed + 1)
    n_requests = options.days * options.requests_per_day
    # Request times: uniform within each day, sorted.
    seconds = np.sort(rng.uniform(0, 86400, (options.days, options.requests_per_day)), axis=1)
    offsets = (np.arange(options.days)[:, None] * 86400 + seconds).ravel()
    request_time = options.start + pd.to_timedelta(np.floor(offsets), unit="s")
    shifted_requests = np.asarray(request_time >= pd.Timestamp(options.onset_time))
    per_row = np.repeat(shifted_requests, options.rows_per_request)
    frame = datagen.sample(rng, per_row, drifted_regime())
    frame.insert(0, "request", np.repeat(np.arange(n_requests), options.rows_per_request))
    row_times = np.repeat(np.asarray(request_time), options.rows_per_request)
    lo, hi = label_delay_hours
    delay = pd.to_timedelta(rng.uniform(lo * 3600, hi * 3600, len(frame)), unit="s")
    frame.insert(0, "label_time", pd.DatetimeIndex(row_times, tz=UTC) + delay)
    frame.insert(0, "request_time", pd.DatetimeIndex(row_times, tz=UTC))
    starts = np.arange(0, len(frame) + 1, options.rows_per_request)
    return Traffic(
        frame=frame,
        features=tuple(datagen.FEATURES),
        target=datagen.TARGET,
        request_starts=starts,
        request_times=[t.to_pydatetime() for t in request_time],
    )


def initial_training_data(options: DemoOptions, folder: Path) -> dict[str, Path]:
    """The seed model's data: the pre-drift world (train / validation / holdout CSVs)."""
    from training import datagen

    return datagen.write_dataset(
        folder, rows=options.train_rows, seed=options.seed, scenario="stable"
    )


# ---------------------------------------------------------------------------------------
# The deployment: what the CDK app would create, made real on moto
# ---------------------------------------------------------------------------------------

# The CDK context the demo synthesizes with: the cdk.json defaults, with the clock sped
# up so two weeks fit in minutes and the story fits in two weeks. Every other value is
# the deployed default.
DEMO_CONTEXT: dict[str, Any] = {
    "stack_prefix": STACK_PREFIX,
    "sampling_percentage": 100,  # the demo captures every request (so counts can be equal)
    "window_hours": 12,
    "drift_schedule": "rate(12 hours)",
    "quality_schedule": "rate(12 hours)",
    "grace_minutes": 15,
    "label_delay_hours": 6,
    # Longer than a quality verdict on pre-swap traffic takes to arrive (a window + the
    # label delay + a schedule period = 30 h): that late verdict must not retrain again.
    "cooldown_minutes": 36 * 60,
    "lookback_hours": 12,
    "canary_percent": 50,
    "canary_wait_seconds": 3600,
    "termination_wait_seconds": 300,
    "quality": {"max_drop": 0.07, "min_labels": 500},
}
# Labels arrive half an hour to 4 hours after the prediction in the demo world (inside
# label_delay_hours, so the quality check sees each window's labels).
LABEL_DELAY_HOURS = (0.5, 4.0)
# The simulated start of the schedules: the rules were created half an hour into the
# timeline, so each run comes a quarter of an hour after a window's grace period ends.
SCHEDULE_ANCHOR_OFFSET = timedelta(minutes=30)


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function as the CDK defines it: handler path and environment."""

    logical_id: str
    handler: str
    environment: dict[str, str]


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    expression: str
    handler: str


@dataclass
class LocalDeployment:
    """The resources the loop talks to (names on moto) and the settings the CDK chose."""

    source: str
    buckets: dict[str, str]
    table: str
    event_bus: str
    endpoint_name: str
    variant: str
    functions: dict[str, FunctionSpec]  # by handler path
    schedules: list[ScheduleSpec]
    event_patterns: list[dict[str, Any]]  # rules that target the retraining trigger
    deployment_config: dict[str, Any]
    capture_config: dict[str, Any]
    alarms: list[dict[str, Any]]  # CloudWatch alarm definitions (DescribeAlarms shape)
    state_machine_arn: str = ""
    state_machine_definition: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The model stack's SageMaker Model and EndpointConfig (CreateModel / CreateEndpointConfig
    # shapes, resolved), created on moto once the seed model exists.
    seed_model: dict[str, Any] | None = None
    seed_endpoint_config: dict[str, Any] | None = None
    image_uri: str = ""
    role_arn: str = ""
    function_arns: dict[str, str] = field(default_factory=dict)  # Lambda ARN -> handler

    def env(self, handler: str) -> dict[str, str]:
        spec = self.functions.get(handler)
        if spec is None:
            raise DriftloopError(f"deployment: no Lambda function with handler {handler}")
        return spec.environment


def _pseudo(region: str) -> dict[str, str]:
    return {
        "AWS::Region": region,
        "AWS::AccountId": MOTO_ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": "",
    }


class TemplateResolver:
    """Resolves CloudFormation intrinsics in a synthesized template to local values.

    `refs[(stack, logical_id)]` is what `Ref` gives; `attrs[(stack, logical_id)][name]`
    what `Fn::GetAtt` gives; `exports` the cross-stack exports (Fn::ImportValue).
    """

    def __init__(self, region: str) -> None:
        self.region = region
        self.refs: dict[tuple[str, str], str] = {}
        self.attrs: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        self.exports: dict[str, str] = {}
        self.mappings: dict[str, dict[str, Any]] = {}

    def resolve(self, value: Any, stack: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, stack) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(stack, arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(stack, logical, attr)
            if key == "Fn::ImportValue":
                name = self.resolve(arg, stack)
                if name not in self.exports:
                    raise DriftloopError(f"template {stack}: no export named {name!r}")
                return self.exports[name]
            if key == "Fn::Join":
                sep, parts = arg
                return str(sep).join(
                    str(self.resolve(p, stack)) for p in self.resolve(parts, stack)
                )
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items, stack)[int(self.resolve(index, stack))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text, stack)).split(sep)
            if key == "Fn::FindInMap":
                name, k1, k2 = (self.resolve(a, stack) for a in arg)
                return self.mappings[stack][name][k1][k2]
            if key == "Fn::Sub":
                return self._sub(stack, arg)
            if key.startswith("Fn::"):
                raise DriftloopError(f"template {stack}: cannot resolve {key} locally")
        return {k: self.resolve(v, stack) for k, v in value.items()}

    def _ref(self, stack: str, name: str) -> str:
        pseudo = _pseudo(self.region)
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::StackName":
            return stack
        if (stack, name) not in self.refs:
            raise DriftloopError(f"template {stack}: Ref to {name}, which the loop did not create")
        return self.refs[(stack, name)]

    def _get_att(self, stack: str, logical: str, attr: str) -> str:
        found = self.attrs.get((stack, logical), {})
        if attr not in found:
            raise DriftloopError(
                f"template {stack}: Fn::GetAtt {logical}.{attr}, which the loop did not create"
            )
        return found[attr]

    def _sub(self, stack: str, arg: Any) -> str:
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1], stack))
        out, i = [], 0
        while i < len(text):
            j = text.find("${", i)
            if j < 0:
                out.append(text[i:])
                break
            k = text.index("}", j)
            out.append(text[i:j])
            token = text[j + 2 : k]
            if token in names:
                out.append(str(names[token]))
            elif "." in token:
                logical, attr = token.split(".", 1)
                out.append(self._get_att(stack, logical, attr))
            else:
                out.append(self._ref(stack, token))
            i = k + 1
        return "".join(out)


def _arn(service: str, resource: str, region: str) -> str:
    return f"arn:aws:{service}:{region}:{MOTO_ACCOUNT_ID}:{resource}"


@dataclass
class SynthesizedApp:
    templates: dict[str, dict[str, Any]]  # role ("stateful", "model", ...) -> template
    stack_names: dict[str, str]
    config: Any  # infra.config.DriftloopConfig


REPO_ROOT = Path(__file__).resolve().parents[2]


def demo_context(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """cdk.json's context (feature flags and defaults) with the demo's values on top."""
    cdk_json = REPO_ROOT / "cdk.json"
    try:
        context = dict(json.loads(cdk_json.read_text(encoding="utf-8")).get("context", {}))
    except (OSError, ValueError) as exc:
        raise DriftloopError(f"{cdk_json}: cannot read the CDK context ({exc})") from exc
    context.update(DEMO_CONTEXT)
    context.update(overrides or {})
    return context


def synthesize(context: dict[str, Any]) -> SynthesizedApp:
    """Synthesize the CDK app in-process (no Node CLI, no AWS) with `context`."""
    # jsii warns on stderr about the Node version on every start (the Makefile sets these).
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    import aws_cdk as cdk

    from infra.config import DriftloopConfig
    from infra.stacks import build_app

    config = DriftloopConfig.from_context(context)
    outdir = tempfile.mkdtemp(prefix="driftloop-cdk-")
    try:
        app = cdk.App(outdir=outdir, context=context)
        stacks = build_app(app, config)
        assembly = app.synth()
        templates = {
            role: dict(assembly.get_stack_by_name(stack.stack_name).template)
            for role, stack in stacks.items()
        }
        return SynthesizedApp(templates, {r: s.stack_name for r, s in stacks.items()}, config)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


CDK_CACHE = REPO_ROOT / "build" / "demo-cdk"


def _app_digest(context: dict[str, Any]) -> str:
    """What the synthesized templates depend on: the CDK code, cdk.json and the context."""
    import hashlib

    h = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode())
    files = [
        REPO_ROOT / "app.py",
        REPO_ROOT / "cdk.json",
        *sorted((REPO_ROOT / "infra").rglob("*.py")),
    ]
    for path in files:
        if path.is_file():
            h.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        h.update(version("aws-cdk-lib").encode())
    return h.hexdigest()[:24]


def synthesize_cached(context: dict[str, Any], cache: Path | None = None) -> SynthesizedApp:
    """`synthesize`, remembered under build/demo-cdk/ by the digest of its inputs.

    The CDK's jsii bridge takes 10-40 s on a busy 2-core machine; the templates only
    change when infra/, app.py, cdk.json or the demo's context do.
    """
    from infra.config import DriftloopConfig

    folder = CDK_CACHE if cache is None else cache
    path = folder / f"{_app_digest(context)}.json"
    if path.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            saved = json.loads(path.read_text(encoding="utf-8"))
            return SynthesizedApp(
                saved["templates"], saved["stack_names"], DriftloopConfig.from_context(context)
            )
    app = synthesize(context)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"templates": app.templates, "stack_names": app.stack_names}))
        tmp.replace(path)
    return app


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template.get("Resources", {}).items() if r.get("Type") == kind}


_NAME_PROPS = (
    "EndpointName",
    "FunctionName",
    "TopicName",
    "QueueName",
    "StateMachineName",
    "ModelPackageGroupName",
    "AlarmName",
    "Name",
    "RoleName",
    "LogGroupName",
    "ModelName",
    "EndpointConfigName",
    "TableName",
    "BucketName",
)
_SERVICES = {
    "Lambda": "lambda",
    "IAM": "iam",
    "Events": "events",
    "SNS": "sns",
    "SQS": "sqs",
    "StepFunctions": "states",
    "SageMaker": "sagemaker",
    "CloudWatch": "cloudwatch",
    "Logs": "logs",
    "KMS": "kms",
    "S3": "s3",
    "DynamoDB": "dynamodb",
}


def _local_name(stack: str, logical: str, resource: dict[str, Any]) -> str:
    props = resource.get("Properties", {})
    for prop in _NAME_PROPS:
        if isinstance(props.get(prop), str):
            return str(props[prop])
    text = "".join(c if c.isalnum() or c == "-" else "-" for c in f"{stack}-{logical}")
    return text[:63].strip("-")


def _identity(
    stack: str, logical: str, resource: dict[str, Any], region: str
) -> tuple[str, dict[str, str]]:
    """What Ref and Fn::GetAtt give for a resource the loop plays locally."""
    kind = str(resource.get("Type", ""))
    name = _local_name(stack, logical, resource)
    service = _SERVICES.get(kind.split("::")[1] if kind.count("::") == 2 else "", "local")
    if kind == "AWS::IAM::Role":
        arn = f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/{name}"
        return name, {"Arn": arn, "RoleId": name}
    if kind == "AWS::Lambda::Function":
        arn = _arn("lambda", f"function:{name}", region)
        return name, {"Arn": arn}
    if kind == "AWS::SNS::Topic":
        arn = _arn("sns", name, region)
        return arn, {"TopicArn": arn, "TopicName": name}
    if kind == "AWS::SQS::Queue":
        arn = _arn("sqs", name, region)
        url = f"https://sqs.{region}.amazonaws.com/{MOTO_ACCOUNT_ID}/{name}"
        return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}
    if kind == "AWS::StepFunctions::StateMachine":
        arn = _arn("states", f"stateMachine:{name}", region)
        return arn, {"Arn": arn, "Name": name}
    if kind.startswith("AWS::SageMaker::"):
        short = kind.rsplit("::", 1)[1]
        path = {
            "Model": "model",
            "EndpointConfig": "endpoint-config",
            "Endpoint": "endpoint",
            "ModelPackageGroup": "model-package-group",
        }.get(short, short.lower())
        arn = _arn("sagemaker", f"{path}/{name.lower()}", region)
        return arn, {f"{short}Name": name, f"{short}Arn": arn, "Arn": arn}
    if kind == "AWS::Events::EventBus":
        arn = _arn("events", f"event-bus/{name}", region)
        return name, {"Arn": arn, "Name": name}
    if kind == "AWS::Events::Rule":
        return name, {"Arn": _arn("events", f"rule/{name}", region)}
    if kind == "AWS::CloudWatch::Alarm":
        return name, {"Arn": _arn("cloudwatch", f"alarm:{name}", region)}
    return name, {"Arn": _arn(service, name, region)}


def _check_stack(cfn: Any, stack: str) -> None:
    status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    if status != "CREATE_COMPLETE":
        raise DriftloopError(f"CloudFormation on moto left stack {stack} in {status}")


def moto_compatible(template: dict[str, Any]) -> dict[str, Any]:
    """The template with the one spelling moto's CloudFormation misreads put its way.

    moto 5 reads AWS::KMS::Key tags with the KMS API's TagKey/TagValue names rather than
    CloudFormation's Key/Value; nothing else is changed.
    """
    out = json.loads(json.dumps(template))
    for resource in out.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::KMS::Key" and isinstance(props.get("Tags"), list):
            props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props["Tags"]]
    return out


def create_stateful_stack(
    aws: MotoServer, app: SynthesizedApp, resolver: TemplateResolver
) -> tuple[dict[str, str], list[str]]:
    """CloudFormation create_stack of the CDK's stateful template on moto.

    Returns the stack outputs and the resource types moto does not play (bucket
    policies, CDK metadata, ...), which the output lists honestly.
    """
    cfn = aws.client("cloudformation")
    stack = app.stack_names["stateful"]
    template = app.templates["stateful"]
    # A bootstrapped account: the template's BootstrapVersion parameter reads this.
    aws.client("ssm").put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String", Overwrite=True
    )
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # moto warns (and prints) for each resource type its CloudFormation does not play.
        warnings.simplefilter("ignore")
        cfn.create_stack(StackName=stack, TemplateBody=json.dumps(moto_compatible(template)))
    _check_stack(cfn, stack)
    created: set[str] = set()
    pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stack)
    for page in pages:
        for item in page["StackResourceSummaries"]:
            logical, physical = item["LogicalResourceId"], item.get("PhysicalResourceId") or ""
            kind = item["ResourceType"]
            if not physical:
                continue
            created.add(logical)
            resolver.refs[(stack, logical)] = physical
            if kind == "AWS::S3::Bucket":
                resolver.attrs[(stack, logical)].update(
                    Arn=f"arn:aws:s3:::{physical}",
                    DomainName=f"{physical}.s3.amazonaws.com",
                    RegionalDomainName=f"{physical}.s3.{aws.region}.amazonaws.com",
                )
            elif kind == "AWS::DynamoDB::Table":
                resolver.attrs[(stack, logical)]["Arn"] = _arn(
                    "dynamodb", f"table/{physical}", aws.region
                )
            elif kind == "AWS::KMS::Key":
                resolver.attrs[(stack, logical)]["Arn"] = _arn("kms", f"key/{physical}", aws.region)
                resolver.attrs[(stack, logical)]["KeyId"] = physical
    skipped = {
        r.get("Type", "?") for k, r in template.get("Resources", {}).items() if k not in created
    }
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    }
    # Cross-stack references: CDK exports from the stateful stack, ImportValue elsewhere.
    for name, out in template.get("Outputs", {}).items():
        export = out.get("Export", {}).get("Name")
        if export is not None:
            resolver.exports[resolver.resolve(export, stack)] = resolver.resolve(
                out["Value"], stack
            )
            outputs.setdefault(name, resolver.exports[resolver.resolve(export, stack)])
    return outputs, sorted(skipped)


def _register(app: SynthesizedApp, role: str, resolver: TemplateResolver, region: str) -> None:
    stack = app.stack_names[role]
    template = app.templates[role]
    resolver.mappings[stack] = template.get("Mappings", {})
    for logical, resource in template.get("Resources", {}).items():
        ref, attrs = _identity(stack, logical, resource, region)
        resolver.refs[(stack, logical)] = ref
        resolver.attrs[(stack, logical)].update(attrs)
    for out in template.get("Outputs", {}).values():
        export = out.get("Export", {}).get("Name")
        if export is not None:
            with contextlib.suppress(DriftloopError):
                resolver.exports[resolver.resolve(export, stack)] = resolver.resolve(
                    out["Value"], stack
                )


def _target_arns(rule: dict[str, Any]) -> list[Any]:
    return [t.get("Arn") for t in rule.get("Properties", {}).get("Targets", [])]


def _lambda_functions(
    app: SynthesizedApp, resolver: TemplateResolver
) -> tuple[dict[str, FunctionSpec], dict[str, str]]:
    """The app's driftloop Lambda functions (by handler) and a map of their ARNs."""
    functions: dict[str, FunctionSpec] = {}
    by_arn: dict[str, str] = {}
    for role, template in app.templates.items():
        stack = app.stack_names[role]
        for logical, fn in _resources(template, "AWS::Lambda::Function").items():
            props = fn.get("Properties", {})
            handler = str(props.get("Handler", ""))
            if not handler.startswith("lambdas."):
                continue  # CDK's own helper functions (log retention, custom resources)
            env = resolver.resolve(props.get("Environment", {}).get("Variables", {}), stack)
            functions[handler] = FunctionSpec(logical, handler, {k: str(v) for k, v in env.items()})
            by_arn[resolver.attrs[(stack, logical)]["Arn"]] = handler
    return functions, by_arn


def read_deployment(
    app: SynthesizedApp, resolver: TemplateResolver, outputs: dict[str, str], region: str
) -> LocalDeployment:
    """Everything the loop needs from the synthesized stacks, resolved to local names."""
    for role in app.templates:
        if role != "stateful":
            _register(app, role, resolver, region)
    functions, by_arn = _lambda_functions(app, resolver)
    schedules: list[ScheduleSpec] = []
    patterns: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    deployment_config: dict[str, Any] = {}
    capture_config: dict[str, Any] = {}
    endpoint_name, variant = "", "AllTraffic"
    state_machine_arn, definition = "", None
    seed_model: dict[str, Any] | None = None
    seed_config: dict[str, Any] | None = None
    for role, template in app.templates.items():
        stack = app.stack_names[role]
        for logical, rule in _resources(template, "AWS::Events::Rule").items():
            props = rule.get("Properties", {})
            targets = [by_arn.get(str(resolver.resolve(a, stack)), "") for a in _target_arns(rule)]
            if "ScheduleExpression" in props:
                schedules.extend(
                    ScheduleSpec(
                        resolver.refs[(stack, logical)], str(props["ScheduleExpression"]), t
                    )
                    for t in targets
                    if t
                )
            elif "EventPattern" in props and "lambdas.retrain_trigger.handler" in targets:
                patterns.append(resolver.resolve(props["EventPattern"], stack))
        for logical, alarm in _resources(template, "AWS::CloudWatch::Alarm").items():
            props = resolver.resolve(alarm.get("Properties", {}), stack)
            alarms.append({"AlarmName": resolver.refs[(stack, logical)], **props})
        for _, endpoint in _resources(template, "AWS::SageMaker::Endpoint").items():
            props = resolver.resolve(endpoint.get("Properties", {}), stack)
            endpoint_name = str(props["EndpointName"])
            deployment_config = props.get("DeploymentConfig", {})
        for logical, config in _resources(template, "AWS::SageMaker::EndpointConfig").items():
            props = resolver.resolve(config.get("Properties", {}), stack)
            capture_config = props.get("DataCaptureConfig", {})
            variant = str(props["ProductionVariants"][0]["VariantName"])
            seed_config = {
                "EndpointConfigName": resolver.attrs[(stack, logical)]["EndpointConfigName"],
                **props,
            }
        for logical, model in _resources(template, "AWS::SageMaker::Model").items():
            props = resolver.resolve(model.get("Properties", {}), stack)
            seed_model = {"ModelName": resolver.attrs[(stack, logical)]["ModelName"], **props}
        for logical, machine in _resources(template, "AWS::StepFunctions::StateMachine").items():
            props = machine.get("Properties", {})
            raw = resolver.resolve(props.get("DefinitionString", props.get("Definition")), stack)
            definition = json.loads(raw) if isinstance(raw, str) else raw
            state_machine_arn = resolver.refs[(stack, logical)]
    buckets = {
        key: outputs[f"{camel}BucketName"]
        for key, camel in (
            ("datasets", "Datasets"),
            ("artifacts", "Artifacts"),
            ("capture", "Capture"),
            ("ground_truth", "GroundTruth"),
            ("reports", "Reports"),
        )
    }
    drift_env = functions.get("lambdas.drift_check.handler")
    if drift_env is None:
        raise DriftloopError("the synthesized app has no lambdas.drift_check.handler function")
    return LocalDeployment(
        source="CDK app synthesized in-process (infra.stacks.build_app); stateful stack created "
        "by CloudFormation on moto",
        buckets=buckets,
        table=outputs["StateTableName"],
        event_bus=drift_env.environment["EVENT_BUS_NAME"],
        endpoint_name=endpoint_name or drift_env.environment["ENDPOINT_NAME"],
        variant=variant,
        functions=functions,
        schedules=schedules,
        event_patterns=patterns,
        deployment_config=deployment_config,
        capture_config=capture_config,
        alarms=alarms,
        state_machine_arn=state_machine_arn,
        state_machine_definition=definition,
        settings={k: getattr(app.config, k) for k in DEMO_CONTEXT if hasattr(app.config, k)},
        seed_model=seed_model,
        seed_endpoint_config=seed_config,
        image_uri=str(((seed_model or {}).get("PrimaryContainer") or {}).get("Image", "")),
        role_arn=str((seed_model or {}).get("ExecutionRoleArn", "")),
        function_arns=by_arn,
    )


# The retraining rule's pattern as docs/events.md and ARCHITECTURE.md define it; used
# when the synthesized app has no retraining stack to read it from.
DEFAULT_RETRAIN_PATTERN: dict[str, Any] = {
    "source": ["driftloop"],
    "detail-type": ["Drift Detected", "Quality Degraded"],
}


def add_documented_functions(dep: LocalDeployment, region: str) -> None:
    """Environment for the retraining functions the app does not define (yet).

    Built from docs/ARCHITECTURE.md's table and the deployment's own resources and
    settings, so the workflow runs the same handlers; listed in the output as a note.
    """
    s = {**DEMO_CONTEXT, **dep.settings}
    if not dep.state_machine_arn:
        dep.state_machine_arn = _arn("states", "stateMachine:driftloop-demo-retraining", region)
    base = "baselines/current/baseline.json"
    envs: dict[str, dict[str, str]] = {
        "lambdas.retrain_trigger.handler": {
            "STATE_TABLE": dep.table,
            "STATE_MACHINE_ARN": dep.state_machine_arn,
            "COOLDOWN_MINUTES": str(s["cooldown_minutes"]),
            "ENDPOINT_NAME": dep.endpoint_name,
        },
        "lambdas.retrain_steps.prepare_data": {
            "DATASETS_BUCKET": dep.buckets["datasets"],
            "CAPTURE_BUCKET": dep.buckets["capture"],
            "CAPTURE_PREFIX": "capture",
            "GROUND_TRUTH_BUCKET": dep.buckets["ground_truth"],
            "GROUND_TRUTH_PREFIX": "ground-truth",
            "ARTIFACTS_BUCKET": dep.buckets["artifacts"],
            "BASELINE_KEY": base,
            "ENDPOINT_NAME": dep.endpoint_name,
            "LOOKBACK_HOURS": str(s["lookback_hours"]),
        },
        "lambdas.retrain_steps.read_evaluation": {
            "ARTIFACTS_BUCKET": dep.buckets["artifacts"],
            "MIN_IMPROVEMENT": str(s.get("min_improvement", 0.0)),
            "GATE_METRIC": str(s.get("gate_metric", "auc")),
        },
        "lambdas.retrain_steps.register_model": {
            "MODEL_PACKAGE_GROUP": "driftloop-demo-models",
            "IMAGE_URI": dep.image_uri or "sagemaker-scikit-learn",
        },
        "lambdas.retrain_steps.deploy_model": {
            "ENDPOINT_NAME": dep.endpoint_name,
            "SAGEMAKER_ROLE_ARN": dep.role_arn
            or f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/driftloop-demo-sagemaker",
            "IMAGE_URI": dep.image_uri or "sagemaker-scikit-learn",
            "ARTIFACTS_BUCKET": dep.buckets["artifacts"],
            "BASELINE_KEY": base,
            "DEPLOYMENT_CONFIG": json.dumps(dep.deployment_config),
            "INSTANCE_TYPE": "ml.m5.large",
            "INSTANCE_COUNT": "1",
            "CAPTURE_CONFIG": json.dumps(dep.capture_config),
        },
        "lambdas.retrain_steps.check_deployment": {"ENDPOINT_NAME": dep.endpoint_name},
    }
    missing = [h for h in envs if h not in dep.functions]
    for handler in missing:
        dep.functions[handler] = FunctionSpec(handler, handler, envs[handler])
    if missing:
        dep.notes.append(
            "the app defines no "
            + ", ".join(h.split(".", 1)[1] for h in missing)
            + ": their environment follows docs/ARCHITECTURE.md with the app's resources"
        )


def fallback_deployment(aws: MotoServer, reason: str) -> LocalDeployment:
    """The same resources, created with boto3 from ARCHITECTURE.md when synthesis fails."""
    region = aws.region
    s3 = aws.client("s3")
    names = {
        k: f"driftloop-demo-{k.replace('_', '-')}"
        for k in ("datasets", "artifacts", "capture", "ground_truth", "reports")
    }
    for bucket in names.values():
        s3.create_bucket(Bucket=bucket)
    table = "driftloop-demo-state"
    aws.client("dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    c = DEMO_CONTEXT
    endpoint = "driftloopdemo-endpoint"
    bus = "driftloop-demo-bus"
    machine = "driftloop-demo-retraining"
    common = {
        "ENDPOINT_NAME": endpoint,
        "CAPTURE_BUCKET": names["capture"],
        "CAPTURE_PREFIX": "capture",
        "ARTIFACTS_BUCKET": names["artifacts"],
        "BASELINE_KEY": "baselines/current/baseline.json",
        "REPORTS_BUCKET": names["reports"],
        "STATE_TABLE": table,
        "EVENT_BUS_NAME": bus,
        "WINDOW_HOURS": str(c["window_hours"]),
        "GRACE_MINUTES": str(c["grace_minutes"]),
    }
    deployment_config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": c["canary_percent"]},
                "WaitIntervalInSeconds": c["canary_wait_seconds"],
            },
            "TerminationWaitInSeconds": c["termination_wait_seconds"],
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": "driftloop-demo-5xx"}, {"AlarmName": "driftloop-demo-latency"}]
        },
    }
    capture_config = {
        "EnableCapture": True,
        "InitialSamplingPercentage": c["sampling_percentage"],
        "DestinationS3Uri": f"s3://{names['capture']}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }
    role_arn = f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/driftloop-demo-sagemaker"
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    functions = {
        "lambdas.drift_check.handler": {**common, "DRIFT_CONFIG": "{}"},
        "lambdas.quality_check.handler": {
            **common,
            "GROUND_TRUTH_BUCKET": names["ground_truth"],
            "GROUND_TRUTH_PREFIX": "ground-truth",
            "LABEL_DELAY_HOURS": str(c["label_delay_hours"]),
            "QUALITY_CONFIG": json.dumps(c["quality"]),
        },
        "lambdas.retrain_trigger.handler": {
            "STATE_TABLE": table,
            "STATE_MACHINE_ARN": _arn("states", f"stateMachine:{machine}", region),
            "COOLDOWN_MINUTES": str(c["cooldown_minutes"]),
            "ENDPOINT_NAME": endpoint,
        },
        "lambdas.retrain_steps.prepare_data": {
            "DATASETS_BUCKET": names["datasets"],
            "CAPTURE_BUCKET": names["capture"],
            "CAPTURE_PREFIX": "capture",
            "GROUND_TRUTH_BUCKET": names["ground_truth"],
            "GROUND_TRUTH_PREFIX": "ground-truth",
            "ARTIFACTS_BUCKET": names["artifacts"],
            "BASELINE_KEY": "baselines/current/baseline.json",
            "ENDPOINT_NAME": endpoint,
            "LOOKBACK_HOURS": str(c["lookback_hours"]),
        },
        "lambdas.retrain_steps.read_evaluation": {
            "ARTIFACTS_BUCKET": names["artifacts"],
            "MIN_IMPROVEMENT": "0.0",
            "GATE_METRIC": "auc",
        },
        "lambdas.retrain_steps.register_model": {
            "MODEL_PACKAGE_GROUP": "driftloop-demo-models",
            "IMAGE_URI": image,
        },
        "lambdas.retrain_steps.deploy_model": {
            "ENDPOINT_NAME": endpoint,
            "SAGEMAKER_ROLE_ARN": role_arn,
            "IMAGE_URI": image,
            "ARTIFACTS_BUCKET": names["artifacts"],
            "BASELINE_KEY": "baselines/current/baseline.json",
            "DEPLOYMENT_CONFIG": json.dumps(deployment_config),
            "INSTANCE_TYPE": "ml.m5.large",
            "INSTANCE_COUNT": "1",
            "CAPTURE_CONFIG": json.dumps(capture_config),
        },
        "lambdas.retrain_steps.check_deployment": {"ENDPOINT_NAME": endpoint},
    }
    alarms = [
        {
            "AlarmName": "driftloop-demo-5xx",
            "MetricName": "Invocation5XXErrors",
            "Namespace": "AWS/SageMaker",
            "Statistic": "Sum",
            "Threshold": 1.0,
            "Period": 60,
            "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
        {
            "AlarmName": "driftloop-demo-latency",
            "MetricName": "ModelLatency",
            "Namespace": "AWS/SageMaker",
            "ExtendedStatistic": "p99",
            "Threshold": 1_000_000.0,
            "Period": 60,
            "EvaluationPeriods": 2,
            "ComparisonOperator": "GreaterThanThreshold",
        },
    ]
    return LocalDeployment(
        source=f"boto3 fallback from docs/ARCHITECTURE.md (CDK synthesis failed: {reason})",
        buckets=names,
        table=table,
        event_bus=bus,
        endpoint_name=endpoint,
        variant="AllTraffic",
        functions={
            h: FunctionSpec(h, h, {k: str(v) for k, v in env.items()})
            for h, env in functions.items()
        },
        schedules=[
            ScheduleSpec(
                "driftloop-demo-drift", c["drift_schedule"], "lambdas.drift_check.handler"
            ),
            ScheduleSpec(
                "driftloop-demo-quality", c["quality_schedule"], "lambdas.quality_check.handler"
            ),
        ],
        event_patterns=[DEFAULT_RETRAIN_PATTERN],
        deployment_config=deployment_config,
        capture_config=capture_config,
        alarms=alarms,
        state_machine_arn=_arn("states", f"stateMachine:{machine}", region),
        settings=dict(DEMO_CONTEXT),
    )


_ALARM_API_KEYS = (
    "AlarmName",
    "AlarmDescription",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "EvaluationPeriods",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "DatapointsToAlarm",
    "Unit",
)


class EventPipe:
    """EventBridge on moto with the retraining rule's pattern, delivering to an SQS queue.

    moto's EventBridge delivers to SQS targets (not to Lambda), so the loop puts the same
    rule pattern the CDK gives the retraining trigger on the bus, targets a queue, and
    hands every message it receives to the trigger's handler.
    """

    def __init__(self, aws: MotoServer, bus: str, patterns: list[dict[str, Any]]) -> None:
        self.events = aws.client("events")
        self.sqs = aws.client("sqs")
        self.bus = bus
        if bus != "default":
            with contextlib.suppress(self.events.exceptions.ResourceAlreadyExistsException):
                self.events.create_event_bus(Name=bus)
        self.queue_url = self.sqs.create_queue(QueueName="driftloop-demo-retrain-events")[
            "QueueUrl"
        ]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.patterns = patterns
        for i, pattern in enumerate(patterns):
            rule = f"driftloop-demo-retrain-{i}"
            self.events.put_rule(
                Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern), State="ENABLED"
            )
            self.events.put_targets(
                Rule=rule, EventBusName=bus, Targets=[{"Id": "retrain-queue", "Arn": queue_arn}]
            )

    def receive(self) -> list[dict[str, Any]]:
        """Every event delivered so far (oldest first), removed from the queue."""
        out: list[dict[str, Any]] = []
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = resp.get("Messages", [])
            if not messages:
                break
            for message in messages:
                out.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        out.sort(key=lambda e: str(e.get("time", "")))
        return out


def materialize(aws: MotoServer, dep: LocalDeployment) -> EventPipe:
    """Create on moto what the loop plays through AWS APIs besides the stateful stack."""
    if not dep.event_patterns:
        dep.event_patterns = [DEFAULT_RETRAIN_PATTERN]
        dep.notes.append(
            "no retraining rule in the app: used the documented pattern "
            f"{json.dumps(DEFAULT_RETRAIN_PATTERN)}"
        )
    pipe = EventPipe(aws, dep.event_bus, dep.event_patterns)
    cloudwatch = aws.client("cloudwatch")
    for alarm in dep.alarms:
        props = {k: alarm[k] for k in _ALARM_API_KEYS if k in alarm}
        if "Dimensions" in props:
            props["Dimensions"] = [
                {"Name": d["Name"], "Value": str(d["Value"])} for d in props["Dimensions"]
            ]
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in props:
                props[key] = int(props[key])
        if "Threshold" in props:
            props["Threshold"] = float(props["Threshold"])
        cloudwatch.put_metric_alarm(**props)
    sfn = aws.client("stepfunctions")
    name = dep.state_machine_arn.rsplit(":", 1)[-1] or "driftloop-demo-retraining"
    definition = dep.state_machine_definition or {
        "Comment": "local stand-in: the app had no retraining stack",
        "StartAt": "Done",
        "States": {"Done": {"Type": "Succeed"}},
    }
    dep.state_machine_arn = sfn.create_state_machine(
        name=name,
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/driftloop-demo-states",
    )["stateMachineArn"]
    group = dep.functions.get("lambdas.retrain_steps.register_model")
    if group and group.environment.get("MODEL_PACKAGE_GROUP"):
        with contextlib.suppress(Exception):
            aws.client("sagemaker").create_model_package_group(
                ModelPackageGroupName=group.environment["MODEL_PACKAGE_GROUP"]
            )
    return pipe


# ---------------------------------------------------------------------------------------
# Calling the Lambda handlers as Lambda would
# ---------------------------------------------------------------------------------------


class LambdaContext:
    """The fields of the Lambda context object the handlers (and Powertools) read."""

    def __init__(self, function_name: str, region: str, timeout_s: int = 900) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = _arn("lambda", f"function:{function_name}", region)
        self.aws_request_id = f"local-{time.monotonic_ns():x}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Handlers:
    """Imports and invokes `lambdas.*` handlers with their function's environment.

    Powertools writes logs and EMF metrics to stdout; a Lambda's stdout goes to
    CloudWatch Logs, here to `logs/lambdas.log` under the output folder. The modules are
    imported with stdout pointing there too, since Powertools' Logger keeps the stream it
    saw at import time.
    """

    def __init__(self, dep: LocalDeployment, region: str, log_path: Path) -> None:
        self.dep = dep
        self.region = region
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = log_path.open("a", encoding="utf-8")
        self._modules: dict[str, Any] = {}
        self.calls: Counter[str] = Counter()

    def close(self) -> None:
        self.log.close()

    def _function(self, path: str) -> Callable[..., Any]:
        module_name, _, attr = path.rpartition(".")
        if module_name not in self._modules:
            import importlib

            with contextlib.redirect_stdout(self.log):
                self._modules[module_name] = importlib.import_module(module_name)
        return getattr(self._modules[module_name], attr)  # type: ignore[no-any-return]

    def _env(self, handler: str) -> dict[str, str]:
        spec = self.dep.functions.get(handler)
        env = dict(spec.environment) if spec else {}
        env.setdefault("POWERTOOLS_SERVICE_NAME", handler.split(".")[1])
        env.setdefault("POWERTOOLS_METRICS_NAMESPACE", "driftloop")
        env.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        return env

    def module(self, name: str, handler: str) -> Any:
        """Import a handler module as `handler`'s cold start would (its environment set)."""
        from driftloop.local.moto_server import patched_environ

        with patched_environ(self._env(handler)), contextlib.redirect_stdout(self.log):
            self._function(f"{name}.__name__")
        return self._modules[name]

    def invoke(self, handler: str, event: Any, extra_env: dict[str, str] | None = None) -> Any:
        from driftloop.local.moto_server import patched_environ

        spec = self.dep.functions.get(handler)
        env = self._env(handler)
        env.update(extra_env or {})
        name = (spec.logical_id if spec else handler).replace(".", "-")
        self.calls[handler] += 1
        # Lambda sets the environment before the module is imported (a cold start).
        with patched_environ(env), contextlib.redirect_stdout(self.log):
            fn = self._function(handler)
            return fn(event, LambdaContext(name, self.region))


# ---------------------------------------------------------------------------------------
# Leaving everything under --out
# ---------------------------------------------------------------------------------------


def mirror_buckets(
    aws: MotoServer, buckets: dict[str, str], out: Path, progress: Progress | None = None
) -> dict[str, int]:
    """Copy every object of every bucket to out/buckets/{role}/{key}; counts per bucket.

    The objects are read from moto's in-process S3 backend (the server runs in this
    process): thousands of GetObject calls through HTTP would cost a minute on a busy
    machine for the same bytes. ListObjectsV2 gives the keys, as a user would list them.
    """
    s3 = aws.client("s3")
    try:
        from moto.s3.models import s3_backends

        backend: Any = s3_backends[MOTO_ACCOUNT_ID][aws.partition]
    except Exception:  # noqa: BLE001 - another moto layout: read through the API
        backend = None
    counts: dict[str, int] = {}
    for role, bucket in buckets.items():
        n = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                if ".." in Path(key).parts or key.startswith("/"):
                    continue  # never write outside the folder
                target = out / "buckets" / role / key
                target.parent.mkdir(parents=True, exist_ok=True)
                body = None
                if backend is not None:
                    with contextlib.suppress(Exception):
                        body = backend.get_object(bucket, key).value
                if body is None:
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                target.write_bytes(body)
                n += 1
        counts[role] = n
        if progress is not None:
            progress.advance(1, f"{role}: {n} objects")
    return counts


# ---------------------------------------------------------------------------------------
# Step Functions, locally: the retraining workflow's states on the simulated clock
# ---------------------------------------------------------------------------------------


def json_path(doc: Any, path: str, context: dict[str, Any] | None = None) -> Any:
    """Step Functions reference paths: `$`, `$.a.b`, `$.a[0]`, and `$$.` (context object)."""
    if path.startswith("$$"):
        doc, path = context or {}, path[1:]
    if path == "$":
        return doc
    if not path.startswith("$."):
        raise DriftloopError(f"step functions: unsupported path {path!r}")
    value = doc
    for part in path[2:].replace("]", "").replace("[", ".").split("."):
        if isinstance(value, list) and part.isdigit():
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise DriftloopError(f"step functions: path {path} not found in the state document")
    return value


def _set_path(doc: Any, path: str | None, result: Any) -> Any:
    """ResultPath: `$` replaces, None (JSON null) discards, `$.a.b` sets."""
    if path is None:
        return doc
    if path == "$":
        return result
    out = json.loads(json.dumps(doc))
    node = out
    parts = path[2:].split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = result
    return out


def _split_args(text: str) -> list[str]:
    args, depth, quote, current = [], 0, False, ""
    for ch in text:
        if ch == "'" and not current.endswith("\\"):
            quote = not quote
        if ch == "(" and not quote:
            depth += 1
        if ch == ")" and not quote:
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        args.append(current.strip())
    return args


def _intrinsic(expr: str, doc: Any, context: dict[str, Any]) -> Any:
    """The intrinsic functions the workflow may use in Parameters."""
    expr = expr.strip()
    if expr.startswith("'") and expr.endswith("'"):
        return expr[1:-1].replace("\\'", "'")
    if expr.startswith("$"):
        return json_path(doc, expr, context)
    name, _, rest = expr.partition("(")
    args = [_intrinsic(a, doc, context) for a in _split_args(rest[:-1])]
    if name == "States.Format":
        template, values = str(args[0]), [str(v) for v in args[1:]]
        pieces = template.split("{}")
        return "".join(p + (values[i] if i < len(values) else "") for i, p in enumerate(pieces))
    if name == "States.JsonToString":
        return json.dumps(args[0], separators=(",", ":"))
    if name == "States.StringToJson":
        return json.loads(args[0])
    if name == "States.Array":
        return list(args)
    raise DriftloopError(f"step functions: intrinsic {name} is not played locally")


def render_parameters(params: Any, doc: Any, context: dict[str, Any]) -> Any:
    """Parameters / ResultSelector: `key.$` values are paths or intrinsics."""
    if isinstance(params, list):
        return [render_parameters(p, doc, context) for p in params]
    if not isinstance(params, dict):
        return params
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key.endswith(".$"):
            out[key[:-2]] = _intrinsic(str(value), doc, context)
        else:
            out[key] = render_parameters(value, doc, context)
    return out


def choice_matches(rule: dict[str, Any], doc: Any) -> bool:
    """One Choice rule (the comparison operators the workflow can use)."""
    if "And" in rule:
        return all(choice_matches(r, doc) for r in rule["And"])
    if "Or" in rule:
        return any(choice_matches(r, doc) for r in rule["Or"])
    if "Not" in rule:
        return not choice_matches(rule["Not"], doc)
    variable = rule["Variable"]
    try:
        value = json_path(doc, variable)
        present = True
    except DriftloopError:
        value, present = None, False
    for op, expected in rule.items():
        if op in ("Variable", "Next"):
            continue
        if op == "IsPresent":
            return present == bool(expected)
        if not present:
            return False
        if op.endswith("Path"):
            op, expected = op[:-4], json_path(doc, expected)
        if op == "IsNull":
            return (value is None) == bool(expected)
        if op == "IsBoolean":
            return isinstance(value, bool) == bool(expected)
        compare = {
            "BooleanEquals": lambda v, e: v is e or v == e,
            "StringEquals": lambda v, e: v == e,
            "NumericEquals": lambda v, e: v == e,
            "NumericGreaterThan": lambda v, e: v > e,
            "NumericGreaterThanEquals": lambda v, e: v >= e,
            "NumericLessThan": lambda v, e: v < e,
            "NumericLessThanEquals": lambda v, e: v <= e,
        }.get(op)
        if compare is None:
            raise DriftloopError(f"step functions: Choice operator {op} is not played locally")
        return bool(compare(value, expected))
    raise DriftloopError(f"step functions: Choice rule without a comparison: {rule}")


def main_path(definition: dict[str, Any]) -> list[str]:
    """The states of a definition in order: StartAt, then every state reachable, each
    listed once, following Next, then a Choice's first rule, then its Default (the
    success path is the first one a workflow author writes)."""
    states = definition["States"]
    order: list[str] = []
    stack = [definition["StartAt"]]
    while stack:
        name = stack.pop(0)
        if name in order or name not in states:
            continue
        order.append(name)
        state = states[name]
        nexts = [c["Next"] for c in state.get("Choices", [])]
        if "Default" in state:
            nexts.append(state["Default"])
        if "Next" in state:
            nexts.insert(0, state["Next"])
        stack = [n for n in nexts if n not in order] + stack
    return order


# ---------------------------------------------------------------------------------------
# The fleet behind the endpoint name: blue, and green while a deployment runs
# ---------------------------------------------------------------------------------------


@dataclass
class Served:
    """One model served by a local endpoint (one "fleet" in SageMaker's blue/green)."""

    model_name: str
    model_data_url: str
    endpoint: Any  # driftloop.local.endpoint.LocalEndpoint
    host: str
    port: int


@dataclass
class Sent:
    """What one request did."""

    model_name: str
    ok: bool
    latency_ms: float
    event_id: str
    scores: list[float]


class Fleet:
    """Serves the endpoint's traffic: every request goes over HTTP to a LocalEndpoint.

    While a blue/green deployment bakes, `deployment.route()` decides per request which
    fleet answers; both capture to the endpoint's capture prefix, as SageMaker's fleets do.
    """

    def __init__(self, aws: MotoServer, dep: LocalDeployment, clock: SimClock, seed: int) -> None:
        self.aws = aws
        self.dep = dep
        self.clock = clock
        self.seed = seed
        self.s3 = aws.client("s3")
        self.served: dict[str, Served] = {}
        self.serving = ""  # the model all traffic goes to outside a deployment
        self.deployment: Any = None  # BlueGreenDeployment while one runs

    def start(self, model_name: str, model_data_url: str) -> Served:

        from driftloop.local.endpoint import LocalEndpoint

        endpoint = LocalEndpoint(
            model_data_url,
            s3_client=self.s3,
            capture_config=self.dep.capture_config,
            endpoint_name=self.dep.endpoint_name,
            variant_name=self.dep.variant,
            clock=self.clock.now,
            seed=self.seed + len(self.served),
            # Capture files roll over with the simulated hour; never on wall time, so a
            # slow machine writes the same files as a fast one.
            flush_records=10**9,
            flush_seconds=10**9,
        ).start()
        host, port = endpoint.url.removeprefix("http://").split(":")
        served = Served(model_name, model_data_url, endpoint, host, int(port))
        self.served[model_name] = served
        return served

    def stop(self, model_name: str) -> None:
        served = self.served.pop(model_name, None)
        if served is not None:
            served.endpoint.close()

    def flush(self) -> None:
        """Write every buffered capture record (before a check reads the capture bucket)."""
        for served in self.served.values():
            if served.endpoint.writer is not None:
                served.endpoint.writer.flush()

    def close(self) -> None:
        for name in list(self.served):
            self.stop(name)

    def send(self, body: bytes) -> Sent:
        model = self.deployment.route() if self.deployment is not None else self.serving
        sent = self._post(self.served[model], body)
        if self.deployment is not None:
            self.deployment.record(model, sent.ok, sent.latency_ms)
        if not sent.ok and model != self.serving:
            # The client retries a failed canary request; the stable fleet answers it.
            sent = self._post(self.served[self.serving], body)
        return sent

    def _post(self, served: Served, body: bytes) -> Sent:
        import http.client
        import socket

        from driftloop.local.endpoint import EVENT_ID_HEADER

        started = time.perf_counter()
        # The endpoint speaks HTTP/1.0 (a connection per request, as SageMaker's
        # serving stack behind its load balancer would look to a client). Its response
        # goes out in two writes, so the client acknowledges at once rather than after
        # the 40 ms delayed-ACK timer.
        connection = http.client.HTTPConnection(served.host, served.port, timeout=60)
        try:
            connection.connect()
            with contextlib.suppress(OSError, AttributeError):
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            connection.request(
                "POST",
                "/invocations",
                body=body,
                headers={"Content-Type": "text/csv", "Accept": "text/csv"},
            )
            response = connection.getresponse()
            payload = response.read()
            event_id = response.getheader(EVENT_ID_HEADER) or ""
            ok = response.status == 200
        finally:
            connection.close()
        latency = (time.perf_counter() - started) * 1000.0
        scores = [float(line.split(",")[0]) for line in payload.decode().split()] if ok else []
        return Sent(served.model_name, ok, latency, event_id, scores)


# The Wait state's length when the app has no retraining stack to read it from.
DEFAULT_DEPLOY_WAIT_SECONDS = 300


@dataclass
class StepRecord:
    name: str
    at: datetime
    seconds: float  # wall time the step took here


class RetrainExecution:
    """One retraining workflow execution, run state by state on the simulated clock.

    The states are `lambdas.retrain_steps.RETRAIN_STEPS`, run as Step Functions would:
    Lambda states call their handler with the state document and take its return as the
    new document; Train and Evaluate run the SageMaker job locally (the training and
    processing runners) from the request the document describes, recording the job on
    moto so DescribeTrainingJob works as in AWS; the Gate sends a rejected challenger
    past the deployment states to Notify; WaitForDeployment sleeps on the simulated
    clock; CheckDeployment loops back to the wait until the blue/green deployment ends.
    """

    def __init__(
        self, run: DemoRun, execution_arn: str, document: dict[str, Any], started: datetime
    ) -> None:
        steps = run.handlers.module("lambdas.retrain_steps", "lambdas.retrain_steps.prepare_data")
        self.run = run
        self.arn = execution_arn
        self.doc = document
        self.started = started
        self.steps = list(steps.RETRAIN_STEPS)
        self.lambda_steps = dict(steps.LAMBDA_STEPS)
        self.index = 0
        self.wake_at: datetime | None = None
        self.done = False
        self.outcome = ""
        self.history: list[StepRecord] = []

    @property
    def run_id(self) -> str:
        return str(self.doc.get("run_id", ""))

    def advance(self, now: datetime) -> None:
        """Run states until the workflow waits past `now` or ends."""
        while not self.done:
            if self.wake_at is not None:
                if now < self.wake_at:
                    return
                self.run.clock.advance_to(self.wake_at)
                self.wake_at = None
            name = self.steps[self.index]
            started = time.perf_counter()
            next_name = self._run_state(name)
            self.history.append(
                StepRecord(name, self.run.clock.now(), time.perf_counter() - started)
            )
            if next_name is None:
                self.done = True
            else:
                self.index = self.steps.index(next_name)

    def _after(self, name: str) -> str | None:
        i = self.steps.index(name) + 1
        return self.steps[i] if i < len(self.steps) else None

    def _run_state(self, name: str) -> str | None:
        run = self.run
        if name in self.lambda_steps:
            handler = f"lambdas.retrain_steps.{self.lambda_steps[name]}"
            self.doc = run.handlers.invoke(handler, self.doc)
            if name == "DeployModel":
                run.start_deployments()
            if name == "RegisterModel" and not (self.doc.get("decision") or {}).get("deploy"):
                self.outcome = "rejected"
                run.on_rejected(self)
                return "Notify"
            if name == "CheckDeployment":
                status = (self.doc.get("deployment") or {}).get("status")
                if status == "in_progress":
                    return "WaitForDeployment"
                self.outcome = str(status)
            return self._after(name)
        if name == "Train":
            run.train_challenger(self)
        elif name == "Evaluate":
            run.evaluate_challenger(self)
        elif name == "Gate":
            pass  # the decision is in the document; RegisterModel records it either way
        elif name == "WaitForDeployment":
            self.wake_at = run.clock.now() + timedelta(seconds=run.deploy_wait_seconds)
        elif name == "Notify":
            run.notify(self)
        else:
            raise DriftloopError(f"retraining: state {name} is not played by the local loop")
        return self._after(name)


class DefinitionExecution:
    """One retraining execution that walks the synthesized Step Functions definition.

    The states, transitions, Choice rules, Wait times, Parameters, ResultSelector,
    ResultPath and Catch clauses are the CDK's; what runs in each Task is local: Lambda
    ARNs call their handler (`lambdas.retrain_steps.*`), `sagemaker:createTrainingJob.sync`
    and `createProcessingJob.sync` hand the rendered request to the local runners,
    `sns:publish` and `events:putEvents` go to moto, and Wait sleeps on the simulated
    clock. Retry clauses are not replayed (a local failure does not go away by waiting).
    """

    def __init__(
        self,
        run: DemoRun,
        execution_arn: str,
        document: dict[str, Any],
        started: datetime,
        definition: dict[str, Any],
    ) -> None:
        self.run = run
        self.arn = execution_arn
        self.doc = document
        self.started = started
        self.definition = definition
        self.current: str | None = definition["StartAt"]
        self.wake_at: datetime | None = None
        self.done = False
        self.outcome = ""
        self.error: dict[str, Any] | None = None
        self.history: list[StepRecord] = []

    @property
    def run_id(self) -> str:
        return str(self.doc.get("run_id", ""))

    def _context(self, state: str) -> dict[str, Any]:
        return {
            "Execution": {
                "Id": self.arn,
                "Name": self.arn.rsplit(":", 1)[-1],
                "StartTime": iso(self.started),
            },
            "State": {"Name": state, "EnteredTime": iso(self.run.clock.now())},
            "StateMachine": {"Id": self.run.dep.state_machine_arn},
        }

    def advance(self, now: datetime) -> None:
        while not self.done:
            if self.wake_at is not None:
                if now < self.wake_at:
                    return
                self.run.clock.advance_to(self.wake_at)
                self.wake_at = None
            assert self.current is not None
            name = self.current
            started = time.perf_counter()
            self.doc, nxt = self._run_state(name, self.definition["States"][name], self.doc)
            self.history.append(
                StepRecord(name, self.run.clock.now(), time.perf_counter() - started)
            )
            if nxt is None:
                self.done = True
            self.current = nxt

    def _flow_state(
        self, name: str, state: dict[str, Any], doc: Any, ctx: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """Choice, Wait, Pass, Succeed and Fail: the states that only move the document."""
        kind = state["Type"]
        if kind == "Choice":
            for rule in state.get("Choices", []):
                if choice_matches(rule, doc):
                    return doc, rule["Next"]
            if "Default" not in state:
                raise DriftloopError(f"step functions: no Choice rule of {name} matched")
            return doc, state["Default"]
        if kind == "Wait":
            if "Seconds" in state:
                seconds = float(state["Seconds"])
            elif "SecondsPath" in state:
                seconds = float(json_path(doc, state["SecondsPath"], ctx))
            else:
                raise DriftloopError(f"step functions: Wait state {name} needs Seconds")
            self.wake_at = self.run.clock.now() + timedelta(seconds=seconds)
            return doc, self._next(state)
        if kind == "Pass":
            result = (
                render_parameters(state.get("Parameters", state.get("Result", doc)), doc, ctx)
                if "Parameters" in state or "Result" in state
                else doc
            )
            return self._output(state, doc, result), self._next(state)
        if kind == "Succeed":
            self.outcome = self.outcome or "succeeded"
            return doc, None
        if kind == "Fail":
            self.outcome = "failed"
            self.error = {
                "Error": state.get("Error"),
                "Cause": state.get("Cause"),
                **((doc.get("error") or {}) if isinstance(doc, dict) else {}),
            }
            return doc, None
        raise DriftloopError(f"step functions: state type {kind} is not played locally")

    def _run_state(self, name: str, state: dict[str, Any], doc: Any) -> tuple[Any, str | None]:
        kind = state["Type"]
        ctx = self._context(name)
        if kind not in ("Task", "Parallel"):
            return self._flow_state(name, state, doc, ctx)
        try:
            if kind == "Task":
                result = self._task(name, state, doc, ctx)
            elif kind == "Parallel":
                result = [
                    self._branch(branch, self._input(state, doc, ctx))
                    for branch in state["Branches"]
                ]
            else:
                raise DriftloopError(f"step functions: state type {kind} is not played locally")
        except Exception as exc:  # noqa: BLE001 - Catch clauses decide, as in Step Functions
            error = {
                "Error": type(exc).__name__,
                "Cause": " ".join(str(exc).split())[:500] or type(exc).__name__,
            }
            for catch in state.get("Catch", []):
                if {"States.ALL", error["Error"]} & set(catch.get("ErrorEquals", [])):
                    self.run.progress.event(f"  retraining step {name} failed: {error['Cause']}")
                    return _set_path(doc, catch.get("ResultPath", "$"), error), catch["Next"]
            raise
        return self._output(state, doc, result), self._next(state)

    def _branch(self, branch: dict[str, Any], doc: Any) -> Any:
        name: str | None = branch["StartAt"]
        while name is not None:
            doc, name = self._run_state(name, branch["States"][name], doc)
        return doc

    @staticmethod
    def _next(state: dict[str, Any]) -> str | None:
        return None if state.get("End") else state.get("Next")

    def _input(self, state: dict[str, Any], doc: Any, ctx: dict[str, Any]) -> Any:
        value = json_path(doc, state["InputPath"], ctx) if state.get("InputPath") else doc
        if "Parameters" in state:
            value = render_parameters(state["Parameters"], value, ctx)
        return value

    def _output(self, state: dict[str, Any], doc: Any, result: Any) -> Any:
        if "ResultSelector" in state:
            result = render_parameters(state["ResultSelector"], result, {})
        out = _set_path(doc, state["ResultPath"] if "ResultPath" in state else "$", result)
        path = state.get("OutputPath", "$")
        return json_path(out, path) if path not in (None, "$") else out

    def _task(self, name: str, state: dict[str, Any], doc: Any, ctx: dict[str, Any]) -> Any:
        run = self.run
        resource = str(state["Resource"])
        payload = self._input(state, doc, ctx)
        if (
            ":lambda:" in resource
            and ":function:" in resource
            or resource.endswith(":lambda:invoke")
        ):
            arn = (
                str(payload.pop("FunctionName"))
                if resource.endswith(":lambda:invoke")
                else (resource)
            )
            if resource.endswith(":lambda:invoke"):
                payload = payload.get("Payload", doc)
            handler = run.dep.function_arns.get(arn.split(":$")[0])
            if handler is None:
                raise DriftloopError(f"step functions: {name} calls {arn}, no known function")
            result = run.handlers.invoke(handler, payload)
            run.start_deployments()
            return (
                {"Payload": result, "StatusCode": 200}
                if resource.endswith(":lambda:invoke")
                else result
            )
        if resource.endswith(":sagemaker:createTrainingJob.sync"):
            return run.train_request(payload)
        if resource.endswith(":sagemaker:createProcessingJob.sync"):
            return run.processing_request(payload)
        if resource.endswith(":sns:publish"):
            return run.publish(payload)
        if resource.endswith(":events:putEvents"):
            # Step Functions serializes an object Detail; the API takes a string.
            entries = [
                {
                    **e,
                    "Detail": e["Detail"]
                    if isinstance(e.get("Detail"), str)
                    else json.dumps(e.get("Detail", {})),
                }
                for e in payload["Entries"]
            ]
            return dict(run.aws.client("events").put_events(Entries=entries))
        raise DriftloopError(f"step functions: resource {resource} is not played locally")


def _tar_member(s3: Any, bucket: str, key: str, member: str) -> bytes:
    import tarfile

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        for info in tar.getmembers():
            if info.name.lstrip("./") == member:
                extracted = tar.extractfile(info)
                if extracted is not None:
                    return extracted.read()
    raise DriftloopError(f"s3://{bucket}/{key}: no {member} inside")


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the run did, for the summary, metrics.json, the timeline and the e2e test."""

    requests_sent: int = 0
    rows_sent: int = 0
    request_errors: int = 0
    event_ids: list[str] = field(default_factory=list)
    labels_uploaded: int = 0
    traffic: dict[datetime, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    drift_windows: list[dict[str, Any]] = field(default_factory=list)
    quality_windows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    retrainings: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    check_calls: Counter[str] = field(default_factory=Counter)


class DemoRun:
    """Sets up the local AWS, then replays the timeline hour by hour."""

    def __init__(self, options: DemoOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.clock = SimClock(options.start)
        self.ledger = Ledger()
        self.timings: dict[str, float] = {}
        self.executions: list[Any] = []
        self.pending_updates: dict[str, Any] = {}
        self.deploy_wait_seconds = DEFAULT_DEPLOY_WAIT_SECONDS
        # set in run()
        self.aws: Any = None
        self.dep: Any = None
        self.pipe: Any = None
        self.handlers: Any = None
        self.fleet: Any = None
        self.engine: Any = None
        self.s3: Any = None
        self.window_hours = 1

    # -- helpers ---------------------------------------------------------------------

    def event(self, kind: str, text: str, link: str | None = None) -> None:
        self.ledger.events.append(
            {
                "time": iso(self.clock.now()),
                "kind": kind,
                "text": text,
                **({"link": link} if link else {}),
            }
        )
        day = (self.clock.now() - self.options.start).total_seconds() / 86400
        self.progress.event(f"day {day:5.2f}  {text}")

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started

    def _rel_report(self, uri: str | None, suffix: str = ".html") -> str | None:
        if not uri:
            return None
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        role = next((r for r, b in self.dep.buckets.items() if b == bucket), None)
        if role is None:
            return None
        return f"buckets/{role}/{key.removesuffix('.json')}{suffix}"

    def _read_json(self, uri: str) -> dict[str, Any]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return dict(json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))

    # -- set-up ----------------------------------------------------------------------

    def provision(self) -> None:
        started = time.perf_counter()
        aws = self.aws
        try:
            app = synthesize_cached(demo_context())
            resolver = TemplateResolver(aws.region)
            outputs, skipped = create_stateful_stack(aws, app, resolver)
            self.dep = read_deployment(app, resolver, outputs, aws.region)
            if skipped:
                self.dep.notes.append(
                    "moto's CloudFormation does not play "
                    + ", ".join(skipped)
                    + " (bucket policies and CDK metadata are not enforced)"
                )
        except Exception as exc:  # noqa: BLE001 - any synthesis/CFN failure: documented fallback
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            self.dep = fallback_deployment(aws, reason)
        self._timed("provision", started)
        add_documented_functions(self.dep, aws.region)
        self.pipe = materialize(aws, self.dep)
        self.window_hours = int(self.dep.env("lambdas.drift_check.handler")["WINDOW_HOURS"])
        self.progress.info(f"resources: {self.dep.source}")
        for note in self.dep.notes:
            self.progress.info(f"  note: {note}")

    def upload_initial_data(self, folder: Path) -> None:
        paths = initial_training_data(self.options, folder)
        for split in ("train", "validation", "holdout"):
            self.s3.upload_file(
                str(paths[split]), self.dep.buckets["datasets"], f"training/initial/{split}.csv"
            )

    def seed_model(self) -> None:
        """Train the first model, create its SageMaker records, promote its baseline, serve it."""
        from driftloop.local.training import run_training_job

        started = time.perf_counter()
        datasets, artifacts = self.dep.buckets["datasets"], self.dep.buckets["artifacts"]
        job_name = f"driftloopdemo-initial-{self.options.seed}"
        job = run_training_job(
            job_name=job_name,
            channels={
                split: f"s3://{datasets}/training/initial/{split}.csv"
                for split in ("train", "validation")
            },
            hyperparameters={"seed": self.options.seed},
            output_s3_uri=f"s3://{artifacts}/models",
            s3_client=self.s3,
            env={"OMP_NUM_THREADS": "1"},
        )
        self._record_training_job(job_name, job.model_data_url or "", job.metrics)
        # The model stack serves models/initial/model.tar.gz (the seed model's place).
        seed_url = f"s3://{artifacts}/models/initial/model.tar.gz"
        self.s3.copy_object(
            Bucket=artifacts,
            Key="models/initial/model.tar.gz",
            CopySource={"Bucket": artifacts, "Key": f"models/{job_name}/output/model.tar.gz"},
        )
        sm = self.aws.client("sagemaker")
        model = dict(
            self.dep.seed_model
            or {
                "ModelName": "driftloopdemo-initial-model",
                "ExecutionRoleArn": f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/driftloop-demo-sagemaker",
                "PrimaryContainer": {
                    "Image": "sagemaker-scikit-learn",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                },
            }
        )
        model["PrimaryContainer"] = {**model["PrimaryContainer"], "ModelDataUrl": seed_url}
        sm.create_model(
            **{
                k: v
                for k, v in model.items()
                if k in ("ModelName", "ExecutionRoleArn", "PrimaryContainer")
            }
        )
        config = dict(
            self.dep.seed_endpoint_config
            or {
                "EndpointConfigName": "driftloopdemo-initial-config",
                "ProductionVariants": [
                    {
                        "VariantName": self.dep.variant,
                        "ModelName": model["ModelName"],
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                        "InitialVariantWeight": 1.0,
                    }
                ],
                "DataCaptureConfig": self.dep.capture_config,
            }
        )
        sm.create_endpoint_config(
            **{
                k: v
                for k, v in config.items()
                if k
                in ("EndpointConfigName", "ProductionVariants", "DataCaptureConfig", "KmsKeyId")
            }
        )
        sm.create_endpoint(
            EndpointName=self.dep.endpoint_name, EndpointConfigName=config["EndpointConfigName"]
        )
        # The model's baseline (inside model.tar.gz) is what the drift check compares with.
        baseline = _tar_member(self.s3, artifacts, "models/initial/model.tar.gz", "baseline.json")
        baseline_key = self.dep.env("lambdas.drift_check.handler")["BASELINE_KEY"]
        for key in (baseline_key, f"baselines/{model['ModelName']}/baseline.json"):
            self.s3.put_object(
                Bucket=artifacts, Key=key, Body=baseline, ContentType="application/json"
            )
        self.fleet.start(model["ModelName"], seed_url)
        self.fleet.serving = model["ModelName"]
        self.ledger.models.append(
            {
                "name": model["ModelName"],
                "from": iso(self.clock.now()),
                "to": None,
                "validation_auc": job.metrics.get("validation:auc"),
            }
        )
        self._timed("seed model", started)
        auc = job.metrics.get("validation:auc")
        self.progress.info(
            f"seed model {model['ModelName']} trained in {job.seconds:.1f} s"
            + (f" (validation AUC {auc:.3f})" if auc is not None else "")
            + f"; serving on {self.fleet.served[model['ModelName']].endpoint.url} with data "
            f"capture at {self.dep.capture_config.get('InitialSamplingPercentage', 100)}% "
            "sampling (the demo captures every request)"
        )

    def _record_training_job(
        self, job_name: str, model_data_url: str, job_metrics: dict[str, float]
    ) -> None:
        """What SageMaker would remember of the job (register_model describes it)."""
        with contextlib.suppress(Exception):
            self.aws.client("sagemaker").create_training_job(
                TrainingJobName=job_name,
                AlgorithmSpecification={
                    "TrainingImage": self.dep.image_uri or "sklearn",
                    "TrainingInputMode": "File",
                },
                RoleArn=self.dep.role_arn or f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/sagemaker",
                OutputDataConfig={"S3OutputPath": model_data_url.rsplit("/", 3)[0]},
                ResourceConfig={
                    "InstanceType": "ml.m5.large",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 30,
                },
                StoppingCondition={"MaxRuntimeInSeconds": 3600},
                HyperParameters={"seed": str(self.options.seed)},
            )

    # -- the retraining workflow's SageMaker steps and the deployment ------------------

    def train_challenger(self, execution: RetrainExecution) -> None:
        """Train: CreateTrainingJob (.sync) with the snapshot's channels, run locally."""
        from driftloop.local.training import run_training_job

        doc = execution.doc
        snapshot = doc["snapshot"]
        job_name = str(doc["training_job_name"])
        output = str(doc["challenger_model_data_url"]).rsplit("/", 3)[0]
        started = time.perf_counter()
        job = run_training_job(
            job_name=job_name,
            channels={
                name: snapshot[f"{name}_uri"]
                for name in ("train", "validation", "baseline")
                if snapshot.get(f"{name}_uri")
            },
            hyperparameters={"seed": self.options.seed},
            output_s3_uri=output,
            s3_client=self.s3,
            env={"OMP_NUM_THREADS": "1"},
        )
        self._timed("retraining: train", started)
        if job.model_data_url != doc["challenger_model_data_url"]:
            raise DriftloopError(
                f"training job {job_name} wrote {job.model_data_url}, not the document's "
                f"{doc['challenger_model_data_url']}"
            )
        self._record_training_job(job_name, job.model_data_url or "", job.metrics)
        doc["hyperparameters"] = {"seed": str(self.options.seed)}

    def evaluate_challenger(self, execution: RetrainExecution) -> None:
        """Evaluate: CreateProcessingJob (.sync) running training/evaluate.py locally."""
        from driftloop.local.training import TRAINING_DIR, run_processing_job

        doc = execution.doc
        champion = (doc.get("champion") or {}).get("model_data_url")
        started = time.perf_counter()
        run_processing_job(
            job_name=str(doc["processing_job_name"]),
            inputs={
                "champion": (champion, "/opt/ml/processing/input/champion"),
                "challenger": (
                    doc["challenger_model_data_url"],
                    "/opt/ml/processing/input/challenger",
                ),
                "holdout": (doc["snapshot"]["holdout_uri"], "/opt/ml/processing/input/holdout"),
            },
            outputs={
                "evaluation": ("/opt/ml/processing/output/evaluation", str(doc["evaluation_uri"]))
            },
            script=TRAINING_DIR / "evaluate.py",
            s3_client=self.s3,
            env={"OMP_NUM_THREADS": "1"},
        )
        self._timed("retraining: evaluate", started)

    def train_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """createTrainingJob.sync: record the job on moto, run it locally, describe it."""
        from driftloop.local.training import run_training_job_request

        started = time.perf_counter()
        with contextlib.suppress(Exception):
            self.aws.client("sagemaker").create_training_job(**request)
        # The source dir is the CDK's file asset of training/ (no asset bucket exists on
        # moto); the local runner uses the same files from training/.
        job = run_training_job_request(request, s3_client=self.s3, env={"OMP_NUM_THREADS": "1"})
        self._timed("retraining: train", started)
        return {
            "TrainingJobName": job.job_name,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": job.model_data_url},
            "FinalMetricDataList": [
                {"MetricName": k, "Value": v} for k, v in sorted(job.metrics.items())
            ],
            "HyperParameters": request.get("HyperParameters", {}),
        }

    def processing_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """createProcessingJob.sync: run the evaluation script locally."""
        from driftloop.local.training import TRAINING_DIR, run_processing_job_request

        started = time.perf_counter()
        request = dict(request)
        # The "code" input is the CDK's file asset of training/evaluate.py (no asset
        # bucket on moto): the runner takes the script from training/ instead.
        request["ProcessingInputs"] = [
            i for i in request.get("ProcessingInputs", []) if i.get("InputName") != "code"
        ]
        job = run_processing_job_request(
            request,
            s3_client=self.s3,
            script=TRAINING_DIR / "evaluate.py",
            env={"OMP_NUM_THREADS": "1"},
        )
        self._timed("retraining: evaluate", started)
        return {
            "ProcessingJobName": job.job_name,
            "ProcessingJobStatus": "Completed",
            "ProcessingOutputConfig": request.get("ProcessingOutputConfig", {}),
        }

    def publish(self, request: dict[str, Any]) -> dict[str, Any]:
        """sns:publish to the alerts topic on moto (created on first use)."""
        sns = self.aws.client("sns")
        topic = str(request["TopicArn"])
        topic = sns.create_topic(Name=topic.rsplit(":", 1)[-1])["TopicArn"]
        kwargs = {"TopicArn": topic, "Message": str(request.get("Message", ""))}
        if request.get("Subject"):
            kwargs["Subject"] = str(request["Subject"])[:100]
        return dict(sns.publish(**kwargs))

    def on_rejected(self, execution: RetrainExecution) -> None:
        decision = execution.doc.get("decision") or {}
        self.ledger.retrainings[-1].update(outcome="rejected", decision=decision)
        self.event("rejected", f"challenger rejected: {decision.get('reason', '')}")

    def notify(self, execution: RetrainExecution) -> None:
        """Notify: the SNS publish of the workflow (moto's SNS, the alerts topic)."""
        note = execution.doc.get("notification") or {}
        with contextlib.suppress(Exception):
            sns = self.aws.client("sns")
            topic = sns.create_topic(Name="driftloop-demo-alerts")["TopicArn"]
            sns.publish(
                TopicArn=topic,
                Subject=str(note.get("subject", "driftloop"))[:100],
                Message=str(note.get("message", "")) or "retraining finished",
            )

    def start_deployments(self) -> None:
        """UpdateEndpoint calls the deploy step made: stand up green, start the canary."""
        from driftloop.local.bluegreen import BlueGreenDeployment, CanaryPolicy, RollbackAlarm

        sm = self.aws.client("sagemaker")
        for request in self.engine.take():
            config = sm.describe_endpoint_config(EndpointConfigName=request.new_config)
            model_name = config["ProductionVariants"][0]["ModelName"]
            model = sm.describe_model(ModelName=model_name)
            url = model["PrimaryContainer"]["ModelDataUrl"]
            self.fleet.start(model_name, url)
            policy = CanaryPolicy.from_deployment_config(request.deployment_config)
            alarms = []
            if policy.alarm_names:
                described = self.aws.client("cloudwatch").describe_alarms(
                    AlarmNames=list(policy.alarm_names)
                )["MetricAlarms"]
                alarms = [RollbackAlarm.from_cloudwatch(a) for a in described]
            self.fleet.deployment = BlueGreenDeployment(
                blue=self.fleet.serving,
                green=model_name,
                policy=policy,
                alarms=alarms,
                started=self.clock.now(),
            )
            self.pending_updates[model_name] = request
            self.event(
                "deploy_started",
                f"blue/green deployment of {model_name}: {policy.canary_percent:g}% canary "
                f"for {policy.bake}, rollback alarms {', '.join(a.name for a in alarms)}",
            )

    def poll_deployment(self) -> None:
        dep = self.fleet.deployment
        if dep is None:
            return
        status = dep.poll(self.clock.now())
        if status == "baking":
            return
        request = self.pending_updates.pop(dep.green)
        self.engine.finish(request, shifted=status == "shifted")
        self.fleet.deployment = None
        record = dep.to_dict()
        self.ledger.deployments.append(record)
        if status == "shifted":
            old = self.fleet.serving
            self.fleet.serving = dep.green
            self.fleet.stop(old)
            now = iso(self.clock.now())
            for m in self.ledger.models:
                if m["to"] is None:
                    m["to"] = now
            self.ledger.models.append({"name": dep.green, "from": now, "to": None})
            self.event("deployed", f"challenger {dep.green} took all traffic ({dep.reason})")
        else:
            self.fleet.stop(dep.green)
            self.event("rollback", f"rolled back to {dep.blue}: {dep.reason}")

    # -- the scheduled checks and the retraining trigger -----------------------------

    def run_check(self, spec: ScheduleSpec, when: datetime) -> None:
        self.clock.advance_to(when)
        self.fleet.flush()
        event = Schedule(spec.name, timedelta(hours=1), when).scheduled_event(
            when, account=MOTO_ACCOUNT_ID, region=self.aws.region
        )
        started = time.perf_counter()
        result = self.handlers.invoke(spec.handler, event)
        kind = "drift" if "drift" in spec.handler else "quality"
        self._timed(f"{kind} checks", started)
        self.ledger.check_calls[kind] += 1
        for window in (result or {}).get("windows", []):
            if kind == "drift":
                self._record_drift_window(window)
            else:
                self._record_quality_window(window)
        self.deliver_events()

    def _record_drift_window(self, window: dict[str, Any]) -> None:
        report = self._read_json(window["report_uri"])
        scores: dict[str, float] = {}
        for name, entry in (report.get("features") or {}).items():
            score, threshold = entry.get("score"), entry.get("threshold")
            if isinstance(score, int | float) and isinstance(threshold, int | float) and threshold:
                scores[name] = float(score) / float(threshold)
        drifted = bool(window.get("alert"))
        self.ledger.drift_windows.append(
            {
                "start": window["window_start"],
                "end": window["window_end"],
                "n_rows": int(report.get("n_rows", 0)),
                "status": report.get("status"),
                "drift_share": float(report.get("drift_share") or 0.0),
                "drifted": drifted,
                "drifted_features": list(report.get("drifted_features") or []),
                "scores": scores,
                "report": self._rel_report(window["report_uri"]),
                "checked_at": iso(self.clock.now()),
                "model": self.fleet.serving,
            }
        )
        previous = (
            self.ledger.drift_windows[-2]["drifted"]
            if len(self.ledger.drift_windows) > 1
            else False
        )
        if drifted and not previous:
            features = ", ".join(report.get("drifted_features") or [])
            self.event(
                "drift",
                f"drift found in window {window['window_start']} "
                f"({report.get('drift_share', 0):.0%} of features: {features})",
                self._rel_report(window["report_uri"]),
            )

    def _record_quality_window(self, window: dict[str, Any]) -> None:
        report = self._read_json(window["report_uri"])
        metric = str(report.get("metric", "auc"))
        entry = (report.get("metrics") or {}).get(metric) or {}
        degraded = bool(report.get("degraded"))
        self.ledger.quality_windows.append(
            {
                "start": window["window_start"],
                "end": window["window_end"],
                "n": int(report.get("n_matched", 0)),
                "status": report.get("status"),
                "metric": metric,
                "auc": entry.get("current") if metric == "auc" else None,
                "value": entry.get("current"),
                "baseline": entry.get("baseline"),
                "degraded": degraded,
                "report": self._rel_report(window["report_uri"]),
            }
        )
        previous = (
            self.ledger.quality_windows[-2]["degraded"]
            if len(self.ledger.quality_windows) > 1
            else False
        )
        if degraded and not previous:
            self.event(
                "quality",
                f"quality degraded in window {window['window_start']}: "
                f"{metric} {entry.get('current', float('nan')):.3f} vs baseline "
                f"{entry.get('baseline', float('nan')):.3f}",
                self._rel_report(window["report_uri"]),
            )

    def deliver_events(self) -> None:
        """EventBridge -> the retraining rule's SQS target -> the trigger Lambda."""
        for event in self.pipe.receive():
            # EventBridge stamps `time` when the event is put: on the simulated clock,
            # that is now (the loop polls right after each check).
            event["time"] = iso(self.clock.now())
            result = self.handlers.invoke("lambdas.retrain_trigger.handler", event)
            self.ledger.triggers.append(
                {
                    "time": event["time"],
                    "detail_type": event.get("detail-type"),
                    "status": result.get("status"),
                }
            )
            if result.get("started"):
                self.start_execution(str(result["execution_arn"]), event)
            elif result.get("status") == "cooldown" and not any(
                t["status"] == "cooldown" for t in self.ledger.triggers[:-1]
            ):
                self.event(
                    "suppressed",
                    f"{event.get('detail-type')} again: retraining held "
                    "by the cooldown lock (one retraining per drift episode)",
                )

    def start_execution(self, arn: str, event: dict[str, Any]) -> None:
        sfn = self.aws.client("stepfunctions")
        document = json.loads(sfn.describe_execution(executionArn=arn)["input"])
        execution: Any
        definition = self.dep.state_machine_definition
        if definition and "States" in definition:
            execution = DefinitionExecution(self, arn, document, self.clock.now(), definition)
        else:
            execution = RetrainExecution(self, arn, document, self.clock.now())
        self.executions.append(execution)
        self.ledger.retrainings.append(
            {
                "run_id": execution.run_id,
                "started": iso(self.clock.now()),
                "reason": event.get("detail-type"),
                "outcome": "running",
            }
        )
        self.event(
            "retrain_started", f"retraining {execution.run_id} started ({event.get('detail-type')})"
        )
        self.advance_executions()

    def advance_executions(self) -> None:
        for execution in self.executions:
            if execution.done:
                continue
            started = time.perf_counter()
            execution.advance(self.clock.now())
            self._timed("retraining", started)
            if execution.done:
                self._finish_execution(execution)

    def _finish_execution(self, execution: Any) -> None:
        doc = execution.doc
        record = self.ledger.retrainings[self.executions.index(execution)]
        decision = doc.get("decision") or {}
        status = (doc.get("deployment") or {}).get("status")
        if execution.outcome != "failed":
            execution.outcome = status or (
                "rejected"
                if decision and not decision.get("deploy")
                else execution.outcome or "finished"
            )
        if execution.outcome == "rejected" and isinstance(execution, DefinitionExecution):
            self.event("rejected", f"challenger rejected: {decision.get('reason', '')}")
        if execution.outcome == "failed":
            cause = (doc.get("error") or {}).get("Cause", "") if isinstance(doc, dict) else ""
            self.event("failed", f"retraining {execution.run_id} failed: {cause}")
        record.update(
            outcome=execution.outcome or "finished",
            finished=iso(self.clock.now()),
            decision=doc.get("decision"),
            snapshot=doc.get("snapshot"),
            evaluation=doc.get("evaluation"),
            evaluation_uri=doc.get("evaluation_uri"),
            model_name=(doc.get("deployment") or {}).get("model_name"),
            steps=[s.name for s in execution.history],
            model_package_arn=doc.get("model_package_arn"),
        )
        # The execution ends on moto too, so the trigger's running-execution check sees it.
        with contextlib.suppress(Exception):
            from moto.core.utils import utcnow
            from moto.stepfunctions.models import stepfunctions_backends

            backend = stepfunctions_backends[MOTO_ACCOUNT_ID][self.aws.region]
            machine = backend.describe_state_machine(self.dep.state_machine_arn)
            for run in machine.executions:
                if run.execution_arn == execution.arn:
                    run.status = "FAILED" if execution.outcome == "failed" else "SUCCEEDED"
                    run.output = json.dumps(doc, default=str)
                    run.stop_date = utcnow()

    # -- traffic and late labels -----------------------------------------------------

    def send_requests(self, traffic: Traffic, first: int, last: int, bodies: list[bytes]) -> None:
        """Send requests [first, last) in time order; remember each row's eventId."""
        for r in range(first, last):
            self.clock.advance_to(traffic.request_times[r])
            if any(not e.done for e in self.executions):
                self.advance_executions()  # a Wait state may end before this request
            sent = self.fleet.send(bodies[r])
            n_rows = int(traffic.request_starts[r + 1] - traffic.request_starts[r])
            if not sent.ok or len(sent.scores) != n_rows:
                self.ledger.request_errors += 1
                raise DriftloopError(f"request {r} failed on {sent.model_name}")
            self.ledger.requests_sent += 1
            self.ledger.rows_sent += n_rows
            self.ledger.event_ids.append(sent.event_id)
            bucket = _floor(traffic.request_times[r], self.window_hours)
            self.ledger.traffic[bucket][sent.model_name] += n_rows
            if self.fleet.deployment is not None:
                self.poll_deployment()

    def upload_labels(self, traffic: Traffic, hour: datetime, rows: np.ndarray) -> None:
        """Labels that arrived during `hour`, as one ground-truth file in its folder."""
        from driftloop.quality import encode_ground_truth

        if len(rows) == 0:
            return
        frame = traffic.frame
        requests = frame["request"].to_numpy()[rows]
        starts = traffic.request_starts
        labels = frame[traffic.target].to_numpy()[rows]
        lines = []
        for row, request, label in zip(rows, requests, labels, strict=True):
            event_id = self.ledger.event_ids[request]
            n = int(starts[request + 1] - starts[request])
            rid = event_id if n == 1 else f"{event_id}:{int(row - starts[request])}"
            lines.append(encode_ground_truth(rid, int(label)))
        env = self.dep.env("lambdas.quality_check.handler")
        key = (
            f"{env['GROUND_TRUTH_PREFIX']}/{self.dep.endpoint_name}/"
            f"{hour:%Y/%m/%d/%H}/labels-{hour:%Y%m%d%H}.jsonl"
        )
        self.s3.put_object(Bucket=env["GROUND_TRUTH_BUCKET"], Key=key, Body=b"".join(lines))
        self.ledger.labels_uploaded += len(lines)

    def replay(self, traffic: Traffic) -> None:
        """Hour by hour: requests, due checks (and what they trigger), arrived labels."""
        import pandas as pd

        options = self.options
        bodies = _request_bodies(traffic)
        label_ns = _ns(traffic.frame["label_time"])
        label_order = np.argsort(label_ns, kind="stable")
        label_times = label_ns[label_order]
        anchor = options.start + SCHEDULE_ANCHOR_OFFSET
        schedules = [(Schedule.rate(s.name, s.expression, anchor), s) for s in self.dep.schedules]
        delay = int(self.dep.env("lambdas.quality_check.handler").get("LABEL_DELAY_HOURS", "0"))
        grace = int(self.dep.env("lambdas.drift_check.handler").get("GRACE_MINUTES", "15"))
        # Keep the schedule running after the last request until every window (and its
        # labels) has been checked: nothing sent goes unchecked.
        drain = timedelta(hours=self.window_hours + delay, minutes=grace) + max(
            (s.period for s, _ in schedules), default=timedelta(hours=1)
        )
        end = options.end + drain
        hours = int((end - options.start).total_seconds() // 3600) + 1
        times = np.asarray([pd.Timestamp(t).value for t in traffic.request_times])
        request = 0
        label_pos = 0
        onset_logged = False
        self.progress.phase("replay", hours)
        for h in range(hours):
            hour = options.start + timedelta(hours=h)
            hour_end = hour + timedelta(hours=1)
            if not onset_logged and hour >= options.onset_time:
                onset_logged = True
                self.clock.advance_to(options.onset_time)
                self.event(
                    "onset",
                    "the world changes: borrowers poorer, a rate shock "
                    "(covariate shift + concept drift)",
                )
            firings = sorted(
                (
                    (t, spec)
                    for sched, spec in schedules
                    for t in sched.firings(
                        hour - timedelta(microseconds=1), hour_end - timedelta(microseconds=1)
                    )
                ),
                key=lambda f: (f[0], f[1].handler),
            )
            for when, spec in firings:
                upto = int(np.searchsorted(times, pd.Timestamp(when).value, side="left"))
                self.send_requests(traffic, request, upto, bodies)
                request = upto
                self.advance_executions()
                self.poll_deployment()
                self.run_check(spec, when)
            upto = int(np.searchsorted(times, pd.Timestamp(hour_end).value, side="left"))
            self.send_requests(traffic, request, upto, bodies)
            request = upto
            self.clock.advance_to(hour_end)
            label_end = int(np.searchsorted(label_times, pd.Timestamp(hour_end).value, side="left"))
            self.upload_labels(traffic, hour, label_order[label_pos:label_end])
            label_pos = label_end
            self.fleet.flush()
            self.advance_executions()
            self.poll_deployment()
            where = (
                f"day {h // 24}/{options.days}" if hour < options.end else "last windows and labels"
            )
            self.progress.advance(1, suffix=f"{where}  {self.ledger.requests_sent} requests")
        self.progress.end_phase()
        if request != traffic.n_requests or label_pos != traffic.n_rows:
            raise DriftloopError(
                f"replay ended with {traffic.n_requests - request} requests "
                f"and {traffic.n_rows - label_pos} labels unsent"
            )

    # -- the whole run ---------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Set up, replay, and leave everything under --out; returns metrics.json's content."""
        from driftloop.local.bluegreen import SageMakerDeploymentEngine

        options = self.options
        wall = time.perf_counter()
        out = prepare_out(options.out)
        delay = (LABEL_DELAY_HOURS[0], LABEL_DELAY_HOURS[1])
        traffic = make_traffic(options, delay)
        self.progress.info(
            f"driftloop demo: {options.days} simulated days from {iso(options.start)}, "
            f"{traffic.n_requests} requests ({options.rows_per_request} rows each), drift onset "
            f"on day {options.onset}; output in {out}"
        )
        with (
            MotoServer() as aws,
            aws.environment(),
            _fresh_lambda_clients(),
            warnings.catch_warnings(),
        ):
            # Powertools warns when a handler publishes no metric in a run (a check with
            # no window due): expected here, noise on the terminal.
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            self.aws = aws
            self.s3 = aws.client("s3")
            self.progress.info(f"moto (AWS API) on {aws.endpoint_url}")
            self.engine = SageMakerDeploymentEngine()
            self.engine.install(MOTO_ACCOUNT_ID, aws.region)
            try:
                self.progress.phase("set-up", 3)
                self.provision()
                self.progress.advance(1, "resources")
                self.handlers = Handlers(self.dep, aws.region, out / "logs" / "lambdas.log")
                self.fleet = Fleet(aws, self.dep, self.clock, options.seed)
                try:
                    with tempfile.TemporaryDirectory(prefix="driftloop-demo-") as tmp:
                        self.upload_initial_data(Path(tmp))
                    self.progress.advance(1, "initial data")
                    self.seed_model()
                    self.progress.advance(1, "seed model serving")
                    self.progress.end_phase()
                    started = time.perf_counter()
                    self.replay(traffic)
                    self._timed("replay", started)
                finally:
                    self.fleet.close()
                    self.handlers.close()
                started = time.perf_counter()
                self.progress.phase("mirror", len(self.dep.buckets))
                counts = mirror_buckets(aws, self.dep.buckets, out, self.progress)
                self.progress.end_phase()
                captured = count_capture(out / "buckets" / "capture")
                self._timed("mirror", started)
            finally:
                self.engine.uninstall()
        self.timings["total"] = time.perf_counter() - wall
        metrics = self.metrics(traffic, counts, captured)
        (out / "metrics.json").write_text(
            json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8"
        )
        from driftloop.local.timeline import write_timeline

        write_timeline(metrics, out / "timeline.html")
        return metrics

    def metrics(
        self, traffic: Traffic, counts: dict[str, int], captured: dict[str, Any]
    ) -> dict[str, Any]:
        ledger, options = self.ledger, self.options
        onset = iso(options.onset_time)
        swaps = [m["from"] for m in ledger.models[1:]]
        aucs = [(q["start"], q["auc"]) for q in ledger.quality_windows if q.get("auc") is not None]

        def mean(values: list[float]) -> float | None:
            return float(np.mean(values)) if values else None

        before = mean([a for s, a in aucs if s < onset])
        decayed = mean([a for s, a in aucs if s >= onset and (not swaps or s < swaps[0])])
        after = mean([a for s, a in aucs if swaps and s >= swaps[-1]])
        traffic_rows = [
            {
                "start": iso(t),
                "end": iso(t + timedelta(hours=self.window_hours)),
                "rows": sum(c.values()),
                "by_model": dict(c),
            }
            for t, c in sorted(ledger.traffic.items())
        ]
        checked = sum(w["n_rows"] for w in ledger.drift_windows)
        window_starts = [w["start"] for w in ledger.drift_windows]
        deployed = [d for d in ledger.deployments if d["status"] == "shifted"]
        summary = {
            "days": options.days,
            "requests sent": ledger.requests_sent,
            "rows sent": ledger.rows_sent,
            "rows captured": captured["rows"],
            "rows checked": checked,
            "drift windows": len(ledger.drift_windows),
            "drift verdicts": sum(w["drifted"] for w in ledger.drift_windows),
            "quality windows": len(ledger.quality_windows),
            "retrainings": len(ledger.retrainings),
            "deploys": len(deployed),
            "rollbacks": sum(d["status"] == "rolled_back" for d in ledger.deployments),
            "AUC before drift": before,
            "AUC after onset": decayed,
            "AUC after swap": after,
        }
        return {
            "version": 1,
            "endpoint": self.dep.endpoint_name,
            "start": iso(options.start),
            "end": iso(options.end),
            "onset": onset,
            "scenario": {
                "days": options.days,
                "seed": options.seed,
                "onset day": options.onset,
                "requests/day": options.requests_per_day,
                "rows/request": options.rows_per_request,
                "window": f"{self.window_hours} h",
            },
            "resources": {
                "source": self.dep.source,
                "notes": self.dep.notes,
                "buckets": self.dep.buckets,
                "table": self.dep.table,
                "event_bus": self.dep.event_bus,
                "state_machine": self.dep.state_machine_arn,
                "settings": self.dep.settings,
                "objects": counts,
                "schedules": {spec.handler: spec.expression for spec in self.dep.schedules},
                "state_machine_definition": self.dep.state_machine_definition,
            },
            "features": list(traffic.features),
            "drift_share_threshold": _drift_share_threshold(self.dep),
            "windows": ledger.drift_windows,
            "quality": ledger.quality_windows,
            "reference_auc": before,
            "traffic": traffic_rows,
            "events": ledger.events,
            "models": ledger.models,
            "retrainings": ledger.retrainings,
            "deployments": ledger.deployments,
            "triggers": ledger.triggers,
            "counts": {
                "requests_sent": ledger.requests_sent,
                "rows_sent": ledger.rows_sent,
                "request_errors": ledger.request_errors,
                "labels_uploaded": ledger.labels_uploaded,
                "captured_records": captured["records"],
                "captured_rows": captured["rows"],
                "captured_unique_event_ids": captured["unique_event_ids"],
                "sent_event_ids_captured": len(set(ledger.event_ids) & captured["event_ids"]),
                "rows_checked": checked,
                "windows_checked_once": len(window_starts) == len(set(window_starts)),
                "check_invocations": dict(ledger.check_calls),
                "lambda_invocations": dict(self.handlers.calls),
            },
            "summary": summary,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
        }


@contextlib.contextmanager
def _fresh_lambda_clients() -> Iterator[None]:
    """The handlers cache boto3 clients per process (as a warm Lambda does): drop them
    before the run, so they are made against this moto server, and after it, so nothing
    later in the process talks to a server that has stopped."""
    from lambdas import _aws

    _aws.reset_clients()
    try:
        yield
    finally:
        _aws.reset_clients()


def _ns(column: Any) -> np.ndarray:
    """A tz-aware datetime column as int64 nanoseconds since the epoch (UTC)."""
    import pandas as pd

    return np.asarray(pd.DatetimeIndex(column).tz_convert("UTC").asi8, dtype=np.int64)


def _floor(when: datetime, hours: int) -> datetime:
    seconds = int(when.timestamp())
    return datetime.fromtimestamp(seconds - seconds % (hours * 3600), UTC)


def _request_bodies(traffic: Traffic) -> list[bytes]:
    """Each request's CSV body (no header, schema order), built once up front."""
    frame = traffic.frame[list(traffic.features)]
    text = frame.to_csv(header=False, index=False, lineterminator="\n")
    lines = text.encode().split(b"\n")[:-1]
    starts = traffic.request_starts
    return [b"\n".join(lines[starts[i] : starts[i + 1]]) + b"\n" for i in range(len(starts) - 1)]


def _drift_share_threshold(dep: LocalDeployment) -> float:
    raw = dep.env("lambdas.drift_check.handler").get("DRIFT_CONFIG") or "{}"
    try:
        share = float(json.loads(raw).get("drift_share", 0.0))
    except (ValueError, AttributeError):
        share = 0.0
    return share


OUT_MARKER = ".driftloop-demo"


def prepare_out(out: Path) -> Path:
    """An empty output folder; a previous demo's output (metrics.json inside) is replaced."""
    out = out.resolve()
    if out.exists():
        if not out.is_dir():
            raise DriftloopError(f"{out}: --out exists and is not a folder")
        if any(out.iterdir()) and not (out / OUT_MARKER).is_file():
            raise DriftloopError(
                f"{out}: --out is a non-empty folder that is not a demo output; "
                "refusing to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / OUT_MARKER).write_text("written by driftloop.local.loop; replaced by the next run\n")
    return out


def count_capture(folder: Path) -> dict[str, Any]:
    """Records, rows and distinct eventIds of the mirrored capture files."""
    from driftloop.capture import iter_capture_paths, read_capture
    from driftloop.errors import MalformedLog
    from driftloop.schema import Schema
    from training import datagen

    schema = Schema.from_dict(datagen.schema_dict())
    records = rows = 0
    event_ids: set[str] = set()
    duplicates = 0
    malformed = MalformedLog()
    if folder.is_dir():
        for path in iter_capture_paths(folder):
            with path.open("rb") as fh:
                for batch in read_capture(fh, schema=schema, malformed=malformed, name=str(path)):
                    rows += batch.n_rows
                    for eid in batch.event_ids or []:
                        if ":" in eid and not eid.endswith(":0"):
                            continue
                        base = eid.rsplit(":", 1)[0] if eid.endswith(":0") else eid
                        records += 1
                        duplicates += base in event_ids
                        event_ids.add(base)
    return {
        "records": records,
        "rows": rows,
        "unique_event_ids": len(event_ids),
        "duplicates": duplicates,
        "event_ids": event_ids,
        "malformed": malformed.total,
    }


def summary_table(metrics: dict[str, Any]) -> str:
    rows = []
    for key, value in metrics["summary"].items():
        text = "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        rows.append((key, text))
    rows.append(("wall time", f"{metrics['timings_s'].get('total', 0):.0f} s"))
    return render_table(rows, title="driftloop demo summary")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    progress = Progress(quiet=options.quiet)
    # One OpenMP thread per process: the machine is shared and requests are small.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging_quiet()
    try:
        metrics = DemoRun(options, progress).run()
    except KeyboardInterrupt:
        progress.always("driftloop demo: interrupted; moto and the endpoints were stopped")
        return 130
    except DriftloopError as exc:
        progress.always(f"driftloop demo: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - one line for the user, the trace in a file
        import traceback

        log = options.out.resolve() / "logs" / "error.log"
        with contextlib.suppress(OSError):
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc(), encoding="utf-8")
        first = str(exc).splitlines()[0] if str(exc) else ""
        progress.always(
            f"driftloop demo: failed: {type(exc).__name__}: {first} (traceback in {log})"
        )
        return 1
    progress.always(summary_table(metrics))
    out = options.out.resolve()
    progress.always(
        f"timeline: {out / 'timeline.html'}\nmetrics:  {out / 'metrics.json'}\n"
        f"buckets:  {out / 'buckets'}/"
    )
    return 0


def logging_quiet() -> None:
    """moto, botocore and werkzeug log at INFO; the demo's own lines are what matter."""
    import logging

    for name in ("moto", "botocore", "werkzeug", "urllib3", "driftloop.local.endpoint"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*not supported by moto.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="No application metrics to publish")


if __name__ == "__main__":
    sys.exit(main())
