"""The arithmetic of sweep_cost_ratio (tests/bench/bench_stream.py): measured usage in,
dollars out, both sides priced as AWS bills them."""

from __future__ import annotations

import pytest

from tests.bench import aws_prices as price
from tests.bench.bench_stream import Measured, SweepMeasurement, rebuild_dollars, sweep_dollars
from tests.bench.common import Usage

NOTHING = Measured(Usage(), 0.0)


@pytest.fixture
def unit_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """$1 a read unit, $10 a write unit, $100 a Lambda request; the rest free."""
    for name, value in vars(price).items():
        if name.isupper() and isinstance(value, float):
            monkeypatch.setattr(price, name, 0.0)
    monkeypatch.setattr(price, "DYNAMODB_READ_REQUEST_UNIT", 1.0)
    monkeypatch.setattr(price, "DYNAMODB_WRITE_REQUEST_UNIT", 10.0)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 100.0)


def test_the_sweeps_pay_every_run_and_every_due_visitor(unit_prices):
    # GIVEN an idle run of 6 read units and 1 write unit, and a due visitor of 1.5 and 2
    # AND a catalog read of half a unit per evaluation batch
    sweeps = SweepMeasurement(
        idle_run=Measured(Usage({"due": 6.0}, {"due": 1.0}), 0.0),
        batch=Usage({"catalog": 0.5}),
        due_visitor=Measured(Usage({"events": 1.5}, {"membership": 1.0, "due": 1.0}), 0.0),
        swept_per_change=0.5,
        segment_change_fraction=0.5,
    )
    # WHEN 2,000 membership changes fall due over 60 runs, one visitor swept for every
    # other (1,000 swept, 17 a run: one batch each)
    cost = sum(sweep_dollars(sweeps, changes=2_000, runs=60, memory_mb=512).values())
    # THEN 60 invocations, 60 x (6 + 0.5) + 1,000 x 1.5 read units and 60 + 2,000 write units are paid
    assert cost == pytest.approx(60 * 100 + (390 + 1_500) * 1 + (60 + 2_000) * 10)
    # AND 12,000 swept in 60 runs take two batches a run
    busy = sum(sweep_dollars(sweeps, changes=24_000, runs=60, memory_mb=512).values())
    assert busy == pytest.approx(60 * 100 + (360 + 60 + 18_000) * 1 + (60 + 24_000) * 10)


def test_changes_the_items_hold_cost_only_the_idle_runs(unit_prices):
    # GIVEN sweeps where no change needs a visitor re-evaluated
    sweeps = SweepMeasurement(
        idle_run=Measured(Usage({"due": 6.0}, {"due": 1.0}), 0.0),
        batch=Usage({"catalog": 0.5}),
        due_visitor=Measured(Usage({"events": 1.5}, {"membership": 1.0}), 0.0),
        swept_per_change=0.0,
        segment_change_fraction=0.0,
    )
    # WHEN 1,000 changes fall due over 60 runs
    cost = sum(sweep_dollars(sweeps, changes=1_000, runs=60, memory_mb=512).values())
    # THEN only the 60 idle runs are paid: no batch, no visitor
    assert cost == pytest.approx(60 * (100 + 6 + 10))


def test_each_sweep_run_bills_its_own_share_of_the_due_visitors_cpu_time(monkeypatch):
    # GIVEN $1 a GB-second, free requests and units
    monkeypatch.setattr(price, "LAMBDA_GB_SECOND", 1.0)
    monkeypatch.setattr(price, "LAMBDA_REQUEST", 0.0)
    # AND an idle run of 1 ms and 1 ms a due visitor, on one core at 1769 MB
    sweeps = SweepMeasurement(Measured(Usage(), 0.001), Usage(), Measured(Usage(), 0.001), 1.0, 0.0)
    # WHEN 10 visitors fall due over 2 runs
    cost = sweep_dollars(sweeps, changes=10, runs=2, memory_mb=1769)["lambda"]
    # THEN each run bills 1 + 5 ms of 1769 MB
    assert cost == pytest.approx(2 * 0.006 * 1769 / 1024)


def test_a_rebuild_pays_an_invocation_a_stage_and_a_shard_its_transitions_units_and_s3(unit_prices, monkeypatch):
    monkeypatch.setattr(price, "STEP_FUNCTIONS_STATE_TRANSITION", 1_000.0)
    monkeypatch.setattr(price, "S3_PUT_REQUEST", 0.5)
    # GIVEN a rebuild whose shards read 40 units and publish writes one item and two files
    rebuild = {
        "plan": NOTHING,
        "shard": Measured(Usage({"events": 40.0}), 0.0),
        "publish": Measured(Usage({}, {"catalog": 1.0}, {"s3:PutObject": 2.0}), 0.0),
        "export": NOTHING,
    }
    # WHEN it is priced with 4 shards, and charged 20 changes besides
    cost = rebuild_dollars(rebuild, shards=4, memory_mb=1769, changes=20)
    # THEN 7 invocations, 9 transitions, 40 read units, 1 write unit and 2 PUTs
    assert cost["lambda"] == pytest.approx(7 * 100)
    assert cost["stepfunctions"] == pytest.approx(9 * 1_000)
    assert cost["dynamodb"] == pytest.approx(40 + 10)
    assert cost["s3"] == pytest.approx(1)
    # AND each change a write unit and half a read unit
    assert cost["changes"] == pytest.approx(20 * 10 + 20 * 0.5)
