"""driftloop's Lambda functions: one bundle, one set of defaults, scheduled checks on top.

Every function runs the same code asset (lambdas/ + driftloop/ + the runtime wheels, see
infra/lambda_bundle.py), on Python 3.12 (the wheels in build/lambda-deps are fetched for
exactly that runtime), with Powertools named by environment, X-Ray active and a log
group with a retention, so logs neither vanish nor pile up forever.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RUNTIME = lambda_.Runtime.PYTHON_3_12
METRICS_NAMESPACE = "driftloop"
# POWERTOOLS_SERVICE_NAME of each function; Powertools adds it to every metric as the
# `service` dimension, so the dashboard and alarms use the same names.
SERVICE_DRIFT = "drift-check"
SERVICE_QUALITY = "quality-check"
SERVICE_TRIGGER = "retrain-trigger"
SERVICE_STEPS = "retrain-steps"


def bundle_code(path: str) -> lambda_.Code:
    return lambda_.Code.from_asset(path)


class DriftloopFunction(Construct):
    """A Lambda function of the driftloop bundle with the project's defaults."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        handler: str,
        service: str,
        description: str,
        environment: Mapping[str, str],
        log_level: str,
        memory_mb: int = 512,
        timeout: cdk.Duration | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
    ) -> None:
        super().__init__(scope, id_)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        env = {
            "POWERTOOLS_SERVICE_NAME": service,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "LOG_LEVEL": log_level,
            **environment,
        }
        self.service = service
        # An own role instead of the AWSLambdaBasicExecutionRole managed policy: the
        # function may write to its own log group and nothing else by default.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"driftloop {service} Lambda",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,  # the wheels are manylinux x86_64
            code=code,
            handler=handler,
            description=description,
            environment=env,
            memory_size=memory_mb,
            timeout=timeout or cdk.Duration.minutes(1),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            role=self.role,
        )


class ScheduledCheck(Construct):
    """A check function invoked by an EventBridge schedule.

    A failed asynchronous invocation is retried twice by EventBridge, then parked in the
    dead-letter queue, so a run that could not start is visible rather than lost (the
    next run would pick the window up anyway: the checkpoint only moves on success).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        handler: str,
        service: str,
        description: str,
        environment: Mapping[str, str],
        schedule: str,
        log_level: str,
        memory_mb: int,
        timeout: cdk.Duration,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id_)
        self.handler = DriftloopFunction(
            self,
            "Handler",
            code=code,
            handler=handler,
            service=service,
            description=description,
            environment=environment,
            log_level=log_level,
            memory_mb=memory_mb,
            timeout=timeout,
        )
        self.function = self.handler.function
        self.schedule_rule = events.Rule(
            self,
            "Schedule",
            description=f"{description} (schedule)",
            schedule=events.Schedule.expression(schedule),
        )
        self.schedule_rule.add_target(
            targets.LambdaFunction(
                self.function,
                dead_letter_queue=dead_letter_queue,
                retry_attempts=2,
                max_event_age=cdk.Duration.hours(1),
            )
        )
