"""The standard scanners on the synthesised templates: checkov and cfn-lint.

`python -m infra.scanners [DIR]` (`make lint`, after `make synth`) scans every
`*.template.json` of DIR (cdk.out); tests/infra/test_cdk_scanners.py scans the templates
the infra tests synthesise. Both fail on any finding that is not acknowledged on its
resource (infra/compliance.py: `skip_check`, `ignore_lint`), and on a checkov skip
without a reason. cdk-nag is not here: it runs inside every synth (infra/compliance.py).

The scanners run from their own virtualenv, `.venv-scan` (`make scan-deps`, pinned in
infra/scanners.txt): checkov pins boto3 and dozens of other packages, which must not
move the project's, pinned by functions/requirements.txt. Nothing here goes online:
checkov's `--skip-download` keeps it from fetching Prisma Cloud's guidelines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCAN_VENV = ROOT / ".venv-scan"
TEMPLATE_GLOB = "*.template.json"


class ScannerMissing(RuntimeError):
    """A scanner is not installed: run `make scan-deps`."""


class ScannerFailed(RuntimeError):
    """A scanner ran but gave no answer to read (a crash, or output that is not JSON)."""


@dataclass(frozen=True)
class Finding:
    tool: str
    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.tool} {self.rule} {self.resource}: {self.message}"


def executable(name: str, venv: Path = SCAN_VENV) -> Path:
    path = venv / "bin" / name
    if not path.exists():
        raise ScannerMissing(f"{path} is missing: run `make scan-deps` (installs infra/scanners.txt into {venv.name})")
    return path


def _run(command: Sequence[str]) -> str:
    # Not this interpreter's environment: the scanners' venv has its own packages.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    if not result.stdout.strip():
        raise ScannerFailed(f"{' '.join(command)} exited {result.returncode} with no output:\n{result.stderr[-4000:]}")
    return result.stdout


def checkov(template: Path) -> list[Finding]:
    """checkov's failed checks, and its skips that give no reason."""
    output = _run(
        [
            str(executable("checkov")),
            "--file",
            str(template),
            "--framework",
            "cloudformation",
            "--skip-download",
            # Not --quiet: it leaves the skipped checks, whose reasons are checked, out of the JSON.
            "--compact",
            "--output",
            "json",
        ]
    )
    try:
        report: Any = json.loads(output)
    except ValueError as error:
        raise ScannerFailed(f"checkov's output is not JSON: {output[:2000]}") from error
    if isinstance(report, list):  # one report per framework; only cloudformation runs
        (report,) = report
    results = report.get("results", {})
    findings = [
        Finding("checkov", check["check_id"], check["resource"], check["check_name"])
        for check in results.get("failed_checks", [])
    ]
    findings += [
        Finding("checkov", check["check_id"], check["resource"], "skipped without a reason")
        for check in results.get("skipped_checks", [])
        if not str(check.get("check_result", {}).get("suppress_comment", "")).strip()
    ]
    findings += [
        Finding("checkov", "parsing", str(path), "could not parse the template")
        for path in results.get("parsing_errors", [])
    ]
    return findings


def cfn_lint(template: Path) -> list[Finding]:
    """cfn-lint's errors and warnings (informational rules are off, as by default)."""
    output = _run([str(executable("cfn-lint")), "--format", "json", "--", str(template)])
    try:
        matches: list[dict[str, Any]] = json.loads(output)
    except ValueError as error:
        raise ScannerFailed(f"cfn-lint's output is not JSON: {output[:2000]}") from error
    return [
        Finding(
            "cfn-lint",
            match["Rule"]["Id"],
            "/".join(str(part) for part in match["Location"]["Path"][:2]),
            match["Message"],
        )
        for match in matches
    ]


def scan(template: Path) -> list[Finding]:
    return [*cfn_lint(template), *checkov(template)]


def main(argv: Sequence[str] = ()) -> int:
    directory = Path(argv[0]) if argv else ROOT / "cdk.out"
    templates = sorted(directory.glob(TEMPLATE_GLOB))
    if not templates:
        print(f"no {TEMPLATE_GLOB} in {directory}: run `make synth`", file=sys.stderr)
        return 2
    failed = False
    for template in templates:
        try:
            findings = scan(template)
        except (ScannerMissing, ScannerFailed) as error:
            print(error, file=sys.stderr)
            return 2
        for finding in findings:
            print(f"{template.name}: {finding}")
        print(f"{template.name}: checkov and cfn-lint, {len(findings)} unacknowledged finding(s)")
        failed = failed or bool(findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
