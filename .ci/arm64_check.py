"""Run by .ci/arm64 under an aarch64 CPython 3.13: the built layer and handlers import and work.

argv: the sam build folder, the folder holding the boto3 Lambda provides. Any ImportError (a compiled
wheel of the wrong architecture or ABI, a module missing from the layer) fails the run with its traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

BUILD, BOTO3 = Path(sys.argv[1]), Path(sys.argv[2])
# Every function and the environment the template gives it, as `make events` writes them for `sam local
# invoke` (env.json); the names only need to be well formed (nothing here calls AWS).
ENV_JSON = Path(__file__).resolve().parent.parent / "env.json"
FUNCTIONS: dict[str, dict[str, str]] = {
    name: {key: value for key, value in variables.items() if key != "AWS_ENDPOINT_URL"}
    for name, variables in json.loads(ENV_JSON.read_text(encoding="utf-8")).items()
}
HANDLERS = tuple(FUNCTIONS)


class CheckFailed(AssertionError):
    """The artifact does not work as Lambda would run it."""


def require(condition: object, failure: str) -> None:
    if not condition:
        raise CheckFailed(failure)


def check(label: str, started: float) -> None:
    print(f"arm64: ok  {label} ({time.perf_counter() - started:.2f} s)", flush=True)


def main() -> None:
    require(platform.machine() == "aarch64", f"running on {platform.machine()}, not aarch64")
    require(sys.version_info[:2] == (3, 13), f"CPython {platform.python_version()}, not 3.13")
    print(f"arm64: CPython {platform.python_version()} on {platform.machine()}", flush=True)
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    sys.path[:0] = [str(BUILD / "BridgeLayer" / "python"), str(BOTO3)]  # /opt/python, the runtime's boto3

    started = time.perf_counter()
    import orjson
    import pydantic_core

    for module in (pydantic_core._pydantic_core, orjson.orjson):
        loaded = Path(str(module.__file__)).name
        require("aarch64" in loaded, f"{module.__name__} loaded from {loaded}")
    check("compiled wheels load: pydantic-core, orjson", started)

    for logical_id in HANDLERS:
        started = time.perf_counter()
        os.environ.update(FUNCTIONS[logical_id])
        source = BUILD / logical_id / "app.py"
        spec = importlib.util.spec_from_file_location(f"{logical_id}.app", source)
        if spec is None or spec.loader is None:
            raise CheckFailed(f"no handler at {source}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        require(callable(getattr(module, "lambda_handler", None)), f"{source} has no lambda_handler")
        check(f"{logical_id} imports (app.lambda_handler)", started)

    started = time.perf_counter()
    from segment_bridge.ingest.spec import InvalidEvent, validate_event

    identify = {"type": "identify", "userId": "user-42", "traits": {"email": "ada@example.com"}}
    track = {"type": "track", "userId": 42, "event": "Signed Up", "timestamp": "2026-01-01T00:00:00Z"}
    require(validate_event(identify).userId == "user-42", "a valid identify call was not read as sent")
    require(validate_event(track).userId == "42", "a numeric userId was not read as a string")
    try:
        validate_event({"type": "track", "userId": "user-42"})
    except InvalidEvent as error:
        require("event" in error.reason, f"a track call without a name refused for {error.reason!r}")
    else:
        raise CheckFailed("a track call without an event name was accepted")
    check("Spec validation (segment_bridge.ingest.spec)", started)

    started = time.perf_counter()
    from segment_bridge.envelope import pack, unpack
    from segment_bridge.ingest.intake import serialise

    events = [
        {**identify, "messageId": "m-1", "timestamp": "2026-01-01T00:00:00.000Z"},
        {**track, "userId": "user-42", "messageId": "m-2", "timestamp": "2026-01-01T00:00:01.000Z"},
    ]
    events = [{**event, "receivedAt": "2026-01-01T00:00:02.000Z"} for event in events]
    [body] = pack(
        [serialise(event) for event in events],  # orjson
        workspace_id="ws_demo",
        request_id="req-1",
        received_at="2026-01-01T00:00:02.000Z",
        max_bytes=262_144,
    )
    envelope, unpacked = unpack(body)
    require((envelope.workspaceId, envelope.count, unpacked) == ("ws_demo", 2, events), "pack/unpack differ")
    check("envelope pack/unpack (segment_bridge.envelope, intake.serialise)", started)

    started = time.perf_counter()
    from segment_bridge.mapping import Mapping
    from segment_bridge.planning import plan

    mapping = Mapping.model_validate({"event_prefix": "segment : ", "channels": {"email": "email"}})
    result = plan(unpacked, mapping)
    profile = result.entities["U#user-42"]
    require(
        mapping.channel_values(identify["traits"]) == {"email": ["ada@example.com"]}, "channels not mapped"
    )
    names = [c.history.name for c in profile.contributions if c.history]
    require(names == ["segment : Signed Up"], f"history named {names}")
    try:
        Mapping.model_validate({"channels": {"pigeon": "email"}})
    except ValueError:
        pass
    else:
        raise CheckFailed("a mapping with an unknown channel was accepted")
    check("mapping (segment_bridge.mapping, profiles.plan)", started)
    print("arm64: the built artifact imports and works on aarch64 CPython 3.13", flush=True)


if __name__ == "__main__":
    main()
