"""The cost benchmark's arithmetic (tests/bench/bench_cost.py): fixed usage in, dollars
out, so a slip of units (per thousand for per million, MB for GB, per item for per page)
fails here rather than in a README figure."""

from __future__ import annotations

import base64
import math
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.bench import aws_prices as price
from tests.bench.bench_cost import (
    ADDED_HEADERS,
    Build,
    EvaluatorBatch,
    Hit,
    answer_bytes,
    build_usd,
    evaluator_usd,
    hit_usd,
    lambda_invocation_usd,
    membership_change_usd,
    on_lambda_seconds,
    rate_interval,
    s3_request_classes,
    scan_read_units,
    state_transitions,
)

MILLION = 1_000_000
GIF = "R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="


# Nothing used: each test adds the one thing it prices.
NO_HIT = Hit(handler_seconds=0.0, write_units=0.0, read_units=0.0, stored_item_bytes=0, answer_bytes=0, log_bytes=0)
A_BUILD = Build(
    events=MILLION,
    visitors=100_000,
    event_item_bytes=200,
    eval_seconds=0.0,
    shards=4,
    s3_put_requests=0,
    s3_get_requests=0,
)


NO_BATCH = EvaluatorBatch(
    hits=100, function_seconds=0.0, read_units=0.0, write_units=0.0, s3_put_requests=0, s3_get_requests=0, log_bytes=0
)


def a_hit(**usage: Any) -> Hit:
    return replace(NO_HIT, **usage)


def a_build(**usage: Any) -> Build:
    return replace(A_BUILD, **usage)


def per_million_hits(component: str, hit: Hit, retention_days: int = 90) -> float:
    return hit_usd(hit, retention_days=retention_days)[component] * MILLION


def test_one_write_unit_a_hit_costs_the_write_unit_price_per_million_hits(monkeypatch):
    # GIVEN writes at $2 per million units and no reads
    monkeypatch.setattr(price, "DYNAMODB_WRITE_REQUEST_UNIT", 2.0 / MILLION)
    # WHEN a hit writes one unit
    cost = per_million_hits("dynamodb", a_hit(write_units=1.0))
    # THEN a million hits cost $2
    assert cost == pytest.approx(2.0)


def test_half_a_read_unit_a_hit_costs_half_the_read_unit_price_per_million_hits(monkeypatch):
    # GIVEN reads at $2 per million units
    monkeypatch.setattr(price, "DYNAMODB_READ_REQUEST_UNIT", 2.0 / MILLION)
    # WHEN a hit reads half a unit (an eventually consistent GetItem)
    cost = per_million_hits("dynamodb", a_hit(read_units=0.5))
    # THEN a million hits cost $1
    assert cost == pytest.approx(1.0)


def test_a_lambda_invocation_bills_memory_in_gb_and_each_started_millisecond(monkeypatch):
    # GIVEN $1 a GB-second and free requests
    monkeypatch.setattr(price, "LAMBDA_GB_SECOND", 1.0)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 0.0)
    # WHEN an invocation of 1024 MB lasts 10.1 ms, or exactly 11 ms
    started = lambda_invocation_usd(0.0101, 1024)
    exact = lambda_invocation_usd(0.011, 1024)
    # THEN both bill 11 ms of one GB
    assert started == pytest.approx(0.011)
    assert exact == pytest.approx(0.011)


def test_a_lambda_invocation_pays_its_request_too(monkeypatch):
    # GIVEN free duration and $3 a million requests
    monkeypatch.setattr(price, "LAMBDA_GB_SECOND", 0.0)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 3.0 / MILLION)
    # WHEN a million hits are priced
    cost = per_million_hits("lambda", a_hit(handler_seconds=0.005))
    # THEN each pays one request
    assert cost == pytest.approx(3.0)


def test_cpu_bound_time_stretches_with_the_memory_share_below_one_vcpu():
    # GIVEN 1 ms of work on one full core
    # WHEN it runs at 256 MB, at 1769 MB (one vCPU) and above
    # THEN it takes 1769/256 times as long, then as long, then no less
    assert on_lambda_seconds(0.001, 256) == pytest.approx(0.001 * 1769 / 256)
    assert on_lambda_seconds(0.001, 1769) == pytest.approx(0.001)
    assert on_lambda_seconds(0.001, 3008) == pytest.approx(0.001)


def test_the_ingest_function_bills_its_256_mb_for_the_stretched_time(monkeypatch):
    # GIVEN $1 a GB-second, free requests
    monkeypatch.setattr(price, "LAMBDA_GB_SECOND", 1.0)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 0.0)
    # WHEN a hit takes 2.56 ms on one core here
    cost = hit_usd(a_hit(handler_seconds=0.00256), retention_days=90)["lambda"]
    # THEN it bills 2.56 * 1769/256 = 17.69 -> 18 ms of a quarter GB
    assert cost == pytest.approx(0.018 * 0.25)


def test_each_hit_is_one_http_api_request_and_one_cloudfront_request_and_its_bytes(monkeypatch):
    # GIVEN $1 a million API requests, $1 a million CloudFront requests, $10 a GB out
    monkeypatch.setattr(price, "HTTP_API_REQUEST", 1.0 / MILLION)
    monkeypatch.setattr(price, "CLOUDFRONT_HTTPS_REQUEST", 1.0 / MILLION)
    monkeypatch.setattr(price, "CLOUDFRONT_TRANSFER_OUT_GB", 10.0)
    # WHEN a million answers add up to one GB
    hit = a_hit(answer_bytes=price.GB / MILLION)
    # THEN the API costs $1 and CloudFront $1 + $10
    assert per_million_hits("api", hit) == pytest.approx(1.0)
    assert per_million_hits("cloudfront", hit) == pytest.approx(11.0)


def test_log_bytes_are_priced_per_gb_ingested(monkeypatch):
    # GIVEN $0.50 a GB of logs
    monkeypatch.setattr(price, "CLOUDWATCH_LOGS_INGESTED_GB", 0.5)
    # WHEN a million hits log one GB
    cost = per_million_hits("logs", a_hit(log_bytes=price.GB / MILLION))
    # THEN they cost $0.50
    assert cost == pytest.approx(0.5)


def test_one_hit_in_twenty_records_a_trace(monkeypatch):
    # GIVEN $5 a million traces
    monkeypatch.setattr(price, "XRAY_TRACE_RECORDED", 5.0 / MILLION)
    # WHEN a million hits are traced at Lambda's 5 %
    # THEN 50,000 traces cost $0.25
    assert per_million_hits("xray", a_hit()) == pytest.approx(0.25)


def test_a_stored_event_pays_its_size_and_the_item_overhead_for_the_retention(monkeypatch):
    # GIVEN $1 a GB-month
    monkeypatch.setattr(price, "DYNAMODB_STORAGE_GB_MONTH", 1.0)
    # WHEN a million events, with DynamoDB's 100 bytes each, make one GB kept a year
    hit = a_hit(stored_item_bytes=price.GB / MILLION - 100)
    # THEN they cost twelve GB-months
    assert per_million_hits("storage", hit, retention_days=365) == pytest.approx(12.0)


def test_a_scan_reads_whole_pages_in_4_kb_units_at_half_a_unit_each():
    # GIVEN 1 KB items: 1024 of them fill a 1 MB page of 256 4 KB units
    # WHEN 1,048,576 of them (1024 pages) are scanned
    # THEN it reads 1024 * 256 / 2 units
    assert scan_read_units(1_048_576, 1024) == 131_072


def test_a_scan_rounds_a_page_not_each_item():
    # GIVEN three items of 1500 bytes: 4500 bytes, two 4 KB units on one page
    # WHEN they are scanned (per item it would be three half units)
    # THEN it reads one unit
    assert scan_read_units(3, 1500) == 1.0


def test_a_build_scans_every_event_once(monkeypatch):
    # GIVEN $1 a million read units
    monkeypatch.setattr(price, "DYNAMODB_READ_REQUEST_UNIT", 1.0 / MILLION)
    # WHEN a build scans 1,048,576 events of 1 KB
    cost = build_usd(a_build(events=1_048_576, event_item_bytes=1024))["scan"]
    # THEN it pays 131,072 units
    assert cost == pytest.approx(0.131072)


def test_each_changed_visitor_is_a_conditional_write_and_half_a_read(monkeypatch):
    # GIVEN $1 a million write units and $1 a million read units
    monkeypatch.setattr(price, "DYNAMODB_WRITE_REQUEST_UNIT", 1.0 / MILLION)
    monkeypatch.setattr(price, "DYNAMODB_READ_REQUEST_UNIT", 1.0 / MILLION)
    # WHEN 5 % of 100,000 visitors change
    cost = build_usd(a_build(visitors=100_000, changed_fraction=0.05))["membership"]
    # THEN 5,000 writes of one unit and 5,000 half-unit reads are paid
    assert cost == pytest.approx((5_000 * 1 + 5_000 * 0.5) / MILLION)


def test_the_builder_bills_its_1769_mb_for_the_evaluation_and_a_request_a_stage(monkeypatch):
    # GIVEN $1 a GB-second and $1 a request
    monkeypatch.setattr(price, "LAMBDA_GB_SECOND", 1.0)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 1.0)
    # WHEN 4 shards evaluate for 8 s in all
    cost = build_usd(a_build(eval_seconds=8.0, shards=4))["lambda"]
    # THEN 8 s of 1769/1024 GB, and 7 invocations (plan, 4 shards, publish, export)
    assert cost == pytest.approx(8.0 * 1769 / 1024 + 7)


def test_a_build_pays_s3_requests_by_class_and_a_transition_a_state(monkeypatch):
    # GIVEN $1 a PUT, $0.1 a GET and $1 a state transition
    monkeypatch.setattr(price, "S3_PUT_REQUEST", 1.0)
    monkeypatch.setattr(price, "S3_GET_REQUEST", 0.1)
    monkeypatch.setattr(price, "STEP_FUNCTIONS_STATE_TRANSITION", 1.0)
    # WHEN a build of 4 shards makes 50 PUTs and 40 GETs
    cost = build_usd(a_build(shards=4, s3_put_requests=50, s3_get_requests=40))
    # THEN S3 costs $54, and Plan, Published?, Shards, 4 Shard, Publish, Export $9
    assert cost["s3"] == pytest.approx(54.0)
    assert state_transitions(4) == 9
    assert cost["stepfunctions"] == pytest.approx(9.0)


def test_a_batch_of_the_evaluator_is_shared_by_its_hits(monkeypatch):
    # GIVEN $1 a million write units, $1 a million read units and $1 a million Lambda requests
    monkeypatch.setattr(price, "DYNAMODB_WRITE_REQUEST_UNIT", 1.0 / MILLION)
    monkeypatch.setattr(price, "DYNAMODB_READ_REQUEST_UNIT", 1.0 / MILLION)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 1.0 / MILLION)
    monkeypatch.setattr(price, "LAMBDA_GB_SECOND", 0.0)
    # WHEN a batch of 100 hits reads 150 units and writes 200
    per_hit = evaluator_usd(replace(NO_BATCH, read_units=150.0, write_units=200.0), memory_mb=512)
    # THEN a million hits (10,000 batches) pay 3.5 M units and 10,000 invocations
    assert per_hit["dynamodb"] * MILLION == pytest.approx(3.5)
    assert per_hit["lambda"] * MILLION == pytest.approx(0.01)


def test_the_evaluator_bills_its_memory_for_its_stretched_time(monkeypatch):
    # GIVEN $1 a GB-second and free requests
    monkeypatch.setattr(price, "LAMBDA_GB_SECOND", 1.0)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 0.0)
    # WHEN a batch of 100 hits takes 0.1 s on one core here
    per_hit = evaluator_usd(replace(NO_BATCH, function_seconds=0.1), memory_mb=512)
    # THEN it bills 0.1 * 1769/512 s of half a GB, a hundredth of it per hit
    assert per_hit["lambda"] == pytest.approx(math.ceil(100 * 1769 / 512) / 1000 * 0.5 / 100)


def test_s3_requests_split_into_the_put_class_the_get_class_and_free_deletes():
    requests = {"PutObject": 5.0, "ListObjectsV2": 2.0, "GetObject": 7.0, "HeadObject": 1.0, "DeleteObject": 3.0}
    assert s3_request_classes(requests) == (7.0, 8.0)


def test_a_builds_membership_change_is_a_write_unit_and_half_a_read(monkeypatch):
    monkeypatch.setattr(price, "DYNAMODB_WRITE_REQUEST_UNIT", 1.0)
    monkeypatch.setattr(price, "DYNAMODB_READ_REQUEST_UNIT", 1.0)
    assert membership_change_usd(10) == pytest.approx(15.0)


def test_a_rate_schedule_gives_its_interval():
    assert rate_interval("rate(1 hour)") == timedelta(hours=1)
    assert rate_interval("rate(5 minutes)") == timedelta(minutes=5)
    with pytest.raises(ValueError, match="cron"):
        rate_interval("cron(0 * * * ? *)")


def test_the_answer_counts_status_headers_cookies_added_headers_and_the_decoded_gif():
    # GIVEN the pixel's answer with one cookie
    answer = {
        "statusCode": 200,
        "body": GIF,
        "isBase64Encoded": True,
        "headers": {"Content-Type": "image/gif"},
        "cookies": ["dmp_uid=abc"],
    }
    # WHEN its bytes are counted
    counted = answer_bytes(answer)
    # THEN they are what the browser gets, the GIF as 43 bytes, not its base64
    head = "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nSet-Cookie: dmp_uid=abc\r\n"
    assert counted == len(head) + len(ADDED_HEADERS) + len(base64.b64decode(GIF))
    assert len(base64.b64decode(GIF)) == 43


def test_the_prices_are_in_dollars_per_unit_as_the_pricing_pages_print_them():
    # GIVEN the prices file WHEN each is scaled to the unit its page quotes THEN it reads as printed there
    quoted = {
        "Lambda, per GB-second": (price.LAMBDA_GB_SECOND, 0.0000166667),
        "Lambda, per million requests": (price.LAMBDA_REQUEST * MILLION, 0.20),
        "DynamoDB, per million write units": (price.DYNAMODB_WRITE_REQUEST_UNIT * MILLION, 0.625),
        "DynamoDB, per million read units": (price.DYNAMODB_READ_REQUEST_UNIT * MILLION, 0.125),
        "DynamoDB, per GB-month": (price.DYNAMODB_STORAGE_GB_MONTH, 0.25),
        "HTTP API, per million": (price.HTTP_API_REQUEST * MILLION, 1.00),
        "REST API, per million": (price.REST_API_REQUEST * MILLION, 3.50),
        "CloudFront, per 10,000 HTTPS requests": (price.CLOUDFRONT_HTTPS_REQUEST * 10_000, 0.0100),
        "CloudFront, per GB out": (price.CLOUDFRONT_TRANSFER_OUT_GB, 0.085),
        "S3, per 1,000 PUTs": (price.S3_PUT_REQUEST * 1_000, 0.005),
        "S3, per 1,000 GETs": (price.S3_GET_REQUEST * 1_000, 0.0004),
        "S3, per GB-month": (price.S3_STORAGE_GB_MONTH, 0.023),
        "SQS, per million requests": (price.SQS_REQUEST * MILLION, 0.40),
        "Step Functions, per 1,000 transitions": (price.STEP_FUNCTIONS_STATE_TRANSITION * 1_000, 0.025),
        "CloudWatch Logs, per GB": (price.CLOUDWATCH_LOGS_INGESTED_GB, 0.50),
        "X-Ray, per million traces": (price.XRAY_TRACE_RECORDED * MILLION, 5.00),
    }
    ours = {name: value for name, (value, _) in quoted.items()}
    assert ours == pytest.approx({name: published for name, (_, published) in quoted.items()})
