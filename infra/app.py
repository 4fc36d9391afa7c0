"""The CDK app: `python -m infra.app` (make synth) or `npx aws-cdk synth|deploy` (cdk.json).

Synthesis is offline and environment-agnostic: no AWS calls, no lookups, no Docker.
Context comes from cdk.json; the CDK CLI's `-c key=value` overrides it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App

from infra.compliance import add_checks
from infra.lambda_layer import PackagingError
from infra.settings import ContextError, DeploySettings
from infra.stack import DmpStack
from infra.storage import InvalidSegmentDefinitions

ROOT = Path(__file__).resolve().parent.parent


def cdk_json_context() -> dict[str, Any]:
    """The defaults of cdk.json. The CDK CLI passes them itself; `python -m infra.app` does not."""
    return dict(json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"])


def create_app(*, context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, DmpStack]:
    """The app with its one stack; `context` overrides cdk.json (as `-c` does)."""
    app = App(
        # The CLI's context (CDK_CONTEXT_JSON) is applied after these and wins.
        context={**cdk_json_context(), **(context or {})},
        outdir=outdir or os.environ.get("CDK_OUTDIR") or str(ROOT / "cdk.out"),
    )
    settings = DeploySettings.from_context(app.node, root=ROOT)
    stack = DmpStack(
        app,
        settings=settings,
        root=ROOT,
        description=f"Data Management Platform ({settings.stage}): collection, segment builds, partner lookup",
    )
    add_checks(app)
    return app, stack


def main() -> None:
    try:
        app, _ = create_app()
    except (ContextError, InvalidSegmentDefinitions, PackagingError) as error:
        sys.exit(f"synth failed: {error}")
    app.synth()


if __name__ == "__main__":
    main()
