"""The read API for a product running in the account: the same answers as the HTTP read API
(`GET /v1/spaces/<workspace>/collections/<collection>/profiles/<id_type>:<id>/<facet>`, read/api.py),
read from DynamoDB directly with the caller's AWS credentials (IAM is its authentication: it needs the
ReaderFunction's read-only permissions on the three tables, no read token).

    from segment_bridge.read.client import ProfileClient

    profiles = ProfileClient(profiles_table="...", events_table="...", workspaces_table="...")
    profiles.traits("acme", "user_id:user-42")           # {"traits": {...}, "cursor": {...}}
    profiles.events("acme", "anonymous_id:a-1", limit=20) # answered for its user if linked

Errors are the API's: NotFound (404) and read.api.BadRequest (400), each with `.code`, `.message`,
`.status`. Installed with the package (`pip install segment-bridge`): it needs boto3 and the layer's
dependencies, nothing of the CLI or the local stack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from segment_bridge.cache import TtlCache
from segment_bridge.identity import MergeProtection
from segment_bridge.read.api import answer, parse
from segment_bridge.read.model import Reader
from segment_bridge.store.reading import ReadRepository, connect

Parameter = str | int | bool | Iterable[str]


class ProfileClient:
    """The read model over a stack's tables. `session`: a boto3 Session (default: boto3's, the usual
    credential chain); `protection_ttl`: how long a workspace's merge protection (its mapping's) is
    remembered, like the ReaderFunction's AUTH_CACHE_SECONDS."""

    def __init__(
        self,
        *,
        profiles_table: str,
        events_table: str,
        workspaces_table: str,
        session: Any = None,
        endpoint_url: str | None = None,
        protection_ttl: float = 60,
    ) -> None:
        self.source = CachedProtection(
            connect(
                profiles_table=profiles_table,
                events_table=events_table,
                workspaces_table=workspaces_table,
                session=session,
                endpoint_url=endpoint_url,
            ),
            protection_ttl,
        )

    @classmethod
    def from_environment(cls, **options: Any) -> ProfileClient:
        """The tables named as the functions name them: PROFILES_TABLE, EVENTS_TABLE, WORKSPACES_TABLE."""
        return cls(
            profiles_table=os.environ["PROFILES_TABLE"],
            events_table=os.environ["EVENTS_TABLE"],
            workspaces_table=os.environ["WORKSPACES_TABLE"],
            **options,
        )

    def get(
        self, workspace_id: str, collection: str, external_id: str, facet: str, **parameters: Parameter
    ) -> dict[str, Any]:
        """What `GET /v1/spaces/<workspace_id>/collections/<collection>/profiles/<external_id>/<facet>`
        answers with these query parameters."""
        request = parse(workspace_id, collection, external_id, facet, _query(parameters))
        return answer(request, Reader(self.source))

    def traits(
        self, workspace_id: str, external_id: str, *, collection: str = "users", **parameters: Parameter
    ) -> dict[str, Any]:
        return self.get(workspace_id, collection, external_id, "traits", **parameters)

    def external_ids(
        self, workspace_id: str, external_id: str, *, collection: str = "users", **parameters: Parameter
    ) -> dict[str, Any]:
        return self.get(workspace_id, collection, external_id, "external_ids", **parameters)

    def events(
        self, workspace_id: str, external_id: str, *, collection: str = "users", **parameters: Parameter
    ) -> dict[str, Any]:
        return self.get(workspace_id, collection, external_id, "events", **parameters)

    def links(
        self, workspace_id: str, external_id: str, *, collection: str = "users", **parameters: Parameter
    ) -> dict[str, Any]:
        return self.get(workspace_id, collection, external_id, "links", **parameters)

    def metadata(
        self, workspace_id: str, external_id: str, *, collection: str = "users", **parameters: Parameter
    ) -> dict[str, Any]:
        return self.get(workspace_id, collection, external_id, "metadata", **parameters)


def _query(parameters: dict[str, Parameter]) -> dict[str, str]:
    """Keyword arguments as the query string carries them: true/false, numbers, comma-separated lists."""
    query = {}
    for name, value in parameters.items():
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, int | str):
            query[name] = str(value)
        else:
            query[name] = ",".join(value)
    return query


class CachedProtection:
    """A read source whose workspaces' merge protection is remembered for `ttl` seconds."""

    def __init__(self, source: ReadRepository, ttl: float) -> None:
        self._source = source
        self._protection: TtlCache[str, MergeProtection] = TtlCache(source.protection, ttl, time.monotonic)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def protection(self, workspace_id: str) -> MergeProtection:
        return self._protection.get(workspace_id) or self._source.protection(workspace_id)
