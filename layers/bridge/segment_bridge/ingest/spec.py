"""Pydantic models of the Segment Spec: the calls we accept and the checks each must pass.

The models validate; they do not rewrite. Intake keeps the event as the client sent it (extra fields
included) and only adds its enrichment, so nothing a customer sends is lost in translation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from segment_bridge.limits import MAX_ID_BYTES, utf8_bytes
from segment_bridge.timestamps import Timestamp

MAX_ID_LENGTH = 1024
"""userId, anonymousId, groupId and previousId in characters; in UTF-8 bytes they must also fit every
DynamoDB key they become (limits.MAX_ID_BYTES)."""
MAX_MESSAGE_ID_LENGTH = 100
"""Segment dedupes on messageId and caps it at 100 characters."""
MAX_EVENT_NAME_LENGTH = 1024


def _fits_keys(value: str) -> str:
    if utf8_bytes(value) > MAX_ID_BYTES:
        raise ValueError(f"at most {MAX_ID_BYTES} bytes in UTF-8 (it becomes part of DynamoDB keys)")
    return value


Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_fits_keys)]
"""Segment's API takes numeric ids as strings; so do we (`coerce_numbers_to_str`)."""


class _Call(BaseModel):
    """Fields common to every call (Segment Spec: Common fields)."""

    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)

    userId: Identifier | None = None
    anonymousId: Identifier | None = None
    messageId: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_ID_LENGTH)] | None = None
    timestamp: Timestamp | None = None
    originalTimestamp: Timestamp | None = None
    sentAt: Timestamp | None = None
    receivedAt: Timestamp | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _identity_present(self) -> _Call:
        if not self.userId and not self.anonymousId:
            raise ValueError("userId or anonymousId is required")
        return self


class Identify(_Call):
    type: Literal["identify"]
    traits: dict[str, Any] | None = None


class Track(_Call):
    type: Literal["track"]
    event: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_NAME_LENGTH)]
    properties: dict[str, Any] | None = None


class Page(_Call):
    type: Literal["page"]
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class Screen(_Call):
    type: Literal["screen"]
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class Group(_Call):
    type: Literal["group"]
    groupId: Identifier
    traits: dict[str, Any] | None = None


class Alias(_Call):
    type: Literal["alias"]
    previousId: Identifier

    @model_validator(mode="after")
    def _user_required(self) -> Alias:
        if not self.userId:
            raise ValueError("alias needs the userId that previousId becomes")
        return self


class Delete(_Call):
    """A user-deletion (privacy) request: the user's data must be removed downstream."""

    type: Literal["delete"]


Event = Annotated[Identify | Track | Page | Screen | Group | Alias | Delete, Field(discriminator="type")]
EVENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias", "delete"})

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


class InvalidEvent(ValueError):
    """An event that breaks the Spec; `reason` is safe to show to the sender (no values echoed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_event(raw: object) -> Event:
    """Validate one event, raising InvalidEvent with a short, value-free reason."""
    if not isinstance(raw, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {_json_kind(raw)}")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        if kind is None:
            raise InvalidEvent("type is required")
        raise InvalidEvent(f"unsupported type (expected one of {', '.join(sorted(EVENT_TYPES))})")
    try:
        return _event_adapter.validate_python(raw)
    except ValidationError as error:
        raise InvalidEvent(_reason(error)) from None


def _reason(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in item["loc"][1:])  # drop the union tag
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
