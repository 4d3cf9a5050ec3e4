"""The stateful stack: what protects the data, and the logical IDs that must never change."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import Synth, resources

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

# Renaming any of these replaces a bucket, the key or the table on the next deploy (with
# RETAIN: an orphaned copy and an empty new one). Change them only with a migration plan.
PINNED = {
    "DataKey5F086070": "AWS::KMS::Key",
    "DataAccessLogsC0C25EE4": "AWS::S3::Bucket",
    "DataDatasetsF476037B": "AWS::S3::Bucket",
    "DataArtifacts5613094C": "AWS::S3::Bucket",
    "DataCapture9D9558FF": "AWS::S3::Bucket",
    "DataGroundTruth82F75DD7": "AWS::S3::Bucket",
    "DataReportsDF118707": "AWS::S3::Bucket",
    "StateTable962DE04C": "AWS::DynamoDB::Table",
}
DATA_BUCKETS = [k for k, v in PINNED.items() if v == "AWS::S3::Bucket" and "AccessLogs" not in k]


def test_stateful_logical_ids_are_pinned(synth: Synth) -> None:
    # Given the synthesized stateful stack
    template = synth.templates["stateful"]
    # When its stateful resources are listed
    stateful_types = {"AWS::KMS::Key", "AWS::S3::Bucket", "AWS::DynamoDB::Table"}
    found = {k: v["Type"] for k, v in template["Resources"].items() if v["Type"] in stateful_types}
    # Then they are exactly the pinned ones, all retained on delete and on replacement
    assert found == PINNED
    for logical_id in PINNED:
        resource = template["Resources"][logical_id]
        assert resource["DeletionPolicy"] == "Retain", logical_id
        assert resource["UpdateReplacePolicy"] == "Retain", logical_id


def test_termination_protection(synth: Synth) -> None:
    assert synth.stacks["stateful"].termination_protection is True


def test_key_rotates(synth: Synth) -> None:
    synth.template("stateful").has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


@pytest.mark.parametrize("logical_id", DATA_BUCKETS)
def test_data_buckets_are_kms_encrypted_versioned_private_and_logged(
    synth: Synth, logical_id: str
) -> None:
    # Given a data bucket
    props = synth.templates["stateful"]["Resources"][logical_id]["Properties"]
    # Then it uses the driftloop key with S3 Bucket Keys
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
        "Fn::GetAtt": ["DataKey5F086070", "Arn"]
    }
    assert sse["BucketKeyEnabled"] is True
    # And it is versioned, never public, and logs its access to the access-log bucket
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": "DataAccessLogsC0C25EE4"
    }
    # And old versions expire
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == 30 for r in rules)


def test_access_log_bucket_uses_sse_s3(synth: Synth) -> None:
    # Given the access-log bucket (S3 log delivery cannot write with a customer KMS key)
    props = synth.templates["stateful"]["Resources"]["DataAccessLogsC0C25EE4"]["Properties"]
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    # Then it is SSE-S3, versioned, private and its logs expire
    assert sse["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 365


def _denies_insecure_transport(policy: dict[str, Any]) -> bool:
    return any(
        s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in policy["PolicyDocument"]["Statement"]
    )


def test_every_bucket_is_tls_only(synth: Synth) -> None:
    # Given every bucket and every bucket policy
    template = synth.templates["stateful"]
    buckets = resources(template, "AWS::S3::Bucket")
    policies = resources(template, "AWS::S3::BucketPolicy")
    # Then each bucket has a policy that denies requests without TLS
    covered = {
        p["Properties"]["Bucket"]["Ref"]
        for p in policies.values()
        if _denies_insecure_transport(p["Properties"])
    }
    assert covered == set(buckets)


def test_capture_lifecycle_tiers_then_expires(synth: Synth) -> None:
    # Given the capture bucket's lifecycle rules
    props = synth.templates["stateful"]["Resources"]["DataCapture9D9558FF"]["Properties"]
    rule = next(
        r for r in props["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "capture/"
    )
    # Then captured traffic moves to Infrequent Access, then Glacier IR, then expires
    assert rule["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": 30},
        {"StorageClass": "GLACIER_IR", "TransitionInDays": 90},
    ]
    assert rule["ExpirationInDays"] == 365 and rule["Status"] == "Enabled"


def test_state_table(synth: Synth) -> None:
    # Then the table is keyed by pk (string), recoverable and encrypted with the data key
    synth.template("stateful").has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": {"Fn::GetAtt": ["DataKey5F086070", "Arn"]},
            },
            "DeletionProtectionEnabled": True,
            "BillingMode": "PAY_PER_REQUEST",
        },
    )


def test_exports_for_the_other_stacks(synth: Synth) -> None:
    # Then every shared resource is exported under a stable, readable name
    outputs = synth.templates["stateful"]["Outputs"]
    exported = {o["Export"]["Name"] for o in outputs.values() if "Export" in o}
    for name in ("Datasets", "Artifacts", "Capture", "GroundTruth", "Reports"):
        assert {f"Driftloop-{name}BucketName", f"Driftloop-{name}BucketArn"} <= exported
    assert {
        "Driftloop-DataKeyArn",
        "Driftloop-StateTableName",
        "Driftloop-StateTableArn",
    } <= exported
