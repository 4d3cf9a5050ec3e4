"""The prebuilt SageMaker scikit-learn image, from the SageMaker SDK's own region tables.

AWS publishes the scikit-learn containers from a different account in every region; the
SageMaker SDK ships that table (`sagemaker.core.image_uris`). Hand-copying it into a dict
goes stale, so driftloop asks the SDK: for a stack pinned to a region, the URI itself;
for an environment-agnostic stack, a `CfnMapping` over every region the SDK lists,
resolved by CloudFormation with `Fn::FindInMap` at deploy time. The SDK reads local JSON
only (no AWS call); its import is slow (seconds), so it happens lazily and once.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from driftloop.errors import DriftloopError

FRAMEWORK = "sklearn"
SCOPES = ("inference", "training")
MAPPING_ID = "SklearnImageUris"


def _image_uris_module() -> Any:
    from sagemaker.core import image_uris  # deferred: the import costs seconds

    return image_uris


@functools.cache
def available_versions(scope: str) -> tuple[str, ...]:
    """The scikit-learn container versions the installed SDK knows for `scope`."""
    table = _image_uris_module().config_for_framework(FRAMEWORK)
    return tuple(table[scope]["versions"])


@functools.cache
def sdk_regions(version: str) -> tuple[str, ...]:
    """Every region the SDK lists for this version (the intersection of both scopes)."""
    table = _image_uris_module().config_for_framework(FRAMEWORK)
    regions: set[str] | None = None
    for scope in SCOPES:
        versions = table[scope]["versions"]
        if version not in versions:
            raise DriftloopError(
                f"cdk.json context 'sklearn_version': {version!r} is not a SageMaker "
                f"scikit-learn {scope} image known to the installed SDK "
                f"(known: {', '.join(versions)})"
            )
        scope_regions = set(versions[version]["registries"])
        regions = scope_regions if regions is None else regions & scope_regions
    return tuple(sorted(regions or ()))


@functools.cache
def image_uri(version: str, region: str, scope: str) -> str:
    """The image URI for one region, as `image_uris.retrieve` returns it."""
    if region not in sdk_regions(version):
        raise DriftloopError(
            f"cdk.json context 'region': the SageMaker SDK lists no scikit-learn {version} "
            f"image in {region!r}"
        )
    uri: str = _image_uris_module().retrieve(
        FRAMEWORK, region=region, version=version, image_scope=scope
    )
    return uri


@contextlib.contextmanager
def _one_endpoint_table() -> Iterator[None]:
    """Let `retrieve` parse botocore's endpoints.json once instead of on every call.

    `retrieve` builds a fresh botocore resolver per call (a 1 MB JSON parse); over every
    region and both scopes that is most of a synth's time. The SDK's private helper is
    memoized only for the duration of the loop, and only if it still exists.
    """
    from sagemaker.core import common_utils

    original = getattr(common_utils, "_botocore_resolver", None)
    if original is None:
        yield
        return
    common_utils._botocore_resolver = functools.cache(original)
    try:
        yield
    finally:
        common_utils._botocore_resolver = original


@functools.cache
def region_table(version: str) -> dict[str, dict[str, str]]:
    """{region: {"inference": uri, "training": uri}} over every region the SDK lists."""
    with _one_endpoint_table():
        return {
            region: {scope: image_uri(version, region, scope) for scope in SCOPES}
            for region in sdk_regions(version)
        }


def sklearn_image(scope: Construct, *, version: str, image_scope: str) -> str:
    """The image URI for `scope`'s stack: a literal when the stack has a region, else a token.

    The token is `Fn::FindInMap` on one `CfnMapping` per stack (created on first use).
    """
    if image_scope not in SCOPES:
        raise ValueError(f"image_scope must be one of {SCOPES}, not {image_scope!r}")
    stack = cdk.Stack.of(scope)
    if not cdk.Token.is_unresolved(stack.region):
        return image_uri(version, stack.region, image_scope)
    mapping = stack.node.try_find_child(MAPPING_ID)
    if mapping is None:
        mapping = cdk.CfnMapping(stack, MAPPING_ID, mapping=region_table(version))
    assert isinstance(mapping, cdk.CfnMapping)
    return mapping.find_in_map(cdk.Aws.REGION, image_scope)
