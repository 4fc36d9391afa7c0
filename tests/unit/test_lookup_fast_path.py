"""The bidding fast path answers exactly what the validated API answers, by our visitor
ids and by the partner's own ids alike, and a bidder's request never makes a cold
container build the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.core.config import Settings
from functions.lookup import fast_path
from functions.lookup.api import create_api
from functions.lookup.catalog import Catalog, CatalogSegment
from functions.lookup.visitors import Visitors
from tests.conftest import ROOT, FakeContext, load_event
from tests.unit.lookup_stack import PARTNER_UID

CATALOG = Catalog(
    build_id="20261128T100000Z",
    evaluated_at="2026-11-28T10:00:00Z",
    segments={
        "london": CatalogSegment("london", "Lond\u00f6ners \u2603 </script>", "", 3, frozenset({"demo-dsp"})),
        "paris": CatalogSegment("paris", "Parisians", "", 1, frozenset({"other-ssp"})),
        "both": CatalogSegment("both", 'Quoted "both"', "", 2, frozenset({"demo-dsp", "other-ssp"})),
    },
)
MEMBERS = {
    "visitor-london-1": ["london", "both", "gone-from-catalog"],
    "visitor-paris-01": ["paris"],
}
# Each partner's own ids (ID sync): some name visitors in segments, one a visitor in none,
# and the same id may be two partners' for different visitors.
MAPPINGS = {
    ("demo-dsp", "dsp:8f3a.b~c_1"): "visitor-london-1",
    ("demo-dsp", "7"): "visitor-paris-01",
    ("demo-dsp", "visitor-london-1"): "visitor-paris-01",
    ("other-ssp", "ssp-42"): "visitor-london-1",
    ("other-ssp", "7"): "visitor-london-1",
    ("other-ssp", "no-segments"): "visitor-without-any",
}


class Membership:
    def get(self, visitor_id: str, *, as_of: str | None) -> list[str]:
        return MEMBERS.get(visitor_id, [])

    def get_many(self, visitor_ids: Any, *, as_of: str | None) -> dict[str, list[str]]:
        return {v: MEMBERS[v] for v in visitor_ids if v in MEMBERS}


class IdMap:
    def resolve(self, partner: str, partner_uid: str, *, now_s: int) -> str | None:
        return MAPPINGS.get((partner, partner_uid))

    def resolve_many(self, partner: str, partner_uids: Iterable[str], *, now_s: int) -> dict[str, str]:
        return {uid: MAPPINGS[partner, uid] for uid in partner_uids if (partner, uid) in MAPPINGS}


class NoExports:
    def latest(self, partner: str) -> None:
        return None

    def download_url(self, key: str, *, expires_in: int) -> str:
        raise AssertionError("no export to sign")


class Catalogs:
    def __init__(self, catalog: Catalog = CATALOG) -> None:
        self.catalog = catalog

    def get(self) -> Catalog:
        return self.catalog


def request(
    method: str, path: str, query: dict[str, list[str]] | None, partner: str | None, *, single: bool, multi: bool
) -> dict[str, Any]:
    """A REST API (v1) event as API Gateway sends it, query in either or both forms."""
    event = load_event("lookup_user_get")
    event.update(httpMethod=method, path=path)
    event["requestContext"].update(httpMethod=method, path=f"/prod{path}")
    event["queryStringParameters"] = {k: v[-1] for k, v in query.items()} if query and single else None
    event["multiValueQueryStringParameters"] = query if query and multi else None
    if partner is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"] = {"partner": partner, "principalId": partner}
    return event


def both_answers(event: dict[str, Any], config: Settings, catalog: Catalog = CATALOG) -> tuple[Any, Any]:
    """(fast path's answer and metrics, the API's answer and metrics) for one event."""
    fast_metrics, api_metrics = Metrics(service="lookup", namespace="DMP"), Metrics(service="lookup", namespace="DMP")
    try:
        visitors = Visitors(Membership(), IdMap())
        fast = fast_path.answer(event, visitors, Catalogs(catalog), settings=config, metrics=fast_metrics)
        api = create_api(
            Membership(),
            Catalogs(catalog),
            id_map=IdMap(),
            exports=NoExports(),
            settings=config,
            logger=Logger(service="l"),
            metrics=api_metrics,
        )
        reference = api.resolve(event, FakeContext())
        return (fast, dict(fast_metrics.metric_set)), (reference, dict(api_metrics.metric_set))
    finally:
        fast_metrics.clear_metrics()
        api_metrics.clear_metrics()


visitor_ids = st.one_of(
    st.sampled_from(["visitor-london-1", "visitor-paris-01", "unknown-visitor", "a" * 64, "A_b-9" * 2]),
    st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),
)
partner_ids = st.one_of(
    st.sampled_from([uid for _, uid in MAPPINGS] + ["never-synced", "a" * 128, "a:b.c~d-e_f"]),
    st.from_regex(r"[A-Za-z0-9._~:-]{1,128}", fullmatch=True),
)
odd_ids = st.one_of(
    st.sampled_from(
        ["short", "a" * 65, "a" * 129, "bad!id-123", "visitor-london-1\n", "7\n", "", "v%20isitor-1", "..%2F..%2Fetc"]
    ),
    st.text(max_size=130),
)
query_values = st.sampled_from(
    ["json", "openrtb", "xml", "", "JSON", "openrtb ", "dmp", "partner", "Partner", "partner ", "tdid"]
)
queries = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["format", "id_type", "uid", "callback"]),
        st.lists(query_values, min_size=1, max_size=2),
        max_size=3,
    ),
)
configs = st.builds(
    Settings,
    membership_table=st.just("m"),
    bucket=st.just("b"),
    segtax=st.sampled_from([None, 4, 600]),
    data_provider_id=st.sampled_from(["dmp", "dmp.example"]),
    data_provider_name=st.sampled_from(["DMP", "D\u00e9mo DMP"]),
    catalog_refresh_seconds=st.sampled_from([30, 3600]),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "GET", "GET", "POST", "HEAD"]),
    uid=st.one_of(visitor_ids, partner_ids, odd_ids),
    suffix=st.sampled_from(["/segments", "/segments", "/segments/", "/segment", ""]),
    query=queries,
    partner=st.sampled_from(["demo-dsp", "other-ssp", "nobody", "", None]),
    forms=st.sampled_from([(True, True), (True, False), (False, True)]),
    config=configs,
)
def test_whenever_the_fast_path_answers_the_api_answers_the_same_bytes_and_metrics(
    method, uid, suffix, query, partner, forms, config
):
    # GIVEN any request, well-formed or not
    event = request(method, f"/v1/users/{uid}{suffix}", query, partner, single=forms[0], multi=forms[1])
    # WHEN both the fast path and the validated API see it
    (fast, fast_metrics), (reference, api_metrics) = both_answers(event, config)
    # THEN the fast path either leaves it to the API or answers exactly as the API does
    if fast is not None:
        assert fast == reference
        assert fast_metrics == api_metrics


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    uid=st.one_of(visitor_ids, partner_ids, odd_ids),
    query=st.dictionaries(
        st.sampled_from(["format", "id_type"]), st.lists(query_values, min_size=1, max_size=2), min_size=1
    ),
    partner=st.sampled_from(["demo-dsp", "other-ssp"]),
    forms=st.sampled_from([(True, True), (True, False), (False, True)]),
)
def test_near_misses_of_a_bidder_request_are_answered_alike_or_left_to_the_api(uid, query, partner, forms):
    # GIVEN a bidder's GET whose id, `format` or `id_type` may be just off (case, spaces,
    # repeated, an id of the other kind)
    event = request("GET", f"/v1/users/{uid}/segments", query, partner, single=forms[0], multi=forms[1])
    # WHEN both answer it
    (fast, fast_metrics), (reference, api_metrics) = both_answers(event, Settings(membership_table="m", bucket="b"))
    # THEN the fast path leaves it to the API or answers the same bytes and metrics
    if fast is not None:
        assert (fast, fast_metrics) == (reference, api_metrics)


@settings(max_examples=300, deadline=None)
@given(
    id_and_type=st.one_of(
        st.tuples(visitor_ids, st.sampled_from([None, "dmp"])), st.tuples(partner_ids, st.just("partner"))
    ),
    answer_format=st.sampled_from([None, "json", "openrtb"]),
    partner=st.sampled_from(["demo-dsp", "other-ssp", "nobody"]),
    forms=st.sampled_from([(True, True), (True, False), (False, True)]),
    config=configs,
)
def test_every_well_formed_bidder_request_is_answered_by_the_fast_path(
    id_and_type, answer_format, partner, forms, config
):
    # GIVEN a well-formed request: a visitor id (id_type absent or dmp) or a partner id
    # (id_type=partner), a partner, json/openrtb or no format
    uid, id_type = id_and_type
    query = {
        name: [value] for name, value in (("format", answer_format), ("id_type", id_type)) if value is not None
    } or None
    event = request("GET", f"/v1/users/{uid}/segments", query, partner, single=forms[0], multi=forms[1])
    # WHEN both answer it
    (fast, _), (reference, _) = both_answers(event, config)
    # THEN the fast path answered, with the API's 200
    assert fast is not None
    assert fast == reference
    assert reference["statusCode"] == 200


def test_a_partner_sees_only_its_segments_on_the_fast_path_too():
    # GIVEN a visitor in a demo-dsp segment, an other-ssp one, and one both may see
    config = Settings(membership_table="m", bucket="b")
    event = request("GET", "/v1/users/visitor-london-1/segments", None, "other-ssp", single=True, multi=True)
    # WHEN other-ssp asks
    (fast, _), _ = both_answers(event, config)
    # THEN it sees only the shared one; the catalog's unknown id is dropped
    assert json.loads(fast["body"])["segments"] == [{"id": "both", "name": 'Quoted "both"'}]


@pytest.mark.parametrize(
    ("partner", "partner_uid", "segments"),
    [
        ("demo-dsp", "dsp:8f3a.b~c_1", ["both", "london"]),
        ("other-ssp", "ssp-42", ["both"]),
        ("demo-dsp", "ssp-42", []),
        ("other-ssp", "dsp:8f3a.b~c_1", []),
        ("demo-dsp", "7", []),
        ("other-ssp", "7", ["both"]),
    ],
    ids=["demo-own", "other-own", "demo-asks-others-id", "other-asks-demos-id", "same-id-demo", "same-id-other"],
)
def test_on_the_fast_path_a_partner_id_resolves_only_through_that_partners_mappings(partner, partner_uid, segments):
    # GIVEN the partners' mappings (demo-dsp's "7" names the Parisian, other-ssp's the Londoner)
    config = Settings(membership_table="m", bucket="b")
    query = {"id_type": ["partner"]}
    event = request("GET", f"/v1/users/{partner_uid}/segments", query, partner, single=True, multi=True)
    # WHEN the partner looks its id up
    (fast, _), (reference, _) = both_answers(event, config)
    # THEN the fast path answers, as the API does, with that partner's visitor's segments only
    assert fast == reference
    body = json.loads(fast["body"])
    assert (body["uid"], [s["id"] for s in body["segments"]]) == (partner_uid, segments)


def test_on_the_fast_path_a_partner_id_answers_the_bytes_of_our_id_but_the_echoed_id():
    config = Settings(membership_table="m", bucket="b")
    by_ours = request("GET", "/v1/users/visitor-london-1/segments", None, "demo-dsp", single=True, multi=True)
    by_partner = request(
        "GET", "/v1/users/dsp:8f3a.b~c_1/segments", {"id_type": ["partner"]}, "demo-dsp", single=True, multi=True
    )
    (ours, _), _ = both_answers(by_ours, config)
    (theirs, _), _ = both_answers(by_partner, config)
    assert theirs["body"] == ours["body"].replace('"visitor-london-1"', '"dsp:8f3a.b~c_1"')
    assert theirs["multiValueHeaders"] == ours["multiValueHeaders"]


def test_before_the_first_build_the_fast_path_answers_no_segments_and_no_build():
    config = Settings(membership_table="m", bucket="b")
    event = request("GET", "/v1/users/visitor-london-1/segments", None, "demo-dsp", single=True, multi=True)
    (fast, _), (reference, _) = both_answers(event, config, Catalog())
    assert fast == reference
    assert json.loads(fast["body"]) == {
        "uid": "visitor-london-1",
        "segments": [],
        "build_id": None,
        "evaluated_at": None,
    }


@pytest.mark.parametrize(
    ("answer_format", "uid", "id_type"),
    [
        ("json", "visitor-london-1", None),
        ("openrtb", "visitor-london-1", None),
        ("json", PARTNER_UID, "partner"),
        ("openrtb", PARTNER_UID, "partner"),
    ],
    ids=["json", "openrtb", "partner-json", "partner-openrtb"],
)
def test_a_cold_container_answers_a_bidder_without_building_the_api(answer_format, uid, id_type):
    # GIVEN a fresh interpreter with a local stack (moto) that has published a build
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
    }
    env.pop("AWS_LAMBDA_INITIALIZATION_TYPE", None)
    query = {"format": [answer_format], **({"id_type": [id_type]} if id_type else {})}
    event = request("GET", f"/v1/users/{uid}/segments", query, "demo-dsp", single=True, multi=True)
    program = f"""
import io, contextlib, json, sys
from moto import mock_aws
from tests.conftest import FakeContext
from tests.unit.lookup_stack import seed_local_stack
with mock_aws():
    seed_local_stack()
    assert not [m for m in sys.modules if m.split(".")[0] == "pydantic"], "pydantic loaded before the handler"
    import functions.lookup.handler as lookup
    with contextlib.redirect_stdout(io.StringIO()):
        answer = lookup.handler(json.loads({json.dumps(event)!r}), FakeContext())
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "pydantic" or m == "functions.lookup.api")
print(json.dumps({{"status": answer["statusCode"], "body": json.loads(answer["body"]), "loaded": loaded}}))
"""
    # WHEN it imports the handler and answers a bidder's lookup
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # THEN the answer carries the visitor's segment, and neither pydantic nor the API was loaded
    assert outcome["status"] == 200
    assert "london" in json.dumps(outcome["body"])
    assert outcome["loaded"] == []
