"""What every SageMaker container role needs: its own log groups and its own metrics.

The serving role (model stack) and the job role (retraining stack) grant the same two
statements; this keeps them one statement shape, scoped the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam


def grant_sagemaker_telemetry(role: iam.IRole, stack: cdk.Stack, log_groups: Sequence[str]) -> None:
    """Let a SageMaker container write to `log_groups` and put metrics in SageMaker's namespaces."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=name,
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
                for name in log_groups
            ],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],  # PutMetricData has no resource-level permissions
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}},
        )
    )
