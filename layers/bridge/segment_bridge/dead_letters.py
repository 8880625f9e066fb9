"""Dead letters swept into the bucket: what is parked is kept until someone acts (docs/operate.md).

Both dead-letter queues keep a message 14 days. The sweep (PurgeFunction, every hour, and `segment-bridge
dlq redrive`) moves each message into the archive bucket's parked/<queue>/, where `dlq list` and
`dlq redrive` read it and nothing expires unless the operator sets ParkedRetentionDays:

- IngestDLQ: every message (a queue message the processor gave up on) -> parked/ingest/.
- EmitterDLQ: Lambda's on-failure records of stream batches -> parked/emitter/; a parked event's signal
  is taken off the queue (the event itself was written to parked/emitter/ before it was signalled).

Each message is written to the bucket first and deleted from its queue only after: a sweep that crashes
leaves the message on its queue (visible again after TAKE_SECONDS) and the next one writes it to the same
key again (sqs-<MessageId>), so re-running never loses or duplicates a message. A sweep stops after
`limit` messages or once `out_of_time` says so; the next one goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

Queue = Literal["ingest", "emitter"]
SWEEP_LIMIT = 10_000
"""The most messages one sweep takes off a queue (10 per receive); the time check usually stops it first."""


class Letter(Protocol):
    """A dead-letter queue's message (store.queues.DeadLetter)."""

    @property
    def body(self) -> str: ...


L = TypeVar("L", bound=Letter)
L_contra = TypeVar("L_contra", bound=Letter, contravariant=True)


class DeadLetterQueues(Protocol[L]):
    """store.queues: a dead-letter queue's messages, taken (hidden) and then deleted or released."""

    def take_dead_letters(self, queue_url: str, count: int = 10) -> list[L]: ...
    def delete_dead_letters(self, queue_url: str, letters: list[L]) -> None: ...
    def release_dead_letters(self, queue_url: str, letters: list[L]) -> None: ...


class ParkedLetters(Protocol[L_contra]):
    """store.parked: a dead letter's durable copy (the same letter always to the same key)."""

    def keep_dead_letter(self, queue: Queue, letter: L_contra) -> str: ...
    def count(self, queue: Queue) -> int: ...


@dataclass
class Swept:
    """What one sweep of a queue did (counts only)."""

    kept: int = 0
    """Messages copied into parked/ and taken off the queue."""
    signals: int = 0
    """Parked events' signals taken off the EmitterDLQ (their event is in parked/ already)."""
    finished: bool = True
    """False when the limit or the time ran out with messages maybe left (the next sweep goes on)."""

    def figures(self) -> dict[str, int]:
        return {"kept": self.kept, "signals": self.signals, "finished": int(self.finished)}


def is_signal(body: str) -> bool:
    """A parked event's EmitterDLQ message, {"parked": <key>, ...} (the event itself is in the bucket)."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("parked"), str)


def sweep_dead_letters(
    queue: Queue,
    queue_url: str,
    queues: DeadLetterQueues[L],
    parked: ParkedLetters[L],
    *,
    limit: int = SWEEP_LIMIT,
    out_of_time: Callable[[], bool] = lambda: False,
) -> Swept:
    """Move up to `limit` messages of a dead-letter queue into parked/<queue>/ (the module's docstring).
    A message is deleted from its queue only once it is in the bucket; if writing one fails, the ones
    written are deleted, the others released (visible again at once), and the error raised."""
    swept = Swept()
    seen = 0
    while seen < limit:
        if out_of_time():
            swept.finished = False
            break
        letters = queues.take_dead_letters(queue_url, min(10, limit - seen))
        if not letters:
            return swept
        seen += len(letters)
        done: list[L] = []
        try:
            for letter in letters:
                if is_signal(letter.body):
                    swept.signals += 1
                else:
                    parked.keep_dead_letter(queue, letter)
                    swept.kept += 1
                done.append(letter)
        finally:
            queues.delete_dead_letters(queue_url, done)
            queues.release_dead_letters(queue_url, [letter for letter in letters if letter not in done])
    else:
        swept.finished = False
    return swept


def sweep_both(
    dlq_urls: dict[Queue, str],
    queues: DeadLetterQueues[L],
    parked: ParkedLetters[L],
    out_of_time: Callable[[], bool],
) -> dict[str, int]:
    """Sweep each dead-letter queue (`dlq_urls`), then count what is parked for it (what waits for an
    operator): `<queue>_dead_letters_<kept|signals|finished>` and `<queue>_parked`."""
    figures: dict[str, int] = {}
    for queue, url in dlq_urls.items():
        swept = sweep_dead_letters(queue, url, queues, parked, out_of_time=out_of_time)
        figures |= {f"{queue}_dead_letters_{name}": value for name, value in swept.figures().items()}
        figures[f"{queue}_parked"] = parked.count(queue)
    return figures
