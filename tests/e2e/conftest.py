"""What the end-to-end tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 30


def eventually(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """`check()`'s first truthy value, polling until `timeout`; the pipeline is asynchronous."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("the pipeline did not get there in time")
