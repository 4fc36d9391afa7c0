"""The embedded local stack: moto's server as AWS, the resources the CDK stack defines,
and the local gateway in front of the real handlers. Local only, never deployed."""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from functions.core.config import Env
from functions.core.tables import (
    ALL_TABLES,
    CATALOG,
    DUE,
    EVENTS,
    ID_MAP,
    MEMBERSHIP,
    PARTNERS,
    SUPPRESSION,
    TableDefinition,
)
from functions.core.times import DAY_SECONDS
from functions.evaluator.stream import BATCH_SIZE, RETRY_ATTEMPTS

if TYPE_CHECKING:
    from functions.builder.stores import BuildStores

STATE_FILE = Path(".dmp") / "local.json"
REGION = "us-east-1"
RESOURCE_NAMES = {
    EVENTS.logical_id: "dmp-local-events",
    MEMBERSHIP.logical_id: "dmp-local-membership",
    PARTNERS.logical_id: "dmp-local-partners",
    CATALOG.logical_id: "dmp-local-catalog",
    SUPPRESSION.logical_id: "dmp-local-suppression",
    ID_MAP.logical_id: "dmp-local-id-map",
    DUE.logical_id: "dmp-local-due",
}
BUCKET = "dmp-local-segments"
FALLBACK_QUEUE = "dmp-local-fallback"
# S3 -> EventBridge -> the importer: the emulator's rule delivers to this queue, which
# `dmp serve` drains into the importer handler as Lambda would be invoked.
IMPORT_QUEUE = "dmp-local-imports"
IMPORT_RULE = "dmp-local-imports"
# The storage clients' read timeout on the emulator. moto answers a 1 MB scan page in
# seconds, not DynamoDB's milliseconds (it serialises each item at ~1 ms and sorts the
# whole table for every page), and a build's shards share its one core: at 100 k events a
# page of a 4-shard build takes ~35 s. The functions' 5 s would cut every page off, and
# each retry would pile the same work on the emulator again. Generous, but finite: a hung
# emulator still fails the command.
EMULATOR_READ_TIMEOUT_SECONDS = 300
# Powertools outside Lambda: quiet logs, no metrics or traces to ship.
QUIET_POWERTOOLS = {
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "DMP",
}


@dataclass(frozen=True)
class StackTarget:
    """Where a stack's resources are: the contents of `.dmp/local.json` or a deployed
    stack's outputs."""

    region: str
    events_table: str
    membership_table: str
    partners_table: str
    bucket: str
    # Empty for a deployed stack older than the catalog table (no `CatalogTableName` output).
    catalog_table: str = ""
    # Empty for a deployed stack older than the suppression list.
    suppression_table: str = ""
    # Empty for a deployed stack older than ID sync.
    id_map_table: str = ""
    fallback_queue_url: str = ""
    # Empty for a deployed stack older than real-time membership.
    due_table: str = ""
    # Local stack only: where the emulator's EventBridge rule delivers the importer's events.
    import_queue_url: str = ""
    aws_endpoint_url: str | None = None
    gateway_url: str | None = None
    lookup_url: str | None = None
    lookup_usage_plan_id: str = ""
    retention_days: int = 90

    def build_stores(self) -> BuildStores:
        from functions.builder.stores import BuildStores

        return BuildStores.connect(
            events_table=self.events_table,
            membership_table=self.membership_table,
            bucket=self.bucket,
            catalog_table=self.catalog_table,
            suppression_table=self.suppression_table,
            id_map_table=self.id_map_table,
            due_table=self.due_table,
        )

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * DAY_SECONDS

    def environment(self) -> dict[str, str]:
        """The functions' environment for this stack."""
        env = {
            "AWS_DEFAULT_REGION": self.region,
            Env.EVENTS_TABLE: self.events_table,
            Env.MEMBERSHIP_TABLE: self.membership_table,
            Env.PARTNERS_TABLE: self.partners_table,
            Env.CATALOG_TABLE: self.catalog_table,
            Env.SUPPRESSION_TABLE: self.suppression_table,
            Env.ID_MAP_TABLE: self.id_map_table,
            Env.DUE_TABLE: self.due_table,
            Env.SEGMENTS_BUCKET: self.bucket,
            Env.FALLBACK_QUEUE_URL: self.fallback_queue_url,
            Env.RETENTION_DAYS: str(self.retention_days),
        }
        if self.aws_endpoint_url:
            env.update(
                {
                    "AWS_ENDPOINT_URL": self.aws_endpoint_url,
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                    Env.STORAGE_READ_TIMEOUT_SECONDS: str(EMULATOR_READ_TIMEOUT_SECONDS),
                }
            )
        return env


def create_table(client: Any, definition: TableDefinition, name: str) -> None:
    """A table with the keys and TTL of `definition`, as the CDK stack creates it."""
    stream = (
        {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": definition.stream_view}}
        if definition.stream_view
        else {}
    )
    client.create_table(
        TableName=name,
        KeySchema=definition.key_schema(),
        AttributeDefinitions=definition.attribute_definitions(),
        BillingMode="PAY_PER_REQUEST",
        **stream,
    )
    if definition.ttl_attribute:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.ttl_attribute}
        )


def create_resources(endpoint_url: str | None, region: str = REGION, retention_days: int = 90) -> StackTarget:
    """Tables and bucket on the emulator (or whatever `endpoint_url` is)."""
    dynamodb = boto3.client("dynamodb", region_name=region, endpoint_url=endpoint_url)
    for definition in ALL_TABLES:
        create_table(dynamodb, definition, RESOURCE_NAMES[definition.logical_id])
    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
    if region == "us-east-1":
        s3.create_bucket(Bucket=BUCKET)
    else:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
    # Versioned, as the CDK stack's bucket is: erasure must reach earlier versions too.
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    sqs = boto3.client("sqs", region_name=region, endpoint_url=endpoint_url)
    queue_url = sqs.create_queue(QueueName=FALLBACK_QUEUE)["QueueUrl"]
    import_queue_url = create_import_trigger(s3, sqs, region, endpoint_url)
    return StackTarget(
        region=region,
        fallback_queue_url=queue_url,
        import_queue_url=import_queue_url,
        events_table=RESOURCE_NAMES[EVENTS.logical_id],
        membership_table=RESOURCE_NAMES[MEMBERSHIP.logical_id],
        partners_table=RESOURCE_NAMES[PARTNERS.logical_id],
        catalog_table=RESOURCE_NAMES[CATALOG.logical_id],
        suppression_table=RESOURCE_NAMES[SUPPRESSION.logical_id],
        id_map_table=RESOURCE_NAMES[ID_MAP.logical_id],
        due_table=RESOURCE_NAMES[DUE.logical_id],
        bucket=BUCKET,
        aws_endpoint_url=endpoint_url,
        retention_days=retention_days,
    )


def create_import_trigger(s3: Any, sqs: Any, region: str, endpoint_url: str | None) -> str:
    """The bucket's EventBridge notifications and the importer's rule (the same pattern
    as the CDK rule), delivering to a queue the local stack drains; returns its URL."""
    from functions.core.storage.imports import import_event_pattern

    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}})
    queue_url = sqs.create_queue(QueueName=IMPORT_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name=region, endpoint_url=endpoint_url)
    events.put_rule(Name=IMPORT_RULE, EventPattern=json.dumps(import_event_pattern(BUCKET)), State="ENABLED")
    events.put_targets(Rule=IMPORT_RULE, Targets=[{"Id": "importer", "Arn": queue_arn}])
    return str(queue_url)


def drain_imports(queue_url: str, handler: Any, *, wait_seconds: int = 0, timeout_seconds: int = 900) -> int:
    """Run the importer handler on each event waiting in the local import queue (as
    Lambda runs it on each event of its EventBridge rule); returns how many ran. A failed
    event stays in the queue and is retried, as Lambda retries an asynchronous event."""
    from dmp.lambda_context import LocalContext

    sqs = boto3.client("sqs")
    ran = 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds, VisibilityTimeout=60
        ).get("Messages", [])
        if not messages:
            return ran
        for message in messages:
            handler(json.loads(message["Body"]), LocalContext("importer", timeout_seconds=timeout_seconds))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            ran += 1
        wait_seconds = 0


class LocalStack:
    """moto + resources + gateway in this process. One at a time per process: the
    handlers read their settings from the process environment."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        moto_port: int = 0,
        simulate_time: bool = False,
        retention_days: int = 90,
        log_requests: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.moto_port = moto_port
        self.simulate_time = simulate_time
        self.retention_days = retention_days
        self.log_requests = log_requests
        self.target: StackTarget | None = None
        self._moto: Any = None
        self._gateway: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._builds: threading.Event | None = None
        self._imports: threading.Event | None = None
        self._realtime: threading.Event | None = None

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def start(self) -> StackTarget:
        from moto.server import ThreadedMotoServer

        from dmp.gateway import Gateway, GatewayServer, Handlers

        self._moto = ThreadedMotoServer(ip_address=self.host, port=self.moto_port, verbose=False)
        self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        endpoint = f"http://{moto_host}:{moto_port}"
        self._set_env({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION})
        target = create_resources(endpoint, retention_days=self.retention_days)
        self._set_env({**target.environment(), **QUIET_POWERTOOLS})
        self._gateway = GatewayServer(
            Gateway(Handlers(), simulate_time=self.simulate_time),
            self.host,
            self.port,
            log=print if self.log_requests else None,
        )
        self._gateway.start()
        self.target = StackTarget(**{**asdict(target), "gateway_url": self._gateway.url})
        self._run_importer(target.import_queue_url)
        return self.target

    def _run_importer(self, queue_url: str) -> None:
        """The importer on every file dropped under imports/ (and every continuation), as
        the S3 -> EventBridge -> Lambda trigger runs it in AWS."""
        from functions.importer import handler as importer_handler

        importer = importlib.reload(importer_handler)
        self._imports = stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    drain_imports(queue_url, importer.handler, wait_seconds=1)
                except Exception as error:  # the event is retried, as Lambda would
                    print(f"import failed: {error}")
                    stop.wait(1)

        threading.Thread(target=loop, daemon=True).start()

    def state(self) -> dict[str, Any]:
        assert self.target is not None, "start() first"
        return {
            "gateway_url": self.target.gateway_url,
            "aws_endpoint_url": self.target.aws_endpoint_url,
            "region": self.target.region,
            "events_table": self.target.events_table,
            "membership_table": self.target.membership_table,
            "partners_table": self.target.partners_table,
            "catalog_table": self.target.catalog_table,
            "suppression_table": self.target.suppression_table,
            "id_map_table": self.target.id_map_table,
            "due_table": self.target.due_table,
            "bucket": self.target.bucket,
            "fallback_queue_url": self.target.fallback_queue_url,
            "retention_days": self.retention_days,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "pid": os.getpid(),
        }

    def write_state(self, path: Path = STATE_FILE) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.state(), indent=2) + "\n")
        return path

    def build_every(self, seconds: float, shards: int = 1) -> None:
        """Run the builder handler on a schedule, as EventBridge would."""
        from functions.builder import handler as builder_handler
        from functions.builder.plan import build_time_now
        from functions.core.times import iso

        builder = importlib.reload(builder_handler)
        self._builds = stop = threading.Event()

        def loop() -> None:
            from dmp.lambda_context import LocalContext

            while not stop.wait(seconds):
                now = iso(build_time_now())
                try:
                    builder.handler(scheduled_event(now, shards), LocalContext("builder", timeout_seconds=900))
                except Exception as error:  # keep the schedule alive, as EventBridge would
                    print(f"scheduled build failed: {error}")

        threading.Thread(target=loop, daemon=True).start()

    def stream_membership(self, *, poll_seconds: float = 0.5, sweep_every: float = 10.0) -> None:
        """Real-time membership, as in AWS: the evaluator on each batch of the events
        table's stream (read from the emulator every `poll_seconds` by a `StreamPoller`,
        which retries a failed batch as Lambda does), and the sweep every `sweep_every`
        seconds."""
        from dmp.lambda_context import LocalContext
        from functions.evaluator import handler as evaluator_handler
        from functions.sweep import handler as sweep_handler

        assert self.target is not None, "start() first"
        evaluator = importlib.reload(evaluator_handler)
        sweeper = importlib.reload(sweep_handler)
        self._realtime = stop = threading.Event()
        dynamodb = boto3.client("dynamodb")
        stream_arn = dynamodb.describe_table(TableName=self.target.events_table)["Table"]["LatestStreamArn"]

        poller = StreamPoller(
            boto3.client("dynamodbstreams"),
            stream_arn,
            lambda event: evaluator.handler(event, LocalContext("evaluator", timeout_seconds=60)),
        )

        def poll() -> None:
            while not stop.wait(poll_seconds):
                try:
                    poller.poll()
                except Exception as error:  # keep polling, as Lambda's event source mapping would
                    print(f"reading the events table's stream failed: {error}")

        def sweep() -> None:
            while not stop.wait(sweep_every):
                try:
                    sweeper.handler({}, LocalContext("sweep", timeout_seconds=60))
                except Exception as error:  # keep the schedule alive, as EventBridge would
                    print(f"due-time sweep failed: {error}")

        threading.Thread(target=poll, daemon=True).start()
        threading.Thread(target=sweep, daemon=True).start()

    def stop(self) -> None:
        if self._realtime is not None:
            self._realtime.set()
        if self._builds is not None:
            self._builds.set()
        if self._imports is not None:
            self._imports.set()
        if self._gateway is not None:
            self._gateway.stop()
        if self._moto is not None:
            self._moto.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class _ShardPosition:
    """Where the poller is in one shard: the iterator of its next records, or the record
    a failed batch is retried from and how many times that batch failed there."""

    iterator: str | None
    retry_from: str | None = None
    failures: int = 0


class StreamPoller:
    """Lambda's event source mapping for the events table's stream, on the emulator: each
    `poll()` reads every shard's next records (up to `BATCH_SIZE`) and hands them to
    `handler` in Lambda's event shape. A batch that fails (the handler raises, or answers
    failed records, stream.py) is read again from its lowest failed record at the next
    poll, and after `RETRY_ATTEMPTS` retries it is given up on with a log line, as Lambda
    then sends its description to the dead-letter queue."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Callable[[dict[str, Any]], Mapping[str, Any] | None],
        *,
        log: Callable[[str], None] = print,
    ) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._handler = handler
        self._log = log
        self._shards: dict[str, _ShardPosition] = {}

    def poll(self) -> int:
        """Read every shard once; returns the number of records handed to the handler."""
        description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            if shard["ShardId"] not in self._shards:
                self._shards[shard["ShardId"]] = _ShardPosition(self._iterator(shard["ShardId"], "TRIM_HORIZON"))
        return sum(self._poll_shard(shard_id, position) for shard_id, position in self._shards.items())

    def _iterator(self, shard_id: str, kind: str, **at: str) -> str:
        return str(
            self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType=kind, **at
            )["ShardIterator"]
        )

    def _poll_shard(self, shard_id: str, position: _ShardPosition) -> int:
        iterator = position.iterator
        if position.retry_from is not None:
            iterator = self._iterator(shard_id, "AT_SEQUENCE_NUMBER", SequenceNumber=position.retry_from)
        if iterator is None:  # a closed shard, read to its end
            return 0
        page = self._streams.get_records(ShardIterator=iterator, Limit=BATCH_SIZE)
        records: list[dict[str, Any]] = page["Records"]
        next_iterator = page.get("NextShardIterator")
        failed_at = self._failed_at(records) if records else None
        if failed_at is None:
            position.iterator, position.retry_from, position.failures = next_iterator, None, 0
            return len(records)
        failures = position.failures + 1 if failed_at == position.retry_from else 1
        if failures > RETRY_ATTEMPTS:
            last = records[-1]["dynamodb"]["SequenceNumber"]
            self._log(
                f"membership evaluation gave up on stream records {failed_at} to {last} of {shard_id} after "
                f"{RETRY_ATTEMPTS} retries (Lambda's dead-letter queue would describe them): their visitors' "
                "membership waits for their next hit, due instant or build"
            )
            position.iterator, position.retry_from, position.failures = next_iterator, None, 0
        else:
            position.retry_from, position.failures = failed_at, failures
        return len(records)

    def _failed_at(self, records: list[dict[str, Any]]) -> str | None:
        """The sequence number to retry from, or None when the batch succeeded."""
        try:
            response = self._handler({"Records": records})
        except Exception as error:  # the whole batch failed: retried from its first record
            self._log(f"membership evaluation failed: {error}")
            return str(records[0]["dynamodb"]["SequenceNumber"])
        failures = (response or {}).get("batchItemFailures") or []
        if not failures:
            return None
        # Lambda checkpoints before the lowest sequence number answered.
        return min((str(failure["itemIdentifier"]) for failure in failures), key=int)


def scheduled_event(time: str, shards: int) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "local-schedule",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": time,
        "region": REGION,
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/local-build-schedule"],
        "detail": {},
        "shards": shards,
    }
