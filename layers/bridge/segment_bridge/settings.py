"""Settings: the environment the template declares, validated once per container."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segment_bridge import PRODUCT_NAME

EndpointPolicy = Literal["public", "private", "local"]
"""Where outbound events may go (template parameter SegmentEndpoints); see outbound.endpoint_url."""


class Settings(BaseModel):
    """Every variable here is declared in template.yaml (Globals.Function.Environment)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workspaces_table: str = Field(alias="WORKSPACES_TABLE", min_length=1)
    profiles_table: str = Field(alias="PROFILES_TABLE", min_length=1)
    events_table: str = Field(alias="EVENTS_TABLE", min_length=1)
    archive_bucket: str = Field(alias="ARCHIVE_BUCKET", min_length=1)
    ingest_queue_url: str = Field(alias="INGEST_QUEUE_URL", min_length=1)
    ingest_dlq_url: str = Field(alias="INGEST_DLQ_URL", min_length=1)
    emitter_dlq_url: str = Field(alias="EMITTER_DLQ_URL", min_length=1)
    jobs_queue_url: str = Field(alias="JOBS_QUEUE_URL", min_length=1)
    """The archive jobs' tasks (purge, replay, offboarding: docs/archive-jobs.md)."""
    queue_message_bytes: int = Field(alias="QUEUE_MESSAGE_BYTES", ge=1024, le=1_048_576)
    secrets_prefix: str = Field(alias="SECRETS_PREFIX", min_length=1)
    """Workspaces' Segment write keys are secrets named <prefix>/<workspace_id>/write-key."""
    outbox_table: str = Field(alias="OUTBOX_TABLE", min_length=1)
    deletions_table: str = Field(alias="DELETIONS_TABLE", min_length=1)
    """Privacy requests' receipts (store/receipts.py)."""
    archive_retention_days: int = Field(alias="ARCHIVE_RETENTION_DAYS", default=400, ge=1)
    """How long raw/ keeps received events for replays: counted markers outlive it (docs/exactness.md)."""
    auth_cache_seconds: float = Field(alias="AUTH_CACHE_SECONDS", default=60, ge=0)
    outbound_retry_queue_url: str = Field(alias="OUTBOUND_RETRY_QUEUE_URL", min_length=1)
    outbound_retry_hours: float = Field(alias="OUTBOUND_RETRY_HOURS", default=72, gt=0, le=336)
    """How long after it was written an event Segment has not taken is retried (SQS keeps 14 days)."""
    segment_requests_per_second: float = Field(alias="SEGMENT_REQUESTS_PER_SECOND", default=50, gt=0)
    segment_events_per_second: float = Field(alias="SEGMENT_EVENTS_PER_SECOND", default=1000, gt=0)
    replay_window_messages: int = Field(alias="REPLAY_WINDOW_MESSAGES", default=60, ge=1)
    """A replay job's messages queued and not yet applied, at most (template parameter ReplayWindow)."""
    segment_endpoints: EndpointPolicy = Field(alias="SEGMENT_ENDPOINTS", default="public")
    """public: https to public addresses; private: also private/link-local (a proxy in a VPC); local:
    also plain http to loopback (a Segment stand-in: tests and the local stack)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The validated settings; tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings.model_validate(dict(os.environ))


INTEGRATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class _Integration(BaseModel):
    name: str = Field(alias="INTEGRATION_NAME", pattern=INTEGRATION_PATTERN)


def integration_name() -> str:
    """The name outbound events carry in `context.integration.name` and ingest recognises as an echo
    (template parameter IntegrationName; PRODUCT_NAME when unset). Read on its own, so ingest's pure
    logic needs no other setting."""
    return _integration(os.environ.get("INTEGRATION_NAME", ""))


@lru_cache(maxsize=4)
def _integration(raw: str) -> str:
    if not raw:
        return PRODUCT_NAME
    try:
        return _Integration.model_validate({"INTEGRATION_NAME": raw}).name
    except ValidationError:
        raise ValueError("INTEGRATION_NAME must be 1-100 letters, digits, '.', '_' or '-'") from None
