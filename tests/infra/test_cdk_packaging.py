"""The Lambda layer and code assets, bundled for real (pip from the wheelhouse, no Docker)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infra.lambda_layer import PackagingError, WheelhouseBundling
from tests.infra.synthesis import Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app

ROOT = Path(__file__).resolve().parents[2]


def code_dir(dev_stack: Synthesised) -> Path:
    code = dev_stack.properties(dev_stack.stack.ingest.function)["Code"]
    return dev_stack.asset_dir(code["S3Key"])


def layer_dir(dev_stack: Synthesised) -> Path:
    layers = dev_stack.template.find_resources(
        "AWS::Lambda::LayerVersion",
        {"Properties": {"Description": "Third-party packages of the DMP functions (functions/requirements.txt)"}},
    )
    (layer,) = layers.values()
    return dev_stack.asset_dir(layer["Properties"]["Content"]["S3Key"])


def test_layer_holds_the_lambda_platform_wheels(dev_stack: Synthesised) -> None:
    python = layer_dir(dev_stack) / "python"
    # The compiled extension is the Linux x86_64 CPython 3.11 build, whatever the host is.
    assert list(python.glob("pydantic_core/*.cpython-311-x86_64-linux-gnu.so"))
    assert (python / "aws_lambda_powertools").is_dir()
    assert (python / "yaml").is_dir()
    assert not (python / "boto3").exists(), "the runtime's boto3 must not be shadowed"


def test_code_asset_is_the_functions_package_alone(dev_stack: Synthesised) -> None:
    code = code_dir(dev_stack)
    assert [entry.name for entry in code.iterdir()] == ["functions"]
    assert (code / "functions" / "core" / "tables.py").is_file()
    for name in ("ingest", "builder", "lookup", "authorizer"):
        if (ROOT / "functions" / name / "handler.py").exists():
            assert (code / "functions" / name / "handler.py").is_file()
    assert not (code / "functions" / "requirements.txt").exists()


def test_every_function_shares_the_code_asset_and_the_layer(dev_stack: Synthesised) -> None:
    functions = dev_stack.template.find_resources("AWS::Lambda::Function", {"Properties": {"Runtime": "python3.11"}})
    ours = {key: f for key, f in functions.items() if str(f["Properties"].get("Handler", "")).startswith("functions.")}
    assert len(ours) == 8  # ingest, builder, lookup, authorizer, replay, importer, evaluator, sweep
    assert len({f["Properties"]["Code"]["S3Key"] for f in ours.values()}) == 1
    assert len({str(f["Properties"]["Layers"]) for f in ours.values()}) == 1
    for function in ours.values():
        assert function["Properties"]["Architectures"] == ["x86_64"]
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="bytecode is only written by the Lambda's Python")
def test_bytecode_is_shipped_and_never_revalidated(dev_stack: Synthesised) -> None:
    # Lambda cannot write __pycache__, and zipped timestamps would invalidate a
    # timestamp-based .pyc: only unchecked-hash bytecode is used at cold start.
    for pyc in (
        code_dir(dev_stack) / "functions" / "core" / "__pycache__" / "tables.cpython-311.pyc",
        next((layer_dir(dev_stack) / "python" / "pydantic" / "__pycache__").glob("main.cpython-311.pyc")),
    ):
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{pyc} is not an unchecked-hash .pyc"


def test_a_missing_wheelhouse_says_to_run_make_install(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic==2.13.4\n")
    bundling = WheelhouseBundling(requirements=requirements, wheelhouse=tmp_path / ".wheelhouse")
    with pytest.raises(PackagingError, match="run `make install`"):
        bundling.try_bundle(str(tmp_path / "out"))
