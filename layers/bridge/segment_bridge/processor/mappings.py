"""The mapping each message is applied under: the workspace's current version, at the message's start.

A warm processor keeps the mappings it read, but asks the store for the stored version (one strongly
consistent GetItem of one number) before every message and reads the mapping again when it changed. So
from the moment `segment-bridge mapping set` answers, every message a processor starts applies the new
version; a message already being applied finishes under the one it started with (docs/exactness.md,
"A mapping change has one moment")."""

from __future__ import annotations

from typing import Protocol

from segment_bridge.mapping import Mapping

MAX_KEPT = 10_000
"""Workspaces whose mapping an environment keeps (then it starts again, as the TtlCache does)."""


class StoredMappings(Protocol):
    """store.mappings: the mapping and, cheaply, its version."""

    def get_mapping(self, workspace_id: str) -> Mapping: ...
    def mapping_version(self, workspace_id: str) -> int: ...


class CurrentMappings:
    """The processor's MappingSource: the cached mapping while its version is the stored one."""

    def __init__(self, store: StoredMappings) -> None:
        self.store = store
        self.kept: dict[str, Mapping] = {}

    def get(self, workspace_id: str) -> Mapping:
        version = self.store.mapping_version(workspace_id)
        kept = self.kept.get(workspace_id)
        if kept is not None and kept.version == version:
            return kept
        mapping = self.store.get_mapping(workspace_id)
        if len(self.kept) >= MAX_KEPT:
            self.kept.clear()
        self.kept[workspace_id] = mapping
        return mapping
