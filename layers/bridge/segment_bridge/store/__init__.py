"""The store: every boto3 call of Segment Bridge, in one small repository per kind of thing stored.

    aws.py         lazy clients, (de)serialisation, batch and query calls, AWS errors -> ours
    workspaces.py  WorkspacesTable's workspaces (names, offboarding state) and what its repositories share
    credentials.py API keys and read tokens (as hashes), the shared secret
    mappings.py    each workspace's mapping, by version
    destinations.py  each workspace's Segment destination (its write key in Secrets Manager)
    regulations.py the opt-in poll of Segment's regulations (cursor; Public API token in Secrets Manager)
    rules.py       the deployment's change rules
    counts.py      each workspace's daily counts
    profiles.py    ProfilesTable's profiles, and ProfileRepository over the four below (Store.profiles)
    history.py     EventsTable (per-entity event history) and ProfilesTable's group memberships
    links.py       ProfilesTable's identity links and the ids a user's deletion took
    tombstones.py  ProfilesTable's tombstones, index of deleted ids and archive purge work list
    items.py       what those share: the tables, the conditional put, gsi1 listings, item checks
    reading.py     the read model's reads of profiles, tombstones, links, memberships and history
                   (read-only), and the workspace's merge protection
    archive.py     ArchiveBucket: raw/, rejected/, unapplied/
    parked.py      ArchiveBucket's parked/ (what was not sent or applied, kept whole) + the EmitterDLQ signal
    queues.py      IngestQueue (intake's messages), both DLQs' letters
    outbox.py      OutboxTable (what the product sends to Segment) and its stream
    receipts.py    DeletionsTable (privacy requests' receipts)
    jobs.py        archive jobs' records and tasks (WorkspacesTable) and the JobsQueue's task messages
    windows.py     a replay job's window: messages reserved on its record within a bound
    sweep.py       every item of one workspace in every table, page by page, and its secret (offboarding)
    retries.py     OutboundRetryQueue (what Segment has not taken yet, until its next attempt)

Each module's docstring declares its item shapes. Repositories read and write; they decide nothing: what
a message changes (and exactly-once counting) is processor/'s, what is sent outbound/delivery.py's.
`Store` holds one of each over shared clients; `get_store()` is the functions' (one per container).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import boto3

from segment_bridge.settings import Settings, get_settings
from segment_bridge.store.aws import Clients, Sleep
from segment_bridge.store.queues import DeadLetter

if TYPE_CHECKING:
    from segment_bridge.destinations import ChangeRule, Destination, InvalidRule
    from segment_bridge.keys import WorkspaceAuth
    from segment_bridge.mapping import Mapping
    from segment_bridge.profiles import Profile
    from segment_bridge.store.archive import Archive
    from segment_bridge.store.counts import CountRepository
    from segment_bridge.store.credentials import CredentialRepository, IssuedKey
    from segment_bridge.store.destinations import DestinationRepository
    from segment_bridge.store.jobs import JobRepository
    from segment_bridge.store.mappings import MappingRepository
    from segment_bridge.store.outbox import Outbox
    from segment_bridge.store.parked import Parked
    from segment_bridge.store.profiles import ProfileRepository
    from segment_bridge.store.queues import Queues
    from segment_bridge.store.reading import ReadRepository
    from segment_bridge.store.receipts import ReceiptRepository
    from segment_bridge.store.regulations import RegulationsRepository
    from segment_bridge.store.retries import RetryQueue
    from segment_bridge.store.rules import RuleRepository
    from segment_bridge.store.sweep import WorkspaceSweep
    from segment_bridge.store.windows import JobWindows
    from segment_bridge.store.workspaces import Workspace, WorkspaceRepository

__all__ = ["DeadLetter", "Store", "get_store"]


@dataclass
class Store:
    """The repositories of one stack. `session` and `endpoint_url` let the CLI aim a Store at a stack of
    its choosing (a deployed one with the operator's credentials, or the local stack); functions use the
    defaults. The methods below are the calls operators and the functions make by name."""

    settings: Settings
    endpoint_url: str | None = None
    sleep: Sleep = field(default=time.sleep, repr=False)
    session: boto3.session.Session | None = field(default=None, repr=False)
    clients: Clients = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.clients = Clients(self.session, self.endpoint_url)

    # Each repository is built (and its module imported) on first use, so a function loads only the
    # repositories it uses at cold start (the ingest function never loads the profiles' models).

    @cached_property
    def workspaces(self) -> WorkspaceRepository:
        from segment_bridge.store.workspaces import WorkspaceRepository

        return WorkspaceRepository(self.settings, self.clients)

    @cached_property
    def credentials(self) -> CredentialRepository:
        from segment_bridge.store.credentials import CredentialRepository

        return CredentialRepository(self.settings, self.clients)

    @cached_property
    def mappings(self) -> MappingRepository:
        from segment_bridge.store.mappings import MappingRepository

        return MappingRepository(self.settings, self.clients)

    @cached_property
    def destinations(self) -> DestinationRepository:
        from segment_bridge.store.destinations import DestinationRepository

        return DestinationRepository(self.settings, self.clients)

    @cached_property
    def regulations(self) -> RegulationsRepository:
        from segment_bridge.store.regulations import RegulationsRepository

        return RegulationsRepository(self.settings, self.clients)

    @cached_property
    def rules(self) -> RuleRepository:
        from segment_bridge.store.rules import RuleRepository

        return RuleRepository(self.settings, self.clients)

    @cached_property
    def counts(self) -> CountRepository:
        from segment_bridge.store.counts import CountRepository

        return CountRepository(self.settings, self.clients)

    @cached_property
    def profiles(self) -> ProfileRepository:
        from segment_bridge.store.profiles import ProfileRepository

        return ProfileRepository(self.settings, self.clients, self._sleep)

    @cached_property
    def reading(self) -> ReadRepository:
        from segment_bridge.store.reading import ReadRepository

        return ReadRepository(
            profiles_table=self.settings.profiles_table,
            events_table=self.settings.events_table,
            workspaces_table=self.settings.workspaces_table,
            clients=self.clients,
            sleep=self._sleep,
        )

    @cached_property
    def archive(self) -> Archive:
        from segment_bridge.store.archive import Archive

        return Archive(self.settings, self.clients)

    @cached_property
    def queues(self) -> Queues:
        from segment_bridge.store.queues import Queues

        return Queues(self.settings, self.clients, self._sleep)

    @cached_property
    def parked(self) -> Parked:
        from segment_bridge.store.parked import Parked

        return Parked(self.settings, self.clients)

    @cached_property
    def outbox(self) -> Outbox:
        from segment_bridge.store.outbox import Outbox

        return Outbox(self.settings, self.clients)

    @cached_property
    def receipts(self) -> ReceiptRepository:
        from segment_bridge.store.receipts import ReceiptRepository

        return ReceiptRepository(self.settings, self.clients)

    @cached_property
    def jobs(self) -> JobRepository:
        from segment_bridge.store.jobs import JobRepository

        return JobRepository(self.settings, self.clients)

    @cached_property
    def windows(self) -> JobWindows:
        from segment_bridge.store.windows import JobWindows

        return JobWindows(self.settings, self.clients)

    @cached_property
    def sweep(self) -> WorkspaceSweep:
        from segment_bridge.store.sweep import WorkspaceSweep

        return WorkspaceSweep(self.settings, self.clients, self._sleep)

    @cached_property
    def retries(self) -> RetryQueue:
        from segment_bridge.store.retries import RetryQueue

        return RetryQueue(self.settings, self.clients)

    def _sleep(self, seconds: float) -> None:
        self.sleep(seconds)  # looked up at each call: tests replace `store.sleep`

    # --- workspaces, keys, mappings, destinations, rules -----------------------------------------

    def workspace_for_key_hash(self, key_hash: str) -> WorkspaceAuth | None:
        return self.credentials.workspace_for_key_hash(key_hash)

    def workspace_open(self, workspace_id: str) -> bool:
        return self.workspaces.is_open(workspace_id)

    def create_workspace(
        self, name: str, *, workspace_id: str | None = None, allow_duplicate_name: bool = False
    ) -> Workspace:
        """A new workspace, with its empty index of deleted ids (it has no tombstones yet). Conflict for
        an id that exists, or a name that does (WorkspacesRepository.create_workspace)."""
        workspace = self.workspaces.create_workspace(
            name, workspace_id=workspace_id, allow_duplicate_name=allow_duplicate_name
        )
        self.profiles.start_deleted_ids(workspace.workspace_id)
        return workspace

    def get_workspace(self, workspace_id: str) -> Workspace:
        return self.workspaces.get_workspace(workspace_id)

    def list_workspaces(self) -> Iterator[Workspace]:
        return self.workspaces.list_workspaces()

    def issue_key(self, workspace_id: str, api_key: str) -> IssuedKey:
        return self.credentials.issue_key(workspace_id, api_key)

    def revoke_key(self, workspace_id: str, kid: str) -> None:
        self.credentials.revoke_key(workspace_id, kid)

    def set_shared_secret(self, workspace_id: str, secret: str | None) -> None:
        self.credentials.set_shared_secret(workspace_id, secret)

    def issue_read_token(self, workspace_id: str, token: str) -> IssuedKey:
        return self.credentials.issue_read_token(workspace_id, token)

    def revoke_read_token(self, workspace_id: str, token_id: str) -> None:
        self.credentials.revoke_read_token(workspace_id, token_id)

    def get_mapping(self, workspace_id: str) -> Mapping:
        return self.mappings.get_mapping(workspace_id)

    def set_mapping(self, workspace_id: str, mapping: Mapping) -> Mapping:
        return self.mappings.set_mapping(workspace_id, mapping)

    def set_segment_destination(self, workspace_id: str, write_key: str, endpoint: str = "us") -> None:
        self.destinations.set_segment_destination(workspace_id, write_key, endpoint)

    def segment_destination(self, workspace_id: str) -> Destination | None:
        return self.destinations.segment_destination(workspace_id)

    def put_change_rule(self, rule: ChangeRule) -> None:
        self.rules.put_change_rule(rule)

    def delete_change_rule(self, name: str) -> None:
        self.rules.delete_change_rule(name)

    def change_rules(self) -> list[ChangeRule | InvalidRule]:
        return self.rules.change_rules()

    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None:
        self.counts.add_daily_counts(workspace_id, day, counts)

    def daily_counts(self, workspace_id: str, first: date, last: date) -> dict[str, dict[str, int]]:
        return self.counts.daily_counts(workspace_id, first, last)

    # --- profiles and history ------------------------------------------------------------------

    def read_profile(self, workspace_id: str, kind: str, entity_id: str) -> Profile | None:
        return self.profiles.read_profile(workspace_id, kind, entity_id)

    def read_history(self, workspace_id: str, kind: str, entity_id: str) -> list[dict[str, Any]]:
        return self.profiles.read_history(workspace_id, kind, entity_id)

    def linked_ids(self, workspace_id: str, user_id: str) -> list[str]:
        return self.profiles.linked_ids(workspace_id, user_id)

    def group_members(self, workspace_id: str, group_id: str) -> list[str]:
        return self.profiles.group_members(workspace_id, group_id)

    def existing_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
        return self.profiles.existing_history(workspace_id, wanted)

    # --- the ingest queue, the archive -----------------------------------------------------------

    def enqueue(self, bodies: list[str], workspace_id: str) -> None:
        self.queues.enqueue(bodies, workspace_id)

    def keep_rejected(
        self, workspace_id: str, request_id: str, received_at: datetime, records: list[dict[str, Any]]
    ) -> None:
        self.archive.keep_rejected(workspace_id, request_id, received_at, records)

    def list_rejected(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        return self.archive.list_rejected(workspace_id, day)

    def list_unapplied(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        return self.archive.list_unapplied(workspace_id, day)

    def list_archived(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        return self.archive.list_archived(workspace_id, day)

    def count_archived(self, workspace_id: str, day: date) -> int:
        return self.archive.count_archived(workspace_id, day)

    # --- outbound: the outbox, parking, dead letters ---------------------------------------------

    def publish(self, item: dict[str, Any]) -> None:
        self.outbox.publish(item)

    def stream_records(self, stream_arn: str, shard_id: str, first: str, last: str) -> list[dict[str, Any]]:
        return self.outbox.stream_records(stream_arn, shard_id, first, last)

    def park_outbound(
        self,
        reason: str,
        record: dict[str, Any],
        response: dict[str, Any] | None = None,
        workspace_id: str | None = None,
    ) -> None:
        self.parked.park_outbound(reason, record, response, workspace_id)

    def peek_dead_letters(self, queue_url: str, limit: int = 100) -> list[DeadLetter]:
        return self.queues.peek_dead_letters(queue_url, limit)

    def take_dead_letters(self, queue_url: str, count: int = 10) -> list[DeadLetter]:
        return self.queues.take_dead_letters(queue_url, count)

    def release_dead_letters(self, queue_url: str, letters: list[DeadLetter]) -> None:
        self.queues.release_dead_letters(queue_url, letters)

    def requeue(self, queue_url: str, letters: list[DeadLetter]) -> None:
        self.queues.requeue(queue_url, letters)

    def delete_dead_letters(self, queue_url: str, letters: list[DeadLetter]) -> None:
        self.queues.delete_dead_letters(queue_url, letters)


@lru_cache(maxsize=1)
def get_store() -> Store:
    return Store(settings=get_settings())
