"""The task kinds and job kinds the JobsFunction runs (engine.run_task's registries)."""

from __future__ import annotations

from collections.abc import Mapping

from segment_bridge.jobs import offboard, purge, regulations, replay
from segment_bridge.jobs.engine import Finish, Kind

KINDS: Mapping[str, Kind] = {
    "purge-days": purge.purge_days,
    "purge-page": purge.purge_page,
    "purge-parked": purge.purge_parked_task,
    "replay-days": replay.replay_days,
    "replay-page": replay.replay_page,
    "offboard-scan": offboard.offboard_scan,
    "offboard-outbox": offboard.offboard_outbox,
    "offboard-receipts": offboard.offboard_receipts,
    "offboard-prefix": offboard.offboard_prefix,
    "offboard-parked": offboard.offboard_parked,
    "offboard-secret": offboard.offboard_secret,
    "regulations-poll": regulations.regulations_poll,
}
FINISHERS: Mapping[str, Finish] = {
    "purge": purge.finish_purge,
    "replay": replay.finish_replay,
    "offboard": offboard.finish_offboard,
    "regulations": regulations.finish_regulations,
}
