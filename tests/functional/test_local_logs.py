"""The local stack runs every function in one process, as Lambda never does: a log line must still carry
the function and the request id of the invocation that logged it (bridge_dev.runtime.keys_per_thread)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from bridge_dev.events import DEMO_API_KEY, http_event
from tests.conftest import lambda_function
from tests.functional.conftest import sample
from tests.functional.helpers import before_call


class Lines(logging.Handler):
    """Each record of the functions' logger as its own handler writes it, formatted in the thread that
    logged it (as the local stack prints it)."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_each_functions_log_lines_carry_its_own_name_and_request_id(aws, workspaces):
    """While the IngestFunction handles a request (between its context's keys and its log line), the
    ProcessorFunction runs a whole invocation on another thread, as the local stack's poller does."""
    ingest, processor = lambda_function("IngestFunction"), lambda_function("ProcessorFunction")
    functions_logger = logging.getLogger("segment-bridge")
    lines = Lines(functions_logger.handlers[0].formatter)
    functions_logger.addHandler(lines)
    batch = sample("processor_sqs_batch.json")  # an SQS event of two messages
    ran: list[Any] = []

    def processor_meanwhile(operation: str, body: dict[str, Any]) -> None:
        if not ran:
            ran.append("processor")
            other = threading.Thread(target=lambda: ran.append(processor.invoke(batch, "req-processor")))
            other.start()
            other.join()

    delivery = http_event(
        "/v1/segment",
        json.dumps([{"type": "track", "userId": "user-9", "event": "Signed Up"}]),
        headers={"authorization": f"Bearer {DEMO_API_KEY}"},
    )
    try:
        with before_call(workspaces, ("GetItem",), processor_meanwhile):  # ingest's key lookup
            answer = ingest.invoke(delivery, "req-ingest")
    finally:
        functions_logger.removeHandler(lines)

    assert answer["statusCode"] == 200
    assert ran[-1] == {"batchItemFailures": []}
    by_message = {line["message"]: line for line in lines.lines}
    assert {"delivery queued", "message applied"} <= set(by_message)
    queued, applied = by_message["delivery queued"], by_message["message applied"]
    assert (queued["function_name"], queued["function_request_id"]) == ("IngestFunction", "req-ingest")
    assert (applied["function_name"], applied["function_request_id"]) == (
        "ProcessorFunction",
        "req-processor",
    )
