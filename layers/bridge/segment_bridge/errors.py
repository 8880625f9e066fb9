"""Our exceptions. Each carries the HTTP answer it maps to, so handlers map them in one place."""

from __future__ import annotations


class BridgeError(Exception):
    """An error with a stable machine-readable code and a status that follows Segment's retry rules.

    Segment retries 408, 423, 429 and 5xx (not 501) and drops other 4xx for good: a 4xx is only for
    what a retry can never fix.
    """

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class UnreadableBody(BridgeError):
    status, code = 400, "invalid_body"


class InvalidPayload(BridgeError):
    status, code = 400, "invalid_payload"


class NoValidEvents(BridgeError):
    status, code = 400, "invalid_events"


class Unauthorized(BridgeError):
    status, code = 401, "unauthorized"


class InvalidSignature(BridgeError):
    status, code = 401, "invalid_signature"


class PayloadTooLarge(BridgeError):
    status, code = 413, "payload_too_large"


class ServiceUnavailable(BridgeError):
    """A dependency (queue, table, bucket) could not take or give data: Segment should retry."""

    status, code = 503, "service_unavailable"


class InvalidWorkspaceId(BridgeError):
    """A workspace id outside limits.WORKSPACE_ID_PATTERN (a `#` would break our keys)."""

    status, code = 400, "invalid_workspace_id"


class NotFound(BridgeError):
    status, code = 404, "not_found"


class Conflict(BridgeError):
    status, code = 409, "conflict"


class UnsupportedEncoding(BridgeError):
    status, code = 415, "unsupported_encoding"


class ConditionFailed(Conflict):
    """A conditional write found the item other than it expected: another writer got there first."""


class Unstorable(BridgeError):
    """DynamoDB refused an item or key as invalid (over its size or depth limits): retrying cannot help."""

    status, code = 400, "unstorable"
