"""Lambda's event source mappings, locally: the SQS poller and the DynamoDB stream poller.

Each reads its settings from template.yaml (batch size, partial batch responses, retries, on-failure
destination) so the local stack behaves as the deployed one:
- SQS: receive up to BatchSize messages, invoke, delete only what succeeded (ReportBatchItemFailures);
  failed messages reappear after the queue's visibility timeout and, after maxReceiveCount, SQS itself
  (moto) moves them to the dead-letter queue. Messages with a MessageGroupId are served as an SQS fair
  queue serves them: the pollers of a queue share what they have received (up to LOOKAHEAD messages)
  and hand over a batch taken in turn from each group, so one group's backlog does not hold up the
  others (moto's standard queue is first in, first out); a noisy group (more than NOISY_SHARE of the
  functions' recent processing time, SQS's processing-time share) is served after the quiet ones.
- Streams: read each shard in order, gather records until BatchSize of them or until
  MaximumBatchingWindowInSeconds has passed since the first, invoke with them; on reported failures retry
  from the first failed record (up to MaximumRetryAttempts), then send an on-failure record (as Lambda
  does: a pointer, not the data) to the destination queue and move on.
Neither waits longer than Lambda would: the SQS poller long-polls back to back, the stream poller reads
an idle shard five times a second (Lambda: four).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import boto3

from bridge_dev.runtime import lambda_sqs_event, lambda_stream_record

LOGGER = logging.getLogger("segment_bridge.local")
Invoke = Callable[[dict[str, Any], str], Any]


class Poller:
    IDLE_SECONDS = 0.2
    """How long a poller waits after a poll that found nothing to invoke with."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def signal_stop(self) -> None:
        """Ask the poller to stop without waiting for it: stopping many, signal them all first, then
        stop() each (each waits for its own poller only once every poller has been asked)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if wait := self.poll_once():
                    self._stop.wait(wait)
            except Exception:  # a poller must outlive any one failure, as Lambda's does
                LOGGER.exception("%s failed; polling again", self._thread.name)
                self._stop.wait(1.0)

    def poll_once(self) -> float:
        """Poll, invoke with what is ready; the seconds to wait before polling again."""
        raise NotImplementedError


class Received:
    """What a queue's pollers have received and not yet handed over, shared between them, and the recent
    processing time of each message group (decayed with a half-life of BUSY_HALF_LIFE_SECONDS)."""

    BUSY_HALF_LIFE_SECONDS = 60.0
    NOISY_SHARE = 0.1
    """SQS fair queues mark a tenant noisy past 10% of the consumers' recent processing time, and then
    deliver the quiet tenants' messages first whenever there are any (the SQS Developer Guide, "How
    Amazon SQS fair queues work"); its other measure (10% of the messages in flight, at least 30) is not
    emulated."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.pollers = 0
        self.clock = clock
        self.busy: dict[str, float] = {}
        self._busy_at = clock()

    def _decay(self) -> None:
        now = self.clock()
        factor = 0.5 ** ((now - self._busy_at) / self.BUSY_HALF_LIFE_SECONDS)
        decayed = {group: seconds * factor for group, seconds in self.busy.items()}
        self.busy = {group: seconds for group, seconds in decayed.items() if seconds > 0.001}
        self._busy_at = now

    def charge(self, groups: list[str], seconds: float) -> None:
        """An invocation of these messages' groups (one entry per message) took `seconds`."""
        with self.lock:
            self._decay()
            for group in groups:
                self.busy[group] = self.busy.get(group, 0.0) + seconds / len(groups)

    def noisy(self, group: str) -> bool:
        """Called with the lock held."""
        self._decay()
        total = sum(self.busy.values())
        return total > 0 and self.busy.get(group, 0.0) > self.NOISY_SHARE * total


def group_of(message: dict[str, Any]) -> str:
    """A received message's MessageGroupId; its own id if it has none (a group of its own, as SQS says)."""
    return str(message.get("Attributes", {}).get("MessageGroupId") or message["MessageId"])


class SqsPoller(Poller):
    WAIT_SECONDS = 1
    """The long poll's wait (ReceiveMessage returns as soon as a message arrives); kept short so the
    poller stops quickly."""
    IDLE_SECONDS = 0.0
    """An empty long poll has waited already: poll again at once, as Lambda does."""
    LOOKAHEAD = 40
    """Messages the queue's pollers hold, received, to choose a fair batch from (well within the
    visibility timeout: they are handed over as fast as the functions take them)."""
    _received: ClassVar[dict[str, Received]] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self, invoke: Invoke, queue_url: str, queue_arn: str, batch_size: int, endpoint: str
    ) -> None:
        super().__init__("sqs-poller")
        self._invoke, self._url, self._arn, self._batch_size = invoke, queue_url, queue_arn, batch_size
        self._sqs = boto3.client("sqs", endpoint_url=endpoint)
        with SqsPoller._registry_lock:
            self._shared = SqsPoller._received.setdefault(queue_url, Received())
            self._shared.pollers += 1

    def stop(self) -> None:
        """Stop; the queue's last poller makes what they held visible again (as an ended Lambda
        poller's messages are, once their visibility timeout ends)."""
        super().stop()
        with SqsPoller._registry_lock:
            self._shared.pollers -= 1
            if self._shared.pollers:
                return
            SqsPoller._received.pop(self._url, None)
        with self._shared.lock:
            for message in self._shared.messages:
                with contextlib.suppress(Exception):
                    self._sqs.change_message_visibility(
                        QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
            self._shared.messages.clear()

    def _take_fair_batch(self) -> list[dict[str, Any]]:
        """Receive until LOOKAHEAD messages are held (without waiting when some are), then take up to
        BatchSize of them, one from each MessageGroupId in turn (quiet groups first, then noisy ones,
        each in the order of their oldest message; messages without a group are a group each, as SQS
        treats them)."""
        with self._shared.lock:
            if self._stop.is_set():  # stopping: what is held stays for the queue's other pollers
                return []
            held = self._shared.messages
            while len(held) < self.LOOKAHEAD:
                got = self._sqs.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=0 if held else self.WAIT_SECONDS,
                    MessageSystemAttributeNames=["All"],
                ).get("Messages", [])
                held.extend(dict(message) for message in got)
                if len(got) < 10:
                    break
            found: dict[str, list[dict[str, Any]]] = {}
            for message in held:
                found.setdefault(group_of(message), []).append(message)
            groups = dict(sorted(found.items(), key=lambda entry: self._shared.noisy(entry[0])))
            batch: list[dict[str, Any]] = []
            while len(batch) < min(self._batch_size, 10) and any(groups.values()):
                for queued in groups.values():
                    if queued and len(batch) < min(self._batch_size, 10):
                        batch.append(queued.pop(0))
            taken = {id(message) for message in batch}
            held[:] = [message for message in held if id(message) not in taken]
            return batch

    def poll_once(self) -> float:
        messages = self._take_fair_batch()
        if not messages:
            return self.IDLE_SECONDS
        event = lambda_sqs_event(self._arn, messages)
        started = time.monotonic()
        try:
            response = self._invoke(event, str(uuid.uuid4()))
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        except Exception:  # the whole invocation failed: every message stays on the queue
            LOGGER.exception("the function the queue feeds failed")
            failed = {m["MessageId"] for m in messages}
        finally:
            self._shared.charge([group_of(m) for m in messages], time.monotonic() - started)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)],
            )
        return 0.0


class StreamPoller(Poller):
    def __init__(
        self,
        invoke: Invoke,
        table: str,
        settings: dict[str, Any],
        on_failure_url: str | None,
        endpoint: str | None,
        checkpoints: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`checkpoints` (shard -> the last sequence number done) outlive the poller, as Lambda's event
        source mapping keeps its position: a poller started with them resumes after them."""
        super().__init__("stream-poller")
        self.checkpoints = checkpoints if checkpoints is not None else {}
        self._invoke, self._settings, self._on_failure = invoke, settings, on_failure_url
        self._batch_size = int(settings.get("BatchSize", 100))
        self._window = float(settings.get("MaximumBatchingWindowInSeconds", 0))
        self._clock = clock
        self._gathering_since: dict[str, float] = {}
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint)
        self._sqs = boto3.client("sqs", endpoint_url=endpoint)
        self._arn = boto3.client("dynamodb", endpoint_url=endpoint).describe_table(TableName=table)["Table"][
            "LatestStreamArn"
        ]
        self._iterators: dict[str, str] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._attempts: dict[str, int] = {}
        start: Literal["TRIM_HORIZON", "LATEST"] = (
            "TRIM_HORIZON" if settings.get("StartingPosition") == "TRIM_HORIZON" else "LATEST"
        )
        for shard in self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]:
            done = self.checkpoints.get(shard["ShardId"])
            position: dict[str, Any] = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": done}
                if done
                else {"ShardIteratorType": start}
            )
            self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                StreamArn=self._arn, ShardId=shard["ShardId"], **position
            )["ShardIterator"]

    def poll_once(self) -> float:
        wait = self.IDLE_SECONDS
        for shard, iterator in list(self._iterators.items()):
            pending = self._pending.setdefault(shard, [])
            retrying = shard in self._attempts
            if len(pending) < self._batch_size and not retrying:  # gathering a batch
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                self._iterators[shard] = page["NextShardIterator"]
                pending.extend(lambda_stream_record(r, self._arn) for r in page.get("Records", []))
            if not pending:
                continue
            now = self._clock()
            window_left = self._gathering_since.setdefault(shard, now) + self._window - now
            if len(pending) >= self._batch_size or window_left <= 0 or retrying:
                self._deliver(shard, pending)
                wait = 0.0
                if pending:  # what is left starts the next batch
                    self._gathering_since[shard] = self._clock()
                else:
                    del self._gathering_since[shard]
            else:
                wait = min(wait, window_left)
        return wait

    def _deliver(self, shard: str, pending: list[dict[str, Any]]) -> None:
        batch = pending[: self._batch_size]
        try:
            response = self._invoke({"Records": batch}, str(uuid.uuid4()))
            failed = [f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])]
        except Exception:
            LOGGER.exception("EmitterFunction failed")
            failed = [batch[0]["dynamodb"]["SequenceNumber"]]
        if not failed:
            self._checkpoint(shard, pending, len(batch))
            self._attempts.pop(shard, None)
            return
        first = min(
            range(len(batch)), key=lambda i: 0 if batch[i]["dynamodb"]["SequenceNumber"] in failed else 1
        )
        self._checkpoint(shard, pending, first)  # what came before the first failure succeeded
        attempts = self._attempts.get(shard, 0) + 1
        if (
            attempts <= int(self._settings.get("MaximumRetryAttempts", -1))
            or self._settings.get("MaximumRetryAttempts", -1) == -1
        ):
            self._attempts[shard] = attempts
            return
        # Retries exhausted: Lambda sends the on-failure destination a pointer to the records, not them.
        failed_batch = pending[: len(batch) - first]
        if self._on_failure:
            self._sqs.send_message(
                QueueUrl=self._on_failure,
                MessageBody=json.dumps(
                    {
                        "requestContext": {
                            "condition": "RetryAttemptsExhausted",
                            "approximateInvokeCount": attempts,
                        },
                        "DDBStreamBatchInfo": {
                            "shardId": shard,
                            "streamArn": self._arn,
                            "batchSize": len(failed_batch),
                            "startSequenceNumber": failed_batch[0]["dynamodb"]["SequenceNumber"],
                            "endSequenceNumber": failed_batch[-1]["dynamodb"]["SequenceNumber"],
                        },
                    }
                ),
            )
        self._checkpoint(shard, pending, len(failed_batch))
        self._attempts.pop(shard, None)

    def _checkpoint(self, shard: str, pending: list[dict[str, Any]], count: int) -> None:
        """The first `count` pending records are done: the shard's position moves past them."""
        if count:
            self.checkpoints[shard] = pending[count - 1]["dynamodb"]["SequenceNumber"]
            del pending[:count]
