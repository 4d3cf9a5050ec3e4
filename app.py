#!/usr/bin/env python3
"""The driftloop CDK app: cdk.json context -> one validated config -> the stacks.

This is the only place that reads configuration. A bad context value stops here with a
one-line message naming the key.
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from driftloop.errors import DriftloopError
from infra.config import DriftloopConfig
from infra.stacks import build_app


def main() -> None:
    app = cdk.App()
    try:
        config = DriftloopConfig.from_context(app.node.get_all_context())
        build_app(app, config)
    except DriftloopError as exc:
        print(f"driftloop: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.synth()


if __name__ == "__main__":
    main()
