"""Running the `dmp` command in tests: `dmp serve` in a directory of its own, and the
other commands against it, as an operator runs them from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

START_TIMEOUT = 60


def run_dmp(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dmp.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dmp {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def dmp_serve(cwd: Path, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """`dmp serve --port 0` in `cwd`, yielding its `.dmp/local.json`; stopped with SIGTERM.
    Its output goes to `cwd/serve.log` (a pipe nobody reads could fill up and block it)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | (env or {})
    log = cwd / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dmp.cli", "serve", "--port", "0"],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        state_file = cwd / ".dmp" / "local.json"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dmp serve did not start; its output:\n{log.read_text(errors='replace')}")
            try:
                state = json.loads(state_file.read_text())
                break
            except (FileNotFoundError, json.JSONDecodeError):  # not there yet, or half written
                time.sleep(0.1)
        yield state
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
