"""How the Lambda functions are packaged: one dependency layer and one code asset.

Both are built on the machine that synthesises, without Docker:
- the layer is `pip install`ed from `.wheelhouse/` (wheels for Lambda's platform that
  `make install` downloads), offline, into `python/`;
- the code asset is the `functions/` package copied to the asset root, so handlers are
  `functions.<name>.handler.handler` and local-only code (dmp/, tests/, infra/) stays out.
Both get `unchecked-hash` bytecode: Lambda cannot write `__pycache__`, and the zip's
normalised timestamps would invalidate pip's default timestamp-based .pyc files, so
without it every cold start would compile pydantic and Powertools from source.
"""

from __future__ import annotations

import compileall
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from py_compile import PycInvalidationMode
from typing import cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, Duration, ILocalBundling, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.compliance import acknowledge, ignore_lint, skip_check

RUNTIME = lambda_.Runtime.PYTHON_3_11
ARCHITECTURE = lambda_.Architecture.X86_64
# Must agree with RUNTIME/ARCHITECTURE and with the Makefile's LAMBDA_PLATFORM.
PIP_PLATFORM = [
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.11",
    "--only-binary=:all:",
]
METRICS_NAMESPACE = "DMP"
# Not shipped in the code asset: local bytecode caches, and the layer's input.
NOT_CODE = ("__pycache__", "*.pyc", "*.pyo", "requirements.txt")


class PackagingError(RuntimeError):
    """The layer or the code asset could not be built; synth stops with this message."""


def _compile_for_lambda(directory: Path) -> None:
    # Bytecode is only valid for the interpreter version that wrote it.
    if sys.version_info[:2] == (3, 11):
        compileall.compile_dir(directory, quiet=1, invalidation_mode=PycInvalidationMode.UNCHECKED_HASH)


@jsii.implements(ILocalBundling)
class WheelhouseBundling:
    """Installs functions/requirements.txt from the wheelhouse into `<out>/python`."""

    def __init__(self, *, requirements: Path, wheelhouse: Path) -> None:
        self.requirements = requirements
        self.wheelhouse = wheelhouse

    def fingerprint(self) -> str:
        """What the layer is built from: the pinned requirements and the wheels' names."""
        digest = hashlib.sha256(self.requirements.read_bytes())
        for wheel in sorted(self.wheelhouse.glob("*.whl")):
            digest.update(wheel.name.encode())
        digest.update(" ".join(PIP_PLATFORM).encode())
        digest.update(f"{sys.version_info[:2]}".encode())
        return digest.hexdigest()

    def check(self) -> None:
        if not any(self.wheelhouse.glob("*.whl")):
            raise PackagingError(
                f"the Lambda layer is built from the wheels in {self.wheelhouse}, which has none: run `make install`"
            )

    # jsii passes the bundling options as one positional struct, not as the keywords of the
    # generated ILocalBundling stub; hence the casts where these objects are used.
    def try_bundle(self, output_dir: str, options: BundlingOptions | None = None, /) -> bool:
        self.check()
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            "--no-compile",
            "--find-links",
            str(self.wheelhouse),
            "--target",
            str(Path(output_dir) / "python"),
            *PIP_PLATFORM,
            "-r",
            str(self.requirements),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PackagingError(
                f"pip could not install {self.requirements} from {self.wheelhouse} "
                f"(run `make install` to refresh the wheelhouse):\n{result.stderr.strip()}"
            )
        _compile_for_lambda(Path(output_dir) / "python")
        return True


@jsii.implements(ILocalBundling)
class PackageCopyBundling:
    """Copies one package directory to `<out>/<package name>`, without bytecode caches."""

    def __init__(self, package: Path) -> None:
        self.package = package

    def try_bundle(self, output_dir: str, options: BundlingOptions | None = None, /) -> bool:
        target = Path(output_dir) / self.package.name
        shutil.copytree(self.package, target, ignore=shutil.ignore_patterns(*NOT_CODE))
        _compile_for_lambda(target)
        return True


class LambdaPackaging(Construct):
    """The layer and the code shared by every function, and the one way to make a function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        root: Path,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._log_retention = log_retention
        self._removal_policy = removal_policy
        package = root / "functions"
        dependencies = WheelhouseBundling(requirements=package / "requirements.txt", wheelhouse=root / ".wheelhouse")
        if Stack.of(self).bundling_required:
            # Fail here, in Python, rather than inside jsii's bundling callback.
            dependencies.check()
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            description="Third-party packages of the DMP functions (functions/requirements.txt)",
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            removal_policy=removal_policy,
            code=lambda_.Code.from_asset(
                str(package),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=dependencies.fingerprint(),
                # The image is only a fallback that never runs: local bundling succeeds or raises.
                bundling=BundlingOptions(image=RUNTIME.bundling_image, local=cast(ILocalBundling, dependencies)),
            ),
        )
        self.code = lambda_.Code.from_asset(
            str(package),
            asset_hash_type=AssetHashType.SOURCE,
            exclude=[f"**/{pattern}" for pattern in NOT_CODE],
            bundling=BundlingOptions(
                image=RUNTIME.bundling_image, local=cast(ILocalBundling, PackageCopyBundling(package))
            ),
        )

    def function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        environment: Mapping[str, str],
        memory_size: int,
        timeout: Duration,
        reserved_concurrency: int | None,
        failures: str,
    ) -> lambda_.Function:
        """The function whose handler is `functions/<name>/handler.py`.

        It gets its own role and log group: the role may write only to that log group
        (no AWSLambdaBasicExecutionRole, which allows every log group), and everything
        else it may do is granted where the stack is assembled. `reserved_concurrency`
        (None: unreserved) is both its share of the account's concurrency and its ceiling.
        `failures` says how it is invoked and where a failed invocation goes instead of a
        Lambda dead-letter queue (which only asynchronous invocations use).
        """
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self._log_retention,
            removal_policy=self._removal_policy,
        )
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"DMP {name} function",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            scope,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"functions.{name}.handler.handler",
            code=self.code,
            layers=[self.layer],
            role=role,
            memory_size=memory_size,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            reserved_concurrent_executions=reserved_concurrency,
            environment={
                "POWERTOOLS_SERVICE_NAME": name,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                **environment,
            },
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "Python 3.11 is pinned on purpose: the layer's compiled wheels (pydantic-core, PyYAML, "
            "wrapt) are downloaded for cp311 (Makefile LAMBDA_PLATFORM); move both together.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which have no "
            "resource-level permissions; nothing else in this role is granted on '*'.",
        )
        _acknowledge_function_findings(function, log_group, name=name, failures=failures)
        if reserved_concurrency is None:
            skip_check(
                function,
                "CKV_AWS_115",
                f"Unreserved by the operator's choice ({name}_reserved_concurrency=0), for an account "
                "whose Lambda concurrency quota leaves nothing to reserve: it shares the unreserved pool.",
            )
        return function


def _acknowledge_function_findings(
    function: lambda_.Function, log_group: logs.LogGroup, *, name: str, failures: str
) -> None:
    """The findings every function of the factory shares, each for the reason given."""
    acknowledge(
        function,
        "Serverless-LambdaLatestVersion",
        "Python 3.11 is pinned on purpose: the layer's compiled wheels are downloaded for cp311 "
        "(Makefile LAMBDA_PLATFORM); the runtime and the wheels move together.",
    )
    no_dead_letters = f"No Lambda dead-letter queue (the {name} function's failures go elsewhere): {failures}"
    acknowledge(function, "Serverless-LambdaDLQ", no_dead_letters)
    skip_check(function, "CKV_AWS_116", no_dead_letters)
    skip_check(
        function,
        "CKV_AWS_117",
        "Outside a VPC on purpose: it reaches only AWS APIs (DynamoDB, S3, SQS, X-Ray), over TLS and "
        "authorised by its own least-privilege role, and no resource of the stack lives in a VPC; a VPC "
        "would add NAT or endpoint costs and nothing to protect.",
    )
    skip_check(
        function,
        "CKV_AWS_173",
        "The environment holds resource names and settings (and ingest's origin-verify value, which only "
        "proves a request came through CloudFront), encrypted at rest by Lambda's AWS-managed key; a "
        "customer-managed key would guard nothing more from the principals who may read the function.",
    )
    skip_check(
        log_group,
        "CKV_AWS_158",
        "Encrypted at rest by CloudWatch Logs with AWS-managed keys; the functions log no raw IPs "
        "(DESIGN.md), and who may read the logs is the account's IAM. A customer-managed key is a deliberate no.",
    )
    ignore_lint(
        function,
        "W3005",
        "CDK makes a function depend on its role explicitly as well as through `Fn::GetAtt`: harmless.",
    )
