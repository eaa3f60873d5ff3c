"""Shared test helpers: real media, the CLI as a user runs it, processes and servers. Tests import from here."""

from helpers.cli import run_cli, tree_state
from helpers.footage import clip
from helpers.media import REPO, SPEECH, iou, make_clip, photo
from helpers.processes import (
    api_healthy,
    can_drop_dac_capabilities,
    drop_dac_capabilities,
    free_port,
    processes_with_env,
    stop_group,
    wait_until,
)
from helpers.serve import Serve

__all__ = ["REPO", "SPEECH", "Serve", "clip", "api_healthy", "can_drop_dac_capabilities", "drop_dac_capabilities", "free_port",
           "iou", "make_clip", "photo", "processes_with_env", "run_cli", "stop_group", "tree_state", "wait_until"]
