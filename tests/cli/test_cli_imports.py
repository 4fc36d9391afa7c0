"""`dmp sources`, `dmp import` and the data-use control against a running `dmp serve`."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.localstack import dmp_serve, run_dmp

pytestmark = pytest.mark.slow
SOURCES_DIR = ROOT / "sources"
VISITOR = "cli-import-visitor-1"
dmp = run_dmp

LOYAL = """
id: loyal-gold
name: Gold loyalty customers
destinations: [{destinations}]
rule:
  trait: {{name: harbor-crm.tier, equals: gold}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    cwd = tmp_path_factory.mktemp("serve-imports")
    with dmp_serve(cwd, {}) as state:
        yield cwd, state


def test_sources_validate_names_file_path_and_reason(tmp_path: Path) -> None:
    # GIVEN a source file with a kind that does not exist
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nname: X\nkind: first\nid_type: dmp\ntraits: {a: string}\nttl_days: 1\n")
    # WHEN validated with the shipped examples
    result = dmp(tmp_path, "sources", "validate", str(SOURCES_DIR), str(bad), check=False)
    # THEN it exits 1 naming the file and the path; the examples pass
    assert result.returncode == 1 and f"{bad}: kind:" in result.stderr
    assert dmp(tmp_path, "sources", "validate", str(SOURCES_DIR)).returncode == 0


def test_push_sync_import_build_show_and_erase(served: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    cwd, state = served
    # GIVEN the example sources pushed, and Harbor syncing its customer id with our visitor
    assert "pushed harbor-crm" in dmp(cwd, "sources", "push", str(SOURCES_DIR), "--local").stdout
    dmp(cwd, "partners", "add", "harbor-retail", "--sync", "--local")
    sync = urllib.request.Request(
        f"{state['gateway_url']}/sync?partner=harbor-retail&puid=cust-1",
        headers={"Cookie": f"dmp_uid={VISITOR}", "User-Agent": "Mozilla/5.0"},
    )
    urllib.request.urlopen(sync, timeout=10).read()
    crm = tmp_path / "tiers.csv"
    crm.write_text("id,tier,lifetime_value\ncust-1,gold,1200\ncust-unknown,silver,10\n")
    # WHEN its file is imported through the same path a dropped file takes
    imported = dmp(cwd, "import", str(crm), "--source", "harbor-crm", "--local")
    # THEN the importer ran on the upload's event and its report is printed
    assert "imports/harbor-crm/tiers.csv" in imported.stdout
    assert "imported 2 row(s): 1 stored, 1 unresolved" in imported.stdout
    # AND the visitor's traits are part of a subject access request
    shown = json.loads(dmp(cwd, "visitor", "show", VISITOR, "--local").stdout)
    assert {t["name"]: t["value"] for t in shown["traits"]} == {
        "harbor-crm.tier": "gold",
        "harbor-crm.lifetime_value": 1200.0,
    }
    # AND a segment on Harbor's tier may go to demo-dsp but not to other-ssp
    allowed, refused = tmp_path / "ok.yaml", tmp_path / "refused.yaml"
    allowed.write_text(LOYAL.format(destinations="demo-dsp"))
    refused.write_text(LOYAL.format(destinations="other-ssp"))
    rejected = dmp(cwd, "segments", "validate", str(refused), "--local", check=False)
    assert rejected.returncode == 1
    assert f"{refused}: destinations[0]: 'other-ssp' may not receive data of source 'harbor-crm'" in rejected.stderr
    assert dmp(cwd, "segments", "push", str(refused), "--local", check=False).returncode == 1
    dmp(cwd, "segments", "push", str(allowed), "--local")
    built = dmp(cwd, "build", "--local").stdout
    assert [line.split() for line in built.splitlines() if "loyal-gold" in line] == [["loyal-gold", "1"]]
    # AND erasure removes the traits with the rest
    dmp(cwd, "erase", VISITOR, "--local")
    assert json.loads(dmp(cwd, "visitor", "show", VISITOR, "--local").stdout)["traits"] == []


def test_import_refuses_an_unknown_source_and_a_file_of_another_kind(
    served: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    cwd, _ = served
    data = tmp_path / "list.xml"
    data.write_text("<x/>")
    result = dmp(cwd, "import", str(data), "--source", "interest-graph", "--local", check=False)
    assert result.returncode == 2 and "name the file <name>.csv or <name>.jsonl" in result.stderr
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("id,a\n")
    result = dmp(cwd, "import", str(csv_file), "--source", "nobody", "--local", check=False)
    assert result.returncode == 2 and "unknown source 'nobody'" in result.stderr
