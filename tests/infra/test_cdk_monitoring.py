"""Operations: the alarms, the topic that carries them and the dashboard; and that the
metrics they watch are the ones the functions actually emit."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Duration

from functions.core.storage.bucket import SegmentsBucket
from infra.app import cdk_json_context
from infra.monitoring import stale_build_periods
from infra.settings import ContextError, DeploySettings
from tests.conftest import load_event
from tests.infra.synthesis import PROD_CONTEXT, SKIP_BUNDLING, Synthesised, synthesise

pytestmark = pytest.mark.slow  # synthesises the CDK app

ALARM_EMAIL = "oncall@shop.example"
# A dashboard search: SEARCH('{Namespace,Dimension} Dimension="value" MetricName=word', ...)
SEARCH = re.compile(
    r"^SEARCH\('\{(?P<namespace>[^,]+),(?P<dimension>[^}]+)\} (?P=dimension)=\"(?P<value>[^\"]+)\" "
    r"MetricName=(?P<word>\w+)'"
)


@pytest.fixture(scope="module")
def notified_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesised:
    """The prod stack with an alarm email and its own stale-build window."""
    context = {**PROD_CONTEXT, **SKIP_BUNDLING, "alarm_email": ALARM_EMAIL, "build_stale_after_hours": "6"}
    return synthesise(context, tmp_path_factory.mktemp("notified.out"))


def _alarm(synthesised: Synthesised, name: str) -> dict[str, Any]:
    return synthesised.properties(getattr(synthesised.stack.monitoring, name))


# --- the stale-build alarm -------------------------------------------------------------


def test_stale_build_alarm_goes_off_when_no_build_is_published_for_twice_the_rate(dev_stack: Synthesised) -> None:
    # GIVEN cdk.json's build_schedule, rate(1 hour)
    alarm = _alarm(dev_stack, "stale_build_alarm")
    # THEN it counts the builder's published builds over two hours, and no data is no build
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("DMP", "builds_published", "Sum")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "builder"}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (2 * 3600, 1)
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["AlarmName"] == "Dmp-dev-build-stale"
    assert "2 hours" in alarm["AlarmDescription"]


def test_on_a_cron_schedule_the_stale_build_window_is_48_hourly_periods(prod_stack: Synthesised) -> None:
    # GIVEN a daily cron schedule and no build_stale_after_hours
    alarm = _alarm(prod_stack, "stale_build_alarm")
    # THEN 48 hours, as hourly periods (CloudWatch looks back over a day only with these),
    # every one of which must be without a publish
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (3600, 48)
    assert alarm.get("DatapointsToAlarm", 48) == 48
    assert alarm["TreatMissingData"] == "breaching"


def test_build_stale_after_hours_overrides_the_window(notified_stack: Synthesised) -> None:
    alarm = _alarm(notified_stack, "stale_build_alarm")
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (6 * 3600, 1)
    assert "6 hours" in alarm["AlarmDescription"]


def _settings(tmp_path: Path, **context: str) -> DeploySettings:
    app = App(context={**cdk_json_context(), **context}, outdir=str(tmp_path))
    return DeploySettings.from_context(app.node, root=tmp_path)


@pytest.mark.parametrize(
    ("context", "stale_after", "period", "evaluation_periods"),
    [
        ({"build_schedule": "rate(1 minute)"}, timedelta(minutes=2), 120, 1),
        ({"build_schedule": "rate(30 minutes)"}, timedelta(hours=1), 3600, 1),
        ({"build_schedule": "rate(12 hours)"}, timedelta(days=1), 86_400, 1),
        ({"build_schedule": "rate(1 day)"}, timedelta(days=2), 3600, 48),
        ({"build_schedule": "rate(3 days)"}, timedelta(days=6), 3600, 144),
        ({"build_schedule": "cron(0/15 * * * ? *)"}, timedelta(hours=48), 3600, 48),
        ({"build_schedule": "cron(0/15 * * * ? *)", "build_stale_after_hours": "1"}, timedelta(hours=1), 3600, 1),
        ({"build_schedule": "rate(7 days)", "build_stale_after_hours": "168"}, timedelta(days=7), 3600, 168),
    ],
)
def test_the_stale_build_window_follows_the_schedule(
    tmp_path: Path, context: dict[str, str], stale_after: timedelta, period: int, evaluation_periods: int
) -> None:
    settings = _settings(tmp_path, **context)
    assert settings.build_stale_after == stale_after
    alarm_period, periods = stale_build_periods(settings.build_stale_after)
    assert (alarm_period.to_seconds(), periods) == (period, evaluation_periods)
    # CloudWatch's limits: a period is whole minutes; a day of periods under an hour, a week of longer
    assert period % 60 == 0
    assert period * periods <= (86_400 if period < 3600 else 7 * 86_400)


@pytest.mark.parametrize(
    ("context", "error"),
    [
        # twice a weekly build is more than CloudWatch can look back
        ({"build_schedule": "rate(4 days)"}, r"context 'build_stale_after_hours' is needed.*at most 168 hours"),
        ({"build_schedule": "rate(soon)"}, r"context 'build_schedule': expected rate\(<n> minutes"),
        ({"build_stale_after_hours": "169"}, r"context 'build_stale_after_hours': expected 0\.\.168"),
        ({"alarm_email": "oncall"}, r"context 'alarm_email': expected one email address"),
    ],
)
def test_a_stale_window_or_email_that_cannot_work_stops_synth(
    tmp_path: Path, context: dict[str, str], error: str
) -> None:
    with pytest.raises(ContextError, match=error):
        _settings(tmp_path, **context)


def test_a_period_is_never_longer_than_a_day() -> None:
    period, periods = stale_build_periods(timedelta(hours=25))
    assert (period.to_seconds(), periods) == (Duration.hours(1).to_seconds(), 25)


# --- the other alarms ------------------------------------------------------------------


def test_lookup_5xx_alarm_watches_the_share_of_the_stage_s_server_errors(prod_stack: Synthesised) -> None:
    alarm = _alarm(prod_stack, "lookup_errors_alarm")
    stage = prod_stack.stack.lookup.api.deployment_stage
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/ApiGateway", "5XXError", "Average")
    assert alarm["Dimensions"] == [
        {"Name": "ApiName", "Value": "Dmp-prod-lookup"},
        {"Name": "Stage", "Value": prod_stack.ref(stage)},
    ]
    assert prod_stack.properties(prod_stack.stack.lookup.api)["Name"] == "Dmp-prod-lookup"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0.01)
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (300, 2)
    assert alarm["TreatMissingData"] == "notBreaching"


def test_fallback_queue_alarm_goes_off_when_a_deferred_hit_waits_15_minutes(prod_stack: Synthesised) -> None:
    alarm = _alarm(prod_stack, "fallback_age_alarm")
    queue = prod_stack.logical_id(prod_stack.stack.replay.queue)
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "Maximum",
    )
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 15 * 60)
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (300, 1)
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("name", "metric"), [("ingest_errors_alarm", "Errors"), ("ingest_throttles_alarm", "Throttles")]
)
def test_any_failed_or_throttled_ingest_invocation_raises_an_alarm(
    prod_stack: Synthesised, name: str, metric: str
) -> None:
    alarm = _alarm(prod_stack, name)
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", metric, "Sum")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": prod_stack.ref(prod_stack.stack.ingest.function)}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (300, 1)
    assert alarm["TreatMissingData"] == "notBreaching"


def test_any_lost_hit_raises_an_alarm(prod_stack: Synthesised) -> None:
    alarm = _alarm(prod_stack, "hits_lost_alarm")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("DMP", "hits_lost", "Sum")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "ingest"}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (300, 1)
    assert alarm["TreatMissingData"] == "notBreaching"


# --- who is told -----------------------------------------------------------------------


def test_every_alarm_of_the_stack_tells_the_topic_when_it_goes_off_and_when_it_clears(
    prod_stack: Synthesised,
) -> None:
    topic = prod_stack.ref(prod_stack.stack.monitoring.topic)
    alarms = prod_stack.template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 9  # the six here, the builder's two and the replay's one
    for logical_id, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [topic], logical_id
        assert properties["OKActions"] == [topic], logical_id
        assert len(properties["AlarmDescription"]) > 80, logical_id


def test_cloudwatch_may_publish_to_the_encrypted_topic(prod_stack: Synthesised) -> None:
    """An alarm action CloudWatch cannot carry out fails silently, so check the whole
    path: alarm -> topic -> its key's policy and the topic's policy."""
    template = prod_stack.template.to_json()["Resources"]
    topic_id = prod_stack.logical_id(prod_stack.stack.monitoring.topic)
    topic = template[topic_id]["Properties"]
    assert topic["TopicName"] == "Dmp-prod-alarms"
    key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = template[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Resource": "*",
    } in key["KeyPolicy"]["Statement"]
    (policy,) = (
        r["Properties"]
        for r in template.values()
        if r["Type"] == "AWS::SNS::TopicPolicy" and r["Properties"]["Topics"] == [{"Ref": topic_id}]
    )
    statements = policy["PolicyDocument"]["Statement"]
    publish = next(s for s in statements if s["Effect"] == "Allow")
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in json.dumps(publish["Condition"]["ArnLike"]["aws:SourceArn"])
    # AND only over TLS
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_alarm_email_subscribes_to_the_topic(notified_stack: Synthesised, dev_stack: Synthesised) -> None:
    notified_stack.template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "email",
            "Endpoint": ALARM_EMAIL,
            "TopicArn": notified_stack.ref(notified_stack.stack.monitoring.topic),
        },
    )
    # WITHOUT one (cdk.json's default) the topic waits for the operator's subscriptions
    assert dev_stack.template.find_resources("AWS::SNS::Subscription") == {}


# --- the dashboard ---------------------------------------------------------------------


def _dashboard(synthesised: Synthesised) -> dict[str, Any]:
    """The dashboard body, each token written as `<LogicalId>` or `<LogicalId.Attribute>`."""
    body = synthesised.properties(synthesised.stack.monitoring.dashboard)["DashboardBody"]
    parts = body["Fn::Join"][1]
    text = "".join(
        part if isinstance(part, str) else f"<{part['Ref']}>" if "Ref" in part else f"<{'.'.join(part['Fn::GetAtt'])}>"
        for part in parts
    )
    return json.loads(text)


def _widgets(synthesised: Synthesised) -> dict[str, list[list[Any]]]:
    """Each graph's title and its metrics, as written in the body."""
    return {
        widget["properties"]["title"]: widget["properties"]["metrics"]
        for widget in _dashboard(synthesised)["widgets"]
        if widget["type"] == "metric"
    }


def _metric(namespace: str, name: str, *dimensions: str, stat: str | None = None) -> Any:
    def matches(line: list[Any]) -> bool:
        options = line[-1] if isinstance(line[-1], dict) else {}
        return line[: 2 + len(dimensions)] == [namespace, name, *dimensions] and (
            stat is None or options.get("stat") == stat
        )

    return matches


def _has(metrics: list[list[Any]], matches: Any) -> bool:
    return any(matches(line) for line in metrics)


def test_dashboard_is_named_after_the_stack_and_region(dev_stack: Synthesised) -> None:
    name = dev_stack.properties(dev_stack.stack.monitoring.dashboard)["DashboardName"]
    assert name == {"Fn::Join": ["", ["Dmp-dev-", {"Ref": "AWS::Region"}]]}


def test_dashboard_shows_every_alarm(prod_stack: Synthesised) -> None:
    (widget,) = (w for w in _dashboard(prod_stack)["widgets"] if w["type"] == "alarm")
    alarms = {f"<{logical_id}.Arn>" for logical_id in prod_stack.template.find_resources("AWS::CloudWatch::Alarm")}
    assert set(widget["properties"]["alarms"]) == alarms


def test_dashboard_shows_hits_stored_refused_deferred_and_lost(prod_stack: Synthesised) -> None:
    widgets = _widgets(prod_stack)
    hits = widgets["Hits: stored, duplicate, deferred, lost; replayed"]
    for name in ("hits_stored", "hits_deferred", "hits_lost", "hits_duplicate"):
        assert _has(hits, _metric("DMP", name, "service", "ingest", stat="Sum")), name
    assert _has(hits, _metric("DMP", "hits_replayed", "service", "replay", stat="Sum"))
    # refusals and rejections by reason: one line for each reason the function has counted
    assert widgets["Hits refused, by reason"] == [
        [{"expression": "SEARCH('{DMP,service} service=\"ingest\" MetricName=refused', 'Sum', 300)"}]
    ]
    assert widgets["Events rejected, by reason"] == [
        [{"expression": "SEARCH('{DMP,service} service=\"ingest\" MetricName=rejected', 'Sum', 300)"}]
    ]


def test_dashboard_shows_build_duration_and_size(prod_stack: Synthesised) -> None:
    widgets = _widgets(prod_stack)
    machine = f"<{prod_stack.logical_id(prod_stack.stack.builder.state_machine)}>"
    duration = widgets["Build duration (ms)"]
    assert _has(duration, _metric("AWS/States", "ExecutionTime", "StateMachineArn", machine, stat="Maximum"))
    size = widgets["Build size: visitors, memberships; membership changes"]
    for name in ("build_visitors_scanned", "build_memberships"):
        assert _has(size, _metric("DMP", name, "service", "builder", stat="Maximum")), name
    builds = widgets["Builds published; executions succeeded, failed, timed out"]
    assert _has(builds, _metric("DMP", "builds_published", "service", "builder", stat="Sum"))
    for name in ("ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut"):
        assert _has(builds, _metric("AWS/States", name, "StateMachineArn", machine, stat="Sum")), name


def test_dashboard_shows_lookup_latency_and_errors(prod_stack: Synthesised) -> None:
    widgets = _widgets(prod_stack)
    stage = (
        "ApiName",
        "Dmp-prod-lookup",
        "Stage",
        f"<{prod_stack.logical_id(prod_stack.stack.lookup.api.deployment_stage)}>",
    )
    latency = widgets["Lookup latency p50 and p99 (ms): API, integration"]
    for name in ("Latency", "IntegrationLatency"):
        for stat in ("p50", "p99"):
            assert _has(latency, _metric("AWS/ApiGateway", name, *stage, stat=stat)), (name, stat)
    requests = widgets["Lookup requests: 4xx, 5xx; all"]
    for name in ("4XXError", "5XXError", "Count"):
        assert _has(requests, _metric("AWS/ApiGateway", name, *stage, stat="Sum")), name


def test_dashboard_shows_fallback_queue_age_and_dead_letter_depth(prod_stack: Synthesised) -> None:
    widgets = _widgets(prod_stack)
    stack = prod_stack.stack

    def queue_name(queue: Any) -> str:
        return f"<{prod_stack.logical_id(queue)}.QueueName>"

    fallback = widgets["Fallback queue: age of the oldest deferred hit (s); hits waiting"]
    assert _has(
        fallback,
        _metric(
            "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue_name(stack.replay.queue), stat="Maximum"
        ),
    )
    dead_letters = widgets["Dead-letter queues: messages waiting"]
    for queue in (stack.builder.dead_letter_queue, stack.replay.dead_letter_queue):
        assert _has(
            dead_letters, _metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue_name(queue))
        )


# --- the metrics the functions emit ----------------------------------------------------


def _emitted(output: str) -> dict[str, tuple[str, dict[str, str], list[float]]]:
    """The EMF documents Powertools printed: metric name -> (namespace, dimensions, values)."""
    emitted: dict[str, tuple[str, dict[str, str], list[float]]] = {}
    for line in output.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            (dimension_names,) = directive["Dimensions"]
            dimensions = {name: document[name] for name in dimension_names}
            for metric in directive["Metrics"]:
                values = document[metric["Name"]]
                emitted[metric["Name"]] = (
                    directive["Namespace"],
                    dimensions,
                    values if isinstance(values, list) else [values],
                )
    return emitted


def _watched(alarm: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return alarm["Namespace"], {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def _configure_like_the_stack(monkeypatch: pytest.MonkeyPatch, synthesised: Synthesised, function: Any) -> None:
    """The Powertools settings the template gives `function`."""
    variables = synthesised.properties(function)["Environment"]["Variables"]
    for name in ("POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME"):
        monkeypatch.setenv(name, variables[name])


def test_a_published_build_emits_what_the_stale_alarm_and_the_dashboard_watch(
    prod_stack: Synthesised,
    aws: Any,
    load_handler: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    # GIVEN the builder configured as the stack configures it, and one definition
    _configure_like_the_stack(monkeypatch, prod_stack, prod_stack.stack.builder.function)
    SegmentsBucket(aws.bucket).put_json(
        "segments/everyone.json", {"id": "everyone", "name": "Everyone", "rule": {"last_seen": {"within_days": 30}}}
    )
    builder = load_handler("builder")
    # WHEN the state machine's stages build and publish
    plan = builder.handler({"stage": "plan", "time": "2026-11-28T10:00:00Z", "shards": 1}, lambda_context)
    builder.handler({"stage": "shard", "build_id": plan["build_id"], "shard": 0}, lambda_context)
    capsys.readouterr()
    builder.handler({"stage": "publish", "build_id": plan["build_id"]}, lambda_context)
    emitted = _emitted(capsys.readouterr().out)
    # THEN the publish counts one published build where the stale-build alarm looks
    namespace, dimensions = _watched(_alarm(prod_stack, "stale_build_alarm"))
    assert emitted["builds_published"] == (namespace, dimensions, [1.0])
    # AND the build's size where the dashboard graphs it
    for name in ("build_visitors_scanned", "build_memberships"):
        assert emitted[name][:2] == (namespace, dimensions), name


def test_a_lost_hit_is_counted_where_the_alarm_looks(
    prod_stack: Synthesised,
    aws: Any,
    load_handler: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    _configure_like_the_stack(monkeypatch, prod_stack, prod_stack.stack.ingest.function)
    ingest = load_handler("ingest")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the hit cannot be handled")

    # GIVEN a pixel hit that fails before anything is stored
    monkeypatch.setattr(ingest.logic, "pixel", broken)
    capsys.readouterr()
    # WHEN it arrives, the pixel still answers
    assert ingest.handler(load_event("pixel_get"), lambda_context)["statusCode"] == 200
    # THEN the loss is counted in the alarm's namespace and dimensions
    namespace, dimensions = _watched(_alarm(prod_stack, "hits_lost_alarm"))
    assert _emitted(capsys.readouterr().out)["hits_lost"] == (namespace, dimensions, [1.0])


def test_a_refused_hit_is_counted_where_the_dashboard_searches(
    prod_stack: Synthesised,
    aws: Any,
    load_handler: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    [[search]] = _widgets(prod_stack)["Hits refused, by reason"]
    schema = SEARCH.match(search["expression"])
    assert schema is not None
    _configure_like_the_stack(monkeypatch, prod_stack, prod_stack.stack.ingest.function)
    ingest = load_handler("ingest")
    # GIVEN a hit from a browser that asks not to be tracked
    event = load_event("pixel_get")
    event["headers"]["dnt"] = "1"
    capsys.readouterr()
    # WHEN it arrives
    ingest.handler(event, lambda_context)
    emitted = _emitted(capsys.readouterr().out)
    # THEN it is counted once, under a name and in the schema the dashboard's search finds
    refused = {name: value[:2] for name, value in emitted.items() if name.split("_")[0] == schema["word"]}
    assert refused == {"refused_dnt": (schema["namespace"], {schema["dimension"]: schema["value"]})}
