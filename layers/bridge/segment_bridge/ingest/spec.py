"""Pydantic models of the Segment Spec: the calls we accept and the checks each must pass.

The models validate; they do not rewrite. Intake keeps the event as the client sent it (extra fields
included) and only adds its enrichment, so nothing a customer sends is lost in translation.

Strict where meaning is at stake, lenient where it is not (docs/privacy-requests.md):
- a field we do not need to apply the event (`originalTimestamp`, `sentAt`, `context`, `integrations`,
  and every field the models do not name: `channel`, `projectId`, `version`, ...) never refuses it: a
  value the model cannot read counts as absent, and the event keeps it as sent;
- in every optional field, `null` and `[]` count as absent (PHP encodes an empty object as `[]`);
- a `delete` needs only its subject (`userId`, or `anonymousId`): an unreadable timestamp, receivedAt or
  messageId counts as absent too, and intake falls back (receivedAt: the delivery's; timestamp: the
  skew rule; messageId: a derived one).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
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


def number_as_id(value: object) -> object:
    """A JSON number sent as an id, as the string Segment's JavaScript libraries make of it.

    analytics.js and analytics-node take ids as `String(id)` and JSON gives a number one value however it is
    spelt, so `1`, `1.0` and `1e0` are the user "1", and `-0.0` and `0` the user "0" (ECMAScript's
    Number::toString: shortest round-trip digits, exponent form from 1e21 and below 1e-6). One deviation:
    an integer spelt without a fraction or exponent keeps every digit (`12345678901234567891`), as
    analytics-python's and analytics-go's `str`/`strconv` keep it, where a double would round it into a
    stranger's id. Strings are never touched ("1.0" stays "1.0"); booleans are not ids."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return str(value)
    return _ecmascript_number(value)


def _ecmascript_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), int(exponent) + len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits[0] + (f".{digits[1:]}" if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 > 0 else '-'}{abs(n - 1)}"
    return sign + text


def _absent_if_empty(value: object) -> object:
    """`null` and `[]` in an optional field count as absent."""
    return None if isinstance(value, list) and not value else value


def _absent_if_unreadable(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """For a field we do not need: what the model cannot read counts as absent (the event keeps it)."""
    try:
        return handler(value)
    except ValidationError:
        return None


Identifier = Annotated[
    str,
    BeforeValidator(number_as_id),
    Field(min_length=1, max_length=MAX_ID_LENGTH),
    AfterValidator(_fits_keys),
]
"""Segment's API takes numeric ids as strings; so do we (`number_as_id`)."""
MessageId = Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_ID_LENGTH)]

Optional = BeforeValidator(_absent_if_empty)
Lenient = WrapValidator(_absent_if_unreadable)
OptionalIdentifier = Annotated[Identifier | None, Optional]
OptionalMessageId = Annotated[MessageId | None, Optional]
OptionalTimestamp = Annotated[Timestamp | None, Optional]
LenientTimestamp = Annotated[Timestamp | None, Lenient]
LenientObject = Annotated[dict[str, Any] | None, Lenient]
LenientMessageId = Annotated[MessageId | None, Lenient]
OptionalObject = Annotated[dict[str, Any] | None, Optional]
OptionalText = Annotated[str | None, Optional]

LENIENT_FIELDS = ("originalTimestamp", "sentAt", "context", "integrations")
"""The common fields the models name but do not need to apply an event (with every field they do not
name): never a reason to refuse one."""


class _Call(BaseModel):
    """Fields common to every call (Segment Spec: Common fields)."""

    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)

    userId: OptionalIdentifier = None
    anonymousId: OptionalIdentifier = None
    messageId: OptionalMessageId = None
    timestamp: OptionalTimestamp = None
    originalTimestamp: LenientTimestamp = None
    sentAt: LenientTimestamp = None
    receivedAt: OptionalTimestamp = None
    context: LenientObject = None
    integrations: LenientObject = None

    @model_validator(mode="after")
    def _identity_present(self) -> _Call:
        if not self.userId and not self.anonymousId:
            raise ValueError("userId or anonymousId is required")
        return self


class Identify(_Call):
    type: Literal["identify"]
    traits: OptionalObject = None


class Track(_Call):
    type: Literal["track"]
    event: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_NAME_LENGTH)]
    properties: OptionalObject = None


class Page(_Call):
    type: Literal["page"]
    name: OptionalText = None
    category: OptionalText = None
    properties: OptionalObject = None


class Screen(_Call):
    type: Literal["screen"]
    name: OptionalText = None
    category: OptionalText = None
    properties: OptionalObject = None


class Group(_Call):
    type: Literal["group"]
    groupId: Identifier
    traits: OptionalObject = None


class Alias(_Call):
    type: Literal["alias"]
    previousId: Identifier

    @model_validator(mode="after")
    def _user_required(self) -> Alias:
        if not self.userId:
            raise ValueError("alias needs the userId that previousId becomes")
        return self


class Delete(_Call):
    """A user-deletion (privacy) request: the user's data must be removed downstream. It needs only its
    subject: Segment's own delete payloads carry `context: null` or `[]`, no messageId, and times in
    Go's text form, and a refused delete (400) is one Segment never sends again."""

    type: Literal["delete"]
    messageId: LenientMessageId = None
    timestamp: LenientTimestamp = None
    receivedAt: LenientTimestamp = None


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
