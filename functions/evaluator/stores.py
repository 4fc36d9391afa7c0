"""The evaluator's stores in AWS (and on the local stack): the storage adapters over the
tables and bucket the environment names, sharing one DynamoDB client."""

from __future__ import annotations

from functions.core.config import Settings
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.catalog import CatalogStore
from functions.core.storage.due import DueStore
from functions.core.storage.events import EventStore
from functions.core.storage.membership import MembershipStore
from functions.core.storage.suppression import SuppressionStore
from functions.evaluator.logic import EvaluatorStores, PublishedDefinitions

REQUIRED = ("events_table", "membership_table", "suppression_table", "catalog_table", "due_table", "bucket")


def connect(settings: Settings) -> tuple[EvaluatorStores, DueStore]:
    events = EventStore(settings.events_table)
    due = DueStore(settings.due_table, same_client_as=events)
    stores = EvaluatorStores(
        events=events,
        membership=MembershipStore(settings.membership_table, same_client_as=events),
        suppression=SuppressionStore(settings.suppression_table, same_client_as=events),
        catalog=CatalogStore(settings.catalog_table, same_client_as=events),
        due=due,
        definitions=PublishedDefinitions(SegmentsBucket(settings.bucket)),
    )
    return stores, due
