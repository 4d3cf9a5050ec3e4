"""One CloudWatch dashboard for the whole loop: serving, drift, quality, retraining.

Only metric widgets (no alarm widgets): an alarm widget needs the alarm's ARN through
Fn::GetAtt, which moto's CloudFormation cannot resolve, and the local deploy test
deploys these very templates. Per-feature drift scores and per-metric quality use
SEARCH expressions, since the feature names are only known at run time.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.functions import (
    METRICS_NAMESPACE,
    SERVICE_DRIFT,
    SERVICE_QUALITY,
    SERVICE_STEPS,
    SERVICE_TRIGGER,
)

HOUR = cdk.Duration.hours(1)
FIVE_MINUTES = cdk.Duration.minutes(5)


class LoopDashboard(Construct):
    """The driftloop dashboard (`self.dashboard`)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        endpoint_name: str,
        variant_name: str,
        functions: dict[str, lambda_.IFunction],
        state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, id_)
        self.endpoint_name = endpoint_name

        def sagemaker(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": endpoint_name, "VariantName": variant_name},
                statistic=statistic,
                period=FIVE_MINUTES,
                label=label,
            )

        def loop(
            name: str, service: str, statistic: str = "Maximum", label: str = ""
        ) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"Endpoint": endpoint_name, "service": service},
                statistic=statistic,
                period=HOUR,
                label=label or name,
            )

        def search(
            metric: str, dimension: str, service: str, label: str
        ) -> cloudwatch.MathExpression:
            query = (
                f"SEARCH('{{{METRICS_NAMESPACE},Endpoint,{dimension},service}} "
                f'MetricName="{metric}" Endpoint="{endpoint_name}" service="{service}"\', '
                "'Maximum', 3600)"
            )
            return cloudwatch.MathExpression(expression=query, label=label, period=HOUR)

        def graph(
            title: str, left: list[cloudwatch.IMetric], width: int = 8
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=left, width=width, height=6)

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", default_interval=cdk.Duration.days(7)
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# driftloop: `{endpoint_name}`\nServing, drift, quality and retraining "
                "of one endpoint. Alarms go to the driftloop alerts topic.",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            graph("Endpoint invocations", [sagemaker("Invocations", "Sum", "invocations")]),
            graph(
                "Endpoint latency (µs)",
                [
                    sagemaker("ModelLatency", "p50", "model p50"),
                    sagemaker("ModelLatency", "p99", "model p99"),
                    sagemaker("OverheadLatency", "p99", "overhead p99"),
                ],
            ),
            graph(
                "Endpoint errors",
                [
                    sagemaker("Invocation4XXErrors", "Sum", "4xx"),
                    sagemaker("Invocation5XXErrors", "Sum", "5xx"),
                ],
            ),
        )
        self.dashboard.add_widgets(
            graph(
                "Drift: share of drifted features",
                [loop("DriftShare", SERVICE_DRIFT), loop("DriftDetected", SERVICE_DRIFT)],
            ),
            graph(
                "Drift: per-feature score",
                [search("FeatureDriftScore", "Feature", SERVICE_DRIFT, "")],
            ),
            graph(
                "Drift: rows checked and malformed",
                [
                    loop("RowsChecked", SERVICE_DRIFT, "Sum"),
                    loop("MalformedRows", SERVICE_DRIFT, "Sum"),
                    loop("WindowsBehind", SERVICE_DRIFT),
                ],
            ),
        )
        self.dashboard.add_widgets(
            graph("Quality: metrics", [search("ModelQuality", "Metric", SERVICE_QUALITY, "")]),
            graph(
                "Quality: drop vs baseline",
                [loop("QualityDrop", SERVICE_QUALITY), loop("QualityDegraded", SERVICE_QUALITY)],
            ),
            graph(
                "Quality: labels",
                [
                    loop("LabelsMatched", SERVICE_QUALITY, "Sum"),
                    loop("PredictionsUnlabelled", SERVICE_QUALITY, "Sum"),
                    loop("LabelsUnmatched", SERVICE_QUALITY, "Sum"),
                ],
            ),
        )
        self.dashboard.add_widgets(
            graph(
                "Retraining runs",
                [
                    state_machine.metric_started(period=HOUR, statistic="Sum", label="started"),
                    state_machine.metric_succeeded(period=HOUR, statistic="Sum", label="succeeded"),
                    state_machine.metric_failed(period=HOUR, statistic="Sum", label="failed"),
                ],
            ),
            graph(
                "Retraining triggers and outcomes",
                [
                    loop("RetrainingStarted", SERVICE_TRIGGER, "Sum"),
                    loop("RetrainingSuppressed", SERVICE_TRIGGER, "Sum"),
                    loop("ChallengerAccepted", SERVICE_STEPS, "Sum"),
                    loop("DeploymentRolledBack", SERVICE_STEPS, "Sum"),
                ],
            ),
            graph(
                "Lambda errors",
                [
                    fn.metric_errors(period=FIVE_MINUTES, label=name)
                    for name, fn in sorted(functions.items())
                ],
            ),
        )
