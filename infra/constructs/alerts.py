"""Where driftloop tells people and other systems what happened.

The event bus carries driftloop's own events (`Drift Detected`, `Quality Degraded`,
`Retraining Finished`); the SNS topic carries alarms and workflow notices to humans
(an optional e-mail subscription) and to anything else that subscribes. The topic has its
own KMS key because CloudWatch alarms and EventBridge must be allowed to use it, and that
grant does not belong on the key that protects the data. A dead-letter queue keeps
scheduled invocations that could not be delivered.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class Alerts(Construct):
    """The driftloop event bus, the alerts topic (KMS, TLS-only) and a dead-letter queue."""

    def __init__(self, scope: Construct, id_: str, *, alert_email: str | None) -> None:
        super().__init__(scope, id_)
        self.bus = events.EventBus(self, "Bus", description="driftloop events")
        # The name via Fn::GetAtt rather than Ref: same value in AWS, and moto's
        # CloudFormation (the local deploy test) resolves only the attribute to a string.
        bus_resource = self.bus.node.default_child
        assert isinstance(bus_resource, events.CfnEventBus)
        self.bus_name: str = bus_resource.attr_name
        self.key = kms.Key(
            self,
            "TopicKey",
            description="driftloop alerts topic",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
            self.key.grant(iam.ServicePrincipal(service), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="driftloop alerts",
            master_key=self.key,
            enforce_ssl=True,
        )
        if alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alert_email))
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.action = cw_actions.SnsAction(self.topic)

    def notify(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        """Send the alarm's ALARM and OK transitions to the topic."""
        alarm.add_alarm_action(self.action)
        alarm.add_ok_action(self.action)
        return alarm
