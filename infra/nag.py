"""cdk-nag (AwsSolutions) on every stack, and each acknowledged finding with its reason.

cdk-nag 3 reports through CDK's policy-validation plugins: an unacknowledged finding
fails `cdk synth`. Findings are acknowledged one at a time, on the narrowest construct
(the role or function they belong to), with a reason a security reviewer can check; the
infra tests assert that nothing else is reported. Most are the wildcard shapes that the
CDK's `grant_*` methods write on purpose: object ARNs under one bucket prefix, and the
`s3:GetObject*` / `kms:GenerateDataKey*` action families.
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

GRANT_ACTIONS = {
    "s3:GetObject*": "CDK grant_read on one driftloop bucket: GetObject, its Acl/Version variants",
    "s3:GetBucket*": "CDK grant_read on one driftloop bucket: bucket location/versioning lookups",
    "s3:List*": "CDK grant_read on one driftloop bucket: listing the objects the role may read",
    "s3:Abort*": "CDK grant_put: aborting the role's own multipart uploads to one bucket",
    "s3:DeleteObject*": "CDK grant_write on one bucket prefix (the training-job integration "
    "grants write on its output prefix, models/)",
    "kms:GenerateDataKey*": "CDK key grant on the one driftloop key: writing encrypted objects",
    "kms:ReEncrypt*": "CDK key grant on the one driftloop key: S3 re-encrypts on copy",
}
XRAY = "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions"
PYTHON_312 = (
    "Python 3.12 on purpose: build/lambda-deps holds manylinux wheels fetched for 3.12 "
    "(Makefile LAMBDA_PYTHON) and the SageMaker scikit-learn image runs 3.12 too"
)


def add_checks(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(verbose=True))


def ack(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (rule id, with `[finding]` for granular rules)."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def ack_actions(scope: IConstruct, actions: Iterable[str]) -> None:
    for action in actions:
        ack(scope, f"AwsSolutions-IAM5[Action::{action}]", GRANT_ACTIONS[action])


def ack_objects(scope: IConstruct, arn: str, prefix: str, reason: str) -> None:
    """An object-ARN wildcard `<bucket ARN>/<prefix>*` (arn is the export name or ref)."""
    ack(scope, f"AwsSolutions-IAM5[Resource::{arn}/{prefix}*]", reason)


def ack_lambda(scope: IConstruct) -> None:
    """What every driftloop function carries: the pinned runtime and X-Ray's `*`."""
    ack(scope, "AwsSolutions-L1", PYTHON_312)
    ack(scope, "AwsSolutions-IAM5[Resource::*]", XRAY)
