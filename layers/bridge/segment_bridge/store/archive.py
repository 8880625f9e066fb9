"""The archive bucket: what was received, refused, or could not be applied, as gzip JSON lines.

raw/workspace=<id>/date=<YYYY-MM-DD>/<request_id>-<message_id>.jsonl.gz   accepted events, one a line
rejected/workspace=<id>/date=<YYYY-MM-DD>/<HHMMSS>-<request_id>.jsonl.gz  refused events with reasons
unapplied/workspace=<id>/date=<YYYY-MM-DD>/<request_id>-<message_id>.jsonl.gz
                                                   accepted events the processor could not apply
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from segment_bridge.errors import NotFound, ServiceUnavailable
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors

READ_FAILURE = "The archive cannot be read right now."
LIST_PAGE_KEYS = 1000
"""ListObjectsV2's page (S3's maximum): an archive job's task is one page of keys."""
DELETE_OBJECTS_KEYS = 1000
"""DeleteObjects' limit per request."""


def day_prefix(kind: str, workspace_id: str, day: date) -> str:
    """Archive objects are partitioned by kind, workspace and UTC day (Athena/Glue-style key=value)."""
    utc_day = day.astimezone(UTC).date() if isinstance(day, datetime) else day
    return f"{kind}/workspace={workspace_id}/date={utc_day:%Y-%m-%d}/"


class Archive:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.bucket = settings.archive_bucket
        self.clients = clients

    def archive_raw(
        self, workspace_id: str, received_at: datetime, name: str, events: list[dict[str, Any]]
    ) -> str:
        """Keep accepted events as they were queued, so they can be replayed. The same `name` overwrites
        (a redelivered queue message archives once)."""
        key = f"{day_prefix('raw', workspace_id, received_at)}{name}.jsonl.gz"
        self._put_jsonl(key, events, "Events could not be archived.")
        return key

    def keep_unapplied(
        self, workspace_id: str, received_at: datetime, name: str, records: list[dict[str, Any]]
    ) -> None:
        """Keep events the mapping could not apply, with their reasons (unapplied/, like rejected/)."""
        key = f"{day_prefix('unapplied', workspace_id, received_at)}{name}.jsonl.gz"
        self._put_jsonl(key, records, "Unapplied events could not be kept.")

    def keep_rejected(
        self, workspace_id: str, request_id: str, received_at: datetime, records: list[dict[str, Any]]
    ) -> None:
        """Keep the events intake refused, with their reasons, where the CLI can list them."""
        moment = received_at.astimezone(UTC)
        key = f"{day_prefix('rejected', workspace_id, received_at)}{moment:%H%M%S}-{request_id}.jsonl.gz"
        self._put_jsonl(key, records, "Rejected events could not be kept; retry the request.")

    def list_unapplied(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        return self._read_jsonl(day_prefix("unapplied", workspace_id, day))

    def list_rejected(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        """The rejected events of a workspace on a day (UTC), oldest first."""
        return self._read_jsonl(day_prefix("rejected", workspace_id, day))

    def list_archived(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        """The archived (accepted) events of a workspace received on a day (UTC)."""
        return self._read_jsonl(day_prefix("raw", workspace_id, day))

    def archived_batches(self, workspace_id: str, day: date) -> Iterator[list[dict[str, Any]]]:
        """The archived events of a day, one list per archived queue message (as they were applied)."""
        return self._objects_jsonl(day_prefix("raw", workspace_id, day))

    def count_archived(self, workspace_id: str, day: date) -> int:
        """How many archived batches (objects) a day holds."""
        with aws_errors(READ_FAILURE):
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=day_prefix("raw", workspace_id, day)
            )
            return sum(page.get("KeyCount", 0) for page in pages)

    def list_objects(self, kind: str, workspace_id: str, day: date) -> list[tuple[str, datetime]]:
        """The keys of a kind's objects (raw, rejected, unapplied) of a workspace's day, with when each
        was written (what `segment-bridge tail` polls)."""
        with aws_errors(READ_FAILURE):
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=day_prefix(kind, workspace_id, day)
            )
            return [
                (found["Key"], found["LastModified"]) for page in pages for found in page.get("Contents", [])
            ]

    def read_object(self, key: str) -> list[dict[str, Any]]:
        """One archive object's records (gzip JSON lines)."""
        with aws_errors(READ_FAILURE):
            body = self.clients.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return [json.loads(line) for line in gzip.decompress(body).decode("utf-8").splitlines()]

    def objects(self, kind: str, workspace_id: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every object of a workspace under `kind` (raw, rejected, unapplied), all days: (key, records)."""
        prefix = f"{kind}/workspace={workspace_id}/"
        s3 = self.clients.s3
        with aws_errors(READ_FAILURE):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for summary in page.get("Contents", []):
                    body = s3.get_object(Bucket=self.bucket, Key=summary["Key"])["Body"].read()
                    lines = gzip.decompress(body).decode("utf-8").splitlines()
                    yield summary["Key"], [json.loads(line) for line in lines]

    # --- what archive jobs use (docs/archive-jobs.md): pages of keys, one object's bytes -----------

    def days(self, kind: str, workspace_id: str) -> list[str]:
        """The day prefixes (`<kind>/workspace=<id>/date=<day>/`) a workspace's `kind` holds objects under:
        one ListObjectsV2 call per 1,000 days (the delimiter folds each day into one entry)."""
        with aws_errors(READ_FAILURE):
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{kind}/workspace={workspace_id}/", Delimiter="/"
            )
            return [found["Prefix"] for page in pages for found in page.get("CommonPrefixes", [])]

    def page(self, prefix: str, start_after: str | None, limit: int | None = None) -> tuple[list[str], bool]:
        """Up to `limit` (LIST_PAGE_KEYS) keys under `prefix` after `start_after`, in key order, and whether
        more follow."""
        arguments: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": limit or LIST_PAGE_KEYS,
        }
        if start_after:
            arguments["StartAfter"] = start_after
        with aws_errors(READ_FAILURE):
            found = self.clients.s3.list_objects_v2(**arguments)
        return [summary["Key"] for summary in found.get("Contents", [])], bool(found.get("IsTruncated"))

    def read_lines(self, key: str) -> bytes | None:
        """One object's JSON lines, decompressed (None if it is gone: a purge deleted it emptied)."""
        try:
            with aws_errors(READ_FAILURE, refused={"NoSuchKey": _Gone(key)}):
                body = self.clients.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except _Gone:
            return None
        return gzip.decompress(body)

    def delete_keys(self, keys: list[str]) -> None:
        """Delete objects, DELETE_OBJECTS_KEYS a call (offboarding)."""
        for start in range(0, len(keys), DELETE_OBJECTS_KEYS):
            chunk = keys[start : start + DELETE_OBJECTS_KEYS]
            with aws_errors("Archived objects could not be deleted."):
                answer = self.clients.s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True}
                )
            if answer.get("Errors"):
                raise ServiceUnavailable("Archived objects could not be deleted.")

    def rewrite(self, key: str, records: list[dict[str, Any]]) -> None:
        """Replace an object's records (a purge); an object left with none is deleted."""
        if records:
            self._put_jsonl(key, records, "An archived object could not be rewritten.")
            return
        with aws_errors("An archived object could not be deleted."):
            self.clients.s3.delete_object(Bucket=self.bucket, Key=key)

    def _put_jsonl(self, key: str, records: list[dict[str, Any]], failure: str) -> None:
        lines = "".join(json.dumps(record, separators=(",", ":"), default=str) + "\n" for record in records)
        with aws_errors(failure):
            self.clients.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=gzip.compress(lines.encode("utf-8"), mtime=0),
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
            )

    def _read_jsonl(self, prefix: str) -> Iterator[dict[str, Any]]:
        for records in self._objects_jsonl(prefix):
            yield from records

    def _objects_jsonl(self, prefix: str) -> Iterator[list[dict[str, Any]]]:
        """Each object under `prefix` (gzip JSON lines) as a list of records, in key order."""
        s3 = self.clients.s3
        with aws_errors(READ_FAILURE):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for summary in page.get("Contents", []):
                    body = s3.get_object(Bucket=self.bucket, Key=summary["Key"])["Body"].read()
                    yield [json.loads(line) for line in gzip.decompress(body).decode("utf-8").splitlines()]


class _Gone(NotFound):
    """NoSuchKey: the object is not there (any more)."""
