"""Mapping: how one workspace's Segment events become profiles, channels, preferences and history.

A workspace's mapping is a validated pydantic model, stored whole with a version (a new version replaces
the old in one write: never half-applied). Paths are JMESPath expressions (the expression language
Powertools ships with), evaluated against an identify's traits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from segment_bridge.identity import MergeProtection

EventType = Literal["identify", "track", "page", "screen", "group", "alias", "delete"]
Channel = Literal[
    "email",
    "sms",
    "whatsapp",
    "slack_email",
    "slack_user_id",
    "androidpush_fcm",
    "androidpush_xiaomi",
    "iospush_apns",
]
Preference = Literal["language"]

ALL_EVENT_TYPES: frozenset[EventType] = frozenset(
    ("identify", "track", "page", "screen", "group", "alias", "delete")
)
DELETES_NOTE = "`delete` is always applied: a privacy delete cannot be turned off by a mapping."
"""What the CLI says when a mapping file's `event_types` left `delete` out (it is added)."""


def _compiles(expression: str) -> str:
    try:
        compiled(expression)
    except JMESPathError as error:
        raise ValueError(f"not a valid JMESPath expression: {error}") from None
    return expression


Expression = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_compiles)]

DEFAULT_CHANNELS: dict[Channel, str] = {
    # SuprSend's defaults: Segment trait -> delivery channel.
    "email": "email",
    "sms": "phone",
    "whatsapp": "whatsapp",
    "slack_email": "slackEmail",
    "slack_user_id": "slackUserID",
    "androidpush_fcm": "fcmAndroidpush",
    "androidpush_xiaomi": "xiaomiAndroidpush",
    "iospush_apns": "apnsIospush",
}
DEFAULT_PREFERENCES: dict[Preference, str] = {"language": "language"}
MAX_MAPPING_BYTES = 300 * 1024
"""A mapping is stored whole in one WorkspacesTable item (store/mappings.py): DynamoDB's 400 KB item
less room for its key and other attributes."""


class Mapping(BaseModel):
    """A workspace's mapping. Unknown fields are refused, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=0, ge=0, description="Set by the store on each change; 0 = the defaults.")
    event_types: frozenset[EventType] = Field(
        default=ALL_EVENT_TYPES,
        description="Event types applied; `delete` always is (a privacy delete cannot be turned off).",
    )
    include_events: frozenset[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        description="If set, only these track/page/screen names are applied (before the prefix).",
    )
    exclude_events: frozenset[Annotated[str, Field(min_length=1)]] = Field(
        default=frozenset(), description="These event names are never applied (before the prefix)."
    )
    event_prefix: str = Field(default="", max_length=64, description='e.g. "segment : " (SuprSend).')
    channels: dict[Channel, Expression] = Field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    preferences: dict[Preference, Expression] = Field(default_factory=lambda: dict(DEFAULT_PREFERENCES))
    history_days: int = Field(default=365, ge=1, le=3650, description="Event history retention (TTL).")
    merge_protection: MergeProtection = Field(
        default_factory=MergeProtection,
        description="Blocked id values and the anonymous ids limit (Segment Unify's defaults).",
    )

    @field_validator("event_types")
    @classmethod
    def _deletes_always(cls, types: frozenset[EventType]) -> frozenset[EventType]:
        """`delete` is added to any list that leaves it out (docs/exactness.md): a mapping chooses which
        data it keeps, never whether a user's deletion is honoured. Stored mappings that left it out
        are read with it, so no processor skips a delete under them."""
        return types | {"delete"}

    @model_validator(mode="after")
    def _fits_one_item(self) -> Mapping:
        """Refused, naming its largest field, if it could not be stored in one item."""
        size = len(self.model_dump_json(exclude={"version"}).encode())
        if size > MAX_MAPPING_BYTES:
            largest = max(
                (name for name in type(self).model_fields if name != "version"),
                key=lambda name: len(self.model_dump_json(include={name}).encode()),
            )
            raise ValueError(
                f"{largest}: too large, the mapping would take {size:,} bytes stored, more than "
                f"{MAX_MAPPING_BYTES:,} (this is its largest field)"
            )
        return self

    def applies_to(self, event_type: str) -> bool:
        return event_type == "delete" or event_type in self.event_types

    def keeps_event(self, name: str) -> bool:
        if name in self.exclude_events:
            return False
        return self.include_events is None or name in self.include_events

    def channel_values(self, traits: dict[str, Any]) -> dict[str, list[str]]:
        """Each channel's values found in the traits (a string or a list of strings; others ignored)."""
        return self.evaluate(traits).channels

    def preference_values(self, traits: dict[str, Any]) -> tuple[dict[str, str], int]:
        """(valid preferences, how many mapped values were ignored as invalid)."""
        found = self.evaluate(traits)
        return found.preferences, found.ignored_preferences

    def evaluate(self, traits: dict[str, Any]) -> Found:
        """Every channel and preference path on one identify's traits. A path that fails on these traits
        (a function given a value of another type) finds nothing and is counted in `failed_paths`."""
        found = Found()
        for channel, expression in self.channels.items():
            result = search(expression, traits)
            if result is FAILED:
                found.failed_paths += 1
                continue
            values = [value for value in _as_list(result) if _usable(value)]
            if values:
                found.channels[channel] = [value.strip() for value in values]
        for preference, expression in self.preferences.items():
            value = search(expression, traits)
            if value is FAILED:
                found.failed_paths += 1
                continue
            if value is None:
                continue
            code = value.strip().lower() if isinstance(value, str) else None
            if code in ISO_639_1:
                found.preferences[preference] = code
            else:
                found.ignored_preferences += 1
        return found


@dataclass
class Found:
    """What a mapping's paths found in one identify's traits."""

    channels: dict[str, list[str]] = field(default_factory=dict)
    preferences: dict[str, str] = field(default_factory=dict)
    ignored_preferences: int = 0
    """Mapped preference values that are not valid (e.g. not an ISO 639-1 code)."""
    failed_paths: int = 0
    """Paths that could not be evaluated on these traits: they found nothing."""


def event_name(event: dict[str, Any]) -> str:
    """The name an event is recorded under (before the prefix), following Segment's destination naming."""
    kind = event["type"]
    if kind == "track":
        return str(event["event"])
    name = event.get("name")
    noun = "Page" if kind == "page" else "Screen"
    return f"Viewed {name} {noun}" if isinstance(name, str) and name else f"Loaded a {noun}"


FAILED: Final = object()
"""What `search` returns for an expression that cannot be evaluated on the data."""


def search(expression: str, data: Any) -> Any:
    """The expression's result on `data`, or FAILED when evaluating it fails on this data (a JMESPath
    function given a value of another type, a comparison of mixed types, nesting too deep). The error
    is dropped, never logged: its text quotes the data (an email, a name)."""
    try:
        return compiled(expression).search(data)
    except Exception:  # any failure on this one record means "nothing found" for it
        return FAILED


@lru_cache(maxsize=512)
def compiled(expression: str) -> jmespath.parser.ParsedResult:
    return jmespath.compile(expression)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _usable(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 512


ISO_639_1 = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv
    dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig
    ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh
    mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru
    rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug
    uk ur uz ve vi vo wa wo xh yi yo za zh zu
    """.split()  # noqa: SIM905 - 184 codes read better as words
)
"""The ISO 639-1 two-letter language codes (184, including the withdrawn "bh" still seen in the wild).
A constant rather than a dependency: pycountry would add ~30 MB to the layer for these 184 strings."""
