"""Synthesised DMP stacks for the infra tests.

Synthesis is the slow part (the jsii runtime and, for real bundling, pip), so each
stack is synthesised once per session and shared: `prod_stack` with a non-default value
for every setting and bundling skipped, `dev_stack` exactly as `make synth` builds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.synthesis import (
    NON_BUYERS,
    PROD_CONTEXT,
    RETURNING_VISITORS,
    SKIP_BUNDLING,
    Synthesised,
    synthesise,
)


@pytest.fixture(scope="session")
def segments_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("segments")
    (directory / "returning-visitors.yaml").write_text(RETURNING_VISITORS)
    (directory / "non-buyers.yml").write_text(NON_BUYERS)
    (directory / "README.md").write_text("not a definition")
    return directory


@pytest.fixture(scope="session")
def prod_stack(tmp_path_factory: pytest.TempPathFactory, segments_dir: Path) -> Synthesised:
    context = {**PROD_CONTEXT, **SKIP_BUNDLING, "segments_dir": str(segments_dir)}
    return synthesise(context, tmp_path_factory.mktemp("prod.out"))


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesised:
    """cdk.json's defaults, with the real layer and code bundling."""
    return synthesise({}, tmp_path_factory.mktemp("dev.out"))
