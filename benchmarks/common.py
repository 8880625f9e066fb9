"""What the benchmarks share: fake AWS credentials, the event mixes and their generators, DynamoDB item
sizes, and a meter of every AWS call the handlers make through boto3.

Not a benchmark itself; `bench_*.py` import it (they run as scripts, so `benchmarks/` is on sys.path).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import subprocess  # nosec B404 - git, fixed arguments
import tarfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KB = 1024
DYNAMODB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan"})

MIXES = {
    # name: (identify, track, page, group) shares, users active in one webhook batch
    "identify-heavy": ((0.6, 0.25, 0.1, 0.05), 300),
    "track-heavy": ((0.1, 0.7, 0.17, 0.03), 150),
}
EVENTS = 4000
BATCH = 1000  # a Segment webhook batch (its default); intake packs it into a few queue messages


def use_fake_aws() -> None:
    """Fake credentials and region for moto, before anything creates a boto3 client."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


# ---------------------------------------------------------------------------------------------- events


def mix_batches(mix: str, rng: random.Random) -> list[list[dict[str, Any]]]:
    """EVENTS events of a mix, in webhook batches of BATCH, as intake queues them (small: no context)."""
    shares, users = MIXES[mix]
    batches = []
    for start in range(0, EVENTS, BATCH):
        batch = []
        for n in range(start, start + BATCH):
            user = f"user-{rng.randrange(users)}"
            timestamp = f"2026-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
            base = {
                "userId": user,
                "messageId": f"{mix}-{n}",
                "timestamp": timestamp,
                "receivedAt": timestamp,
                "context": {"ip": "198.51.100.7", "library": {"name": "analytics.js"}},
            }
            kind = rng.choices(["identify", "track", "page", "group"], weights=shares)[0]
            if kind == "identify":
                batch.append(
                    base
                    | {
                        "type": "identify",
                        "traits": {
                            "email": f"{user}@example.com",
                            "plan": rng.choice(["free", "pro", "premium"]),
                            "language": "en",
                            "name": f"Person {user}",
                            "logins": rng.randrange(100),
                        },
                    }
                )
            elif kind == "track":
                batch.append(
                    base
                    | {
                        "type": "track",
                        "event": rng.choice(["Item Viewed", "Signed Up", "Flow Completed"]),
                        "properties": {"sku": f"sku-{n}", "price": rng.randrange(10_000) / 100},
                    }
                )
            elif kind == "page":
                batch.append(base | {"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}})
            else:
                batch.append(
                    base
                    | {
                        "type": "group",
                        "groupId": f"org-{rng.randrange(20)}",
                        "traits": {"name": "Org", "employees": rng.randrange(500)},
                    }
                )
        batches.append(batch)
    return batches


def relayed_context(n: int, rng: random.Random) -> dict[str, Any]:
    """The `context` analytics.js sends and Segment relays to a webhook (about 0.6 KB)."""
    return {
        "library": {"name": "analytics.js", "version": "next-1.74.0"},
        "ip": f"198.51.100.{n % 250}",
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/131.0",
        "page": {"path": f"/items/{n}", "url": f"https://app.example.com/items/{n}", "title": "Item"},
        "locale": "en-US",
        "os": {"name": "Mac OS X", "version": "10.15.7"},
        "campaign": {
            "source": "newsletter",
            "medium": "email",
            "name": f"launch-{n % 12}",
            "content": "cta",
        },
        "traits": {"plan": rng.choice(["free", "pro", "premium"]), "company": {"id": f"org-{n % 97}"}},
        "timezone": "Europe/Berlin",
        "instance": {"id": f"{rng.getrandbits(64):016x}"},
    }


def as_relayed(event: dict[str, Any], n: int, rng: random.Random) -> dict[str, Any]:
    """A `mix_batches` event as Segment relays it from analytics.js to a webhook (about 1 KB): its
    context, a messageId of analytics.js's form, the user's browser anonymousId (one device per user),
    and Segment's timestamps."""
    user = event["userId"]
    return event | {
        "messageId": f"ajs-next-{rng.getrandbits(128):032x}",
        "anonymousId": f"{random.Random(user).getrandbits(128):032x}",
        "originalTimestamp": event["timestamp"],
        "sentAt": event["timestamp"],
        "context": relayed_context(n, rng) | {"screen": {"width": 1512, "height": 982, "density": 2}},
        "integrations": {},
        "channel": "client",
        "version": 2,
    }


def outbox_items(count: int, blob: int, rng: random.Random) -> list[dict[str, Any]]:
    """Outbox items as a product writes them; `blob` characters of notes set their size."""
    return [
        {
            "pk": "WS#ws_bench",
            "sk": f"EVT#{n}",
            "event": rng.choice(["Flow Completed", "Checklist Viewed"]),
            "userId": f"user-{rng.randrange(5000)}",
            "timestamp": "2026-01-01T00:00:00Z",
            "properties": {
                "flowId": f"flow-{n % 40}",
                "step": n % 7,
                "notes": "".join(rng.choices("abcdefghij klmnop", k=rng.randrange(blob // 2, blob))),
            },
        }
        for n in range(count)
    ]


# ---------------------------------------------------------------------------------------------- sizes


def attribute_bytes(value: dict[str, Any]) -> int:
    """Size of one DynamoDB AttributeValue, by DynamoDB's item-size rules (close approximation)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_bytes(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_bytes(v) for v in inner)
    return len(str(inner))


def item_bytes(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())


def item_units(item: Mapping[str, Any]) -> int:
    """Write units of putting `item` (1 per started KB)."""
    return max(1, math.ceil(item_bytes(item) / KB))


# ---------------------------------------------------------------------------------------------- meter


@dataclass(frozen=True)
class Index:
    name: str
    local: bool
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()


def table_indexes(template: Mapping[str, Any]) -> tuple[dict[str, tuple[str, ...]], dict[str, list[Index]]]:
    """Each table's key attributes and secondary indexes, from the template (tables are named after
    their logical ids locally, as bridge_dev.template creates them)."""
    keys: dict[str, tuple[str, ...]] = {}
    indexes: dict[str, list[Index]] = {}
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        properties = resource["Properties"]
        keys[name] = tuple(key["AttributeName"] for key in properties["KeySchema"])
        indexes[name] = [
            Index(
                name=index["IndexName"],
                local=local,
                keys=tuple(key["AttributeName"] for key in index["KeySchema"]),
                projection=index["Projection"]["ProjectionType"],
                included=tuple(index["Projection"].get("NonKeyAttributes", ())),
            )
            for local, group in ((True, "LocalSecondaryIndexes"), (False, "GlobalSecondaryIndexes"))
            for index in properties.get(group, [])
        ]
    return keys, indexes


class AwsMeter:
    """Every AWS call made through boto3's default session, by service and operation, with what AWS
    bills for it, and the time spent inside the calls.

    Units: DynamoDB write units (1 per started KB of the larger of the item before and after, for the
    table and for every index the item is or was in: an index write is skipped only when neither its
    key nor any projected attribute changed; a failed condition costs the existing item's size) and read
    units (1 per started 4 KB of each item read strongly consistently, 1 for a missing item, half for
    eventually consistent reads), computed from item sizes tracked here, since moto's ConsumedCapacity is
    a constant. SQS: 64 KB chunks of each request's payload. Anything else: 1 per request.
    `charge` adds calls made by AWS on our behalf that no handler makes (Lambda's SQS poller).
    `errors` counts the calls AWS refused, by error code (ConditionalCheckFailedException: a version
    conflict). Calls made from several threads at once are counted alike (one lock).
    `priced=False` counts calls and errors only: sizing every item costs CPU in the measured process
    (9-19% of a CPU-bound invocation's samples), which a throughput figure must not carry."""

    def __init__(self, template: Mapping[str, Any], *, priced: bool = True) -> None:
        self.priced = priced
        self.requests: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[tuple[str, str, str]] = Counter()  # (service, op, error code)
        self.units: defaultdict[tuple[str, str, str], float] = defaultdict(float)  # (service, op, resource)
        self.payload_bytes: Counter[str] = Counter()  # service -> bytes sent
        self.inside_seconds = 0.0  # in moto, in process: stands in for AWS's own time
        self.inside_cpu_seconds = 0.0  # the same, CPU of the calling threads only (no waits for the GIL)
        self.meter_seconds = 0.0  # in this meter: not the handlers' time either
        self.recording = False
        self._keys, self._indexes = table_indexes(template)
        self._items: dict[tuple[str, str], dict[str, Any]] = {}  # (table, key) -> item as stored
        self._sending = threading.local()  # when this thread's call was sent
        self._lock = threading.Lock()

    # --- wiring --------------------------------------------------------------------------------

    def install(self) -> None:
        """Meter the clients created from now on by boto3's default session (a new one)."""
        import boto3

        boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("before-parameter-build", self._before)
        session.events.register("after-call", self._after)
        # moto answers in a before-send handler: ours run first and last around it.
        session.events.register_first("before-send", self._send_started)
        session.events.register_last("before-send", self._send_ended)

    def charge(self, service: str, operation: str, resource: str, units: float, payload: int = 0) -> None:
        """A request made on our behalf (not by a handler), with its billed units."""
        if self.recording:
            self.requests[service, operation] += 1
            self.units[service, operation, resource] += units
            self.payload_bytes[service] += payload

    def _send_started(self, **_: Any) -> None:
        self._sending.at = time.perf_counter()
        self._sending.cpu = time.thread_time()

    def _send_ended(self, **_: Any) -> None:
        if self.recording:
            cpu = time.thread_time() - self._sending.cpu
            with self._lock:
                self.inside_seconds += time.perf_counter() - self._sending.at
                self.inside_cpu_seconds += cpu

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        started = time.perf_counter()
        context["bench_params"] = params
        context["bench_body_bytes"] = _length(params.get("Body"))
        self.meter_seconds += time.perf_counter() - started

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self._count(parsed, model, context)

    def _count(self, parsed: dict[str, Any], model: Any, context: dict[str, Any]) -> None:
        started = time.perf_counter()
        service, operation = model.service_model.service_name, model.name
        params = context.get("bench_params", {})
        failed = "Error" in parsed
        if failed and self.recording:
            self.errors[service, operation, str(parsed["Error"].get("Code", ""))] += 1
        if not self.priced:
            billed = {}
        elif service == "dynamodb":
            billed = self._dynamodb(operation, params, parsed, failed)
        elif service == "sqs":
            billed = _sqs(operation, params, parsed)
        else:
            billed = {_resource(params): 1.0}
        if self.recording:
            self.requests[service, operation] += 1
            for resource, units in billed.items():
                self.units[service, operation, resource] += units
            if service == "sqs":
                self.payload_bytes[service] += sum(_sqs_bodies(operation, params, parsed))
            else:
                self.payload_bytes[service] += context.get("bench_body_bytes", 0)
        self.meter_seconds += time.perf_counter() - started

    # --- DynamoDB ------------------------------------------------------------------------------

    def _key(self, table: str, item: Mapping[str, Any]) -> tuple[str, str]:
        return table, json.dumps([item.get(name) for name in self._keys.get(table, ())], sort_keys=True)

    def _dynamodb(
        self, operation: str, params: dict[str, Any], parsed: dict[str, Any], failed: bool
    ) -> dict[str, float]:
        billed: defaultdict[str, float] = defaultdict(float)
        if operation in ("PutItem", "DeleteItem", "UpdateItem"):
            table = params["TableName"]
            new = params.get("Item") if operation == "PutItem" else None
            key = self._key(table, params.get("Item") or params.get("Key") or {})
            if operation == "UpdateItem":  # the new item is not known here: bill and keep the old one
                new = self._items.get(key) or params["Key"]
            self._write(billed, table, key, new, failed)
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                left = parsed.get("UnprocessedItems", {}).get(table, [])
                for request in requests:
                    if request in left:  # not written: sent again in the next call
                        continue
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        self._write(billed, table, self._key(table, item), item, failed)
                    else:
                        key = self._key(table, request["DeleteRequest"]["Key"])
                        self._write(billed, table, key, None, failed)
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, action),) = entry.items()
                table = action["TableName"]
                item = action.get("Item") or action.get("Key") or {}
                key = self._key(table, item)
                new = item if kind == "Put" else None if kind == "Delete" else self._items.get(key)
                single: defaultdict[str, float] = defaultdict(float)
                self._write(single, table, key, new, failed, store=kind != "ConditionCheck")
                for resource, units in single.items():
                    billed[resource] += 2 * units  # transactions bill twice
        elif operation in ("GetItem", "BatchGetItem"):
            wanted: dict[str, Any] = (
                {
                    params["TableName"]: {
                        "Keys": [params["Key"]],
                        "ConsistentRead": params.get("ConsistentRead"),
                    }
                }
                if operation == "GetItem"
                else params["RequestItems"]
            )
            for table, request in wanted.items():
                factor = 1.0 if request.get("ConsistentRead") else 0.5
                for key in request["Keys"]:
                    stored = self._items.get(self._key(table, key))
                    size = item_bytes(stored) if stored else 0
                    billed[self._label(table, key)] += factor * max(1, math.ceil(size / (4 * KB)))
        elif operation in ("Query", "Scan"):
            table = params["TableName"]
            resource = f"{table} {params['IndexName']}" if params.get("IndexName") else table
            size = sum(
                item_bytes(self._items.get(self._key(table, item), item)) for item in parsed.get("Items", [])
            )
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            billed[resource] += factor * max(1, math.ceil(size / (4 * KB)))
        else:
            billed[params.get("TableName", "")] += 1
        return dict(billed)

    def _write(
        self,
        billed: defaultdict[str, float],
        table: str,
        key: tuple[str, str],
        new: dict[str, Any] | None,
        failed: bool,
        store: bool = True,
    ) -> None:
        old = self._items.get(key)
        label = self._label(table, new or old or {})
        if failed:  # a failed condition still costs the existing item's size, on the table only
            billed[label] += max(1, math.ceil(item_bytes(old or {}) / KB))
            return
        billed[label] += max(1, math.ceil(max(item_bytes(old or {}), item_bytes(new or {})) / KB))
        for index in self._indexes.get(table, []):
            before, after = self._entry(table, index, old), self._entry(table, index, new)
            label = self._label(table, new or old or {}, index)
            if before is not None and after is not None:
                if before == after:
                    continue  # neither the index key nor a projected attribute changed
                same_key = all(before.get(name) == after.get(name) for name in index.keys)
                if same_key:
                    billed[label] += math.ceil(max(item_bytes(before), item_bytes(after)) / KB)
                else:  # moved in the index: a delete and a put
                    billed[label] += math.ceil(item_bytes(before) / KB) + math.ceil(item_bytes(after) / KB)
            elif before is not None or after is not None:
                billed[label] += math.ceil(item_bytes(before or after or {}) / KB)
        if store:
            if new is None:
                self._items.pop(key, None)
            else:
                self._items[key] = new

    def _label(self, table: str, item: Mapping[str, Any], index: Index | None = None) -> str:
        """Where units go: the table (or index) and the kind of item, named by its sort key's prefix
        (`PROFILE`, `MSG#...` -> MSG, `MEMBER#...` -> MEMBER)."""
        where = f"{table} {index.name}" if index else table
        keys = self._keys.get(table, ())
        sort_key = item.get(keys[-1]) if len(keys) > 1 else None
        if isinstance(sort_key, dict) and isinstance(sort_key.get("S"), str):
            return f"{where} {sort_key['S'].split('#', 1)[0]}"
        return where

    def _entry(self, table: str, index: Index, item: dict[str, Any] | None) -> dict[str, Any] | None:
        """The item's entry in an index (its projected attributes), None if it is not in the index."""
        if item is None or not all(name in item for name in index.keys):
            return None
        if index.projection == "ALL":
            return item
        kept = set(self._keys[table]) | set(index.keys) | set(index.included)
        return {name: value for name, value in item.items() if name in kept}

    def stored_item(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The item as last written (DynamoDB JSON), if it exists."""
        return self._items.get(self._key(table, key))

    def stored_bytes(self) -> dict[str, int]:
        """Bytes held per table and index now (DynamoDB adds 100 bytes of overhead per index entry)."""
        out: Counter[str] = Counter()
        for (table, _), item in self._items.items():
            out[table] += item_bytes(item)
            for index in self._indexes.get(table, []):
                entry = self._entry(table, index, item)
                if entry is not None:
                    out[f"{table} {index.name}"] += item_bytes(entry) + 100
        return dict(out)


def _length(body: Any) -> int:
    """Bytes of an S3 Body: bytes, a string, or the file object botocore may have made of it."""
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    if hasattr(body, "seek") and hasattr(body, "tell"):
        where = body.tell()
        size = int(body.seek(0, 2))
        body.seek(where)
        return size
    return 0


def _resource(params: Mapping[str, Any]) -> str:
    for name in ("TableName", "Bucket", "QueueUrl", "SecretId", "StreamArn"):
        if name in params:
            return str(params[name]).rsplit("/", 1)[-1]
    return ""


def _sqs_bodies(operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> list[int]:
    if operation == "SendMessage":
        return [len(params["MessageBody"].encode())]
    if operation == "SendMessageBatch":
        return [len(entry["MessageBody"].encode()) for entry in params["Entries"]]
    if operation == "ReceiveMessage":
        return [len(message["Body"].encode()) for message in parsed.get("Messages", [])]
    return []


def _sqs(operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> dict[str, float]:
    """SQS bills every 64 KB chunk of a request's payload as one request."""
    return {_resource(params): sqs_chunks(sum(_sqs_bodies(operation, params, parsed)))}


def sqs_chunks(payload: int) -> int:
    return max(1, math.ceil(payload / (64 * KB)))


# ---------------------------------------------------------------------------------------------- latency


class InjectedLatency:
    """Every AWS call made through boto3's default session waits `seconds` before it is sent, in the
    thread that makes it (a botocore `before-sign` hook: it runs once per attempt, retries included, for
    every service and whether moto answers in process or over HTTP). In-region DynamoDB, SQS and S3
    calls take milliseconds, which moto does not: without this, a design that waits on its calls one
    after another looks as fast as one that overlaps them."""

    def __init__(self, seconds: float = 0.0, by_service: Mapping[str, float] | None = None) -> None:
        self.seconds = seconds
        """The wait of a call to a service not in `by_service` (all of them, by default)."""
        self.by_service = dict(by_service or {})
        """Seconds per call to a service, by its signing name (dynamodb, sqs, s3, secretsmanager)."""
        self.enabled = True
        self._slept = threading.local()

    def install(self) -> None:
        """On boto3's default session (the one the store's clients come from): call it after anything
        that replaces that session (AwsMeter.install), before the store makes its clients."""
        import boto3

        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-sign", self._wait)

    def _wait(self, signing_name: str = "", **_: Any) -> None:
        seconds = self.by_service.get(signing_name, self.seconds)
        if self.enabled and seconds > 0:
            time.sleep(seconds)
            self._slept.seconds = self.slept_here() + seconds

    def slept_here(self) -> float:
        """Seconds this thread has waited in injected latency so far."""
        return float(getattr(self._slept, "seconds", 0.0))


def atomic_moto_writes() -> None:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are: moto checks a ConditionExpression and then
    stores the item in two Python steps, so two threads writing one item can both pass the check. One
    lock around each write keeps concurrent invocations' version checks honest (what is measured is our
    conflict handling, not moto's race)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_bench_atomic", False):
        return
    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    DynamoDBBackend._bench_atomic = True  # type: ignore[attr-defined]


REPO = Path(__file__).resolve().parent.parent
DESIGN_PATHS = ("layers/bridge/segment_bridge", "functions", "template.yaml")
"""What makes a design: the layer, the functions and the template (what --baseline REV measures)."""


def extract_revision(rev: str, into: Path) -> Path:
    """A revision's layer, functions and template (DESIGN_PATHS), from `git archive`, under `into`."""
    commit = subprocess.run(  # noqa: S603 - git, fixed arguments
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(  # noqa: S603
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, *DESIGN_PATHS],  # noqa: S607
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into
