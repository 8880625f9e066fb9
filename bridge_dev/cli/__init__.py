"""segment-bridge: the operator's command line, for the local stack or a deployed stack.

    segment-bridge workspaces create "Acme"              # the local stack (make dev) by default
    segment-bridge --stack segment-bridge-prod users show ws_... user-42 --json

Every command takes --json (one JSON document on stdout; `tail --json`: one object a line). Errors go to
stderr, as {"code", "message"} with --json: never a traceback (app.main maps every exception, in one
place). Exit status: 0 done, 1 refused or failed (the message says why), 2 wrong usage (code "usage").

One module per command group, each command's logic beside it; app.py holds the root group and main.
"""

from bridge_dev.cli import (  # noqa: F401 - each module registers its commands on the root group
    archive,
    dead_letters,
    deletions,
    functions,
    mapping,
    outbox,
    profiles,
    rules,
    stats,
    workspaces,
)
from bridge_dev.cli.app import cli, main

__all__ = ["cli", "main"]
