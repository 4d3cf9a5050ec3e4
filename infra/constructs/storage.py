"""Where driftloop keeps its data: the KMS key, the five data buckets, their access logs,
and the DynamoDB state table (checkpoints and the retraining lock).

These are the resources whose loss hurts, so they live in the stateful stack, are
retained when a stack is deleted, and keep their logical IDs (a test pins them).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

CAPTURE_PREFIX = "capture"
GROUND_TRUTH_PREFIX = "ground-truth"


class DataStore(Construct):
    """The KMS key and the datasets, artifacts, capture, ground-truth and reports buckets.

    Every data bucket is KMS-encrypted with one customer key (S3 Bucket Keys on, so a busy
    capture bucket does not pay per-object KMS calls), versioned, TLS-only, never public,
    and logs its access to a separate log bucket. The log bucket uses SSE-S3 because S3's
    log delivery cannot write with a customer KMS key.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        capture_ia_days: int,
        capture_glacier_days: int,
        capture_expire_days: int,
        noncurrent_expire_days: int,
        log_expire_days: int,
    ) -> None:
        super().__init__(scope, id_)
        self.key = kms.Key(
            self,
            "Key",
            description="driftloop data: datasets, models, captured traffic, reports, alerts",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        noncurrent = s3.LifecycleRule(
            id="ExpireNoncurrentVersions",
            noncurrent_version_expiration=cdk.Duration.days(noncurrent_expire_days),
            abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
            expired_object_delete_marker=True,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    expiration=cdk.Duration.days(log_expire_days),
                    noncurrent_version_expiration=cdk.Duration.days(1),
                )
            ],
        )
        self.datasets = self._bucket("Datasets", [noncurrent])
        self.artifacts = self._bucket("Artifacts", [noncurrent])
        self.capture = self._bucket(
            "Capture",
            [
                noncurrent,
                s3.LifecycleRule(
                    id="TierAndExpireCapture",
                    prefix=f"{CAPTURE_PREFIX}/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=cdk.Duration.days(capture_ia_days),
                        ),
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                            transition_after=cdk.Duration.days(capture_glacier_days),
                        ),
                    ],
                    expiration=cdk.Duration.days(capture_expire_days),
                ),
            ],
        )
        self.ground_truth = self._bucket("GroundTruth", [noncurrent])
        self.reports = self._bucket("Reports", [noncurrent])

    def _bucket(self, id_: str, rules: list[s3.LifecycleRule]) -> s3.Bucket:
        return s3.Bucket(
            self,
            id_,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{id_.lower()}/",
            lifecycle_rules=rules,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    @property
    def data_buckets(self) -> dict[str, s3.Bucket]:
        return {
            "datasets": self.datasets,
            "artifacts": self.artifacts,
            "capture": self.capture,
            "ground_truth": self.ground_truth,
            "reports": self.reports,
        }


class StateTable(Construct):
    """Checkpoints of the scheduled checks and the retraining cooldown lock (pk: string)."""

    def __init__(self, scope: Construct, id_: str, *, key: kms.IKey) -> None:
        super().__init__(scope, id_)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
