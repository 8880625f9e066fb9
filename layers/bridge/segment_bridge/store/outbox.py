"""The outbox table (what the product writes to be sent to Segment) and its stream.

OutboxTable items: see outbound.py (the outbox contract).
"""

from __future__ import annotations

from typing import Any

from segment_bridge.errors import Conflict, NotFound
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors, item


class Outbox:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.table = settings.outbox_table
        self.clients = clients

    def publish(self, values: dict[str, Any]) -> None:
        """Write an outbox item, as the product does. An item with the same keys is left as it was (an
        outbox item is sent once, when it is first written)."""
        taken = Conflict(f"The outbox already holds {values['pk']} / {values['sk']}.")
        with aws_errors(
            "The outbox item could not be written.", refused={"ConditionalCheckFailedException": taken}
        ):
            self.clients.dynamodb.put_item(
                TableName=self.table, Item=item(values), ConditionExpression="attribute_not_exists(pk)"
            )

    def stream_records(self, stream_arn: str, shard_id: str, first: str, last: str) -> list[dict[str, Any]]:
        """A stream's records from sequence number `first` to `last` of one shard (what a stream's
        on-failure record points at); fewer, or none, once the stream no longer keeps them (24 h)."""
        records: list[dict[str, Any]] = []
        streams = self.clients.streams
        trimmed = NotFound("The stream no longer holds those records.")
        gone = {"TrimmedDataAccessException": trimmed, "ResourceNotFoundException": trimmed}
        try:
            with aws_errors("The outbox stream cannot be read right now.", refused=gone):
                iterator: str | None = streams.get_shard_iterator(
                    StreamArn=stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType="AT_SEQUENCE_NUMBER",
                    SequenceNumber=first,
                )["ShardIterator"]
                while iterator:
                    page = streams.get_records(ShardIterator=iterator, Limit=1000)
                    batch = page.get("Records", [])
                    for record in batch:
                        if int(record["dynamodb"]["SequenceNumber"]) > int(last):
                            return records
                        records.append(dict(record))
                    if not batch:
                        break
                    iterator = page.get("NextShardIterator")
        except NotFound:
            pass  # trimmed (24 h) or the stream is gone: what was read is all there is
        return records
