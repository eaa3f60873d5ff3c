"""Progress of a long step (transcription, learned video upscaling) as a Prefect progress artifact.

Steps call `step_progress(name)` and `.update(fraction)` as they go; inside a
Prefect task run that creates one progress artifact on the run and updates it
at most every `MIN_INTERVAL_S` (and on completion), so the UI shows how far a
long step is without flooding the API. Outside a run it does nothing, so the
steps stay plain functions.
"""

from __future__ import annotations

import logging
import time

MIN_INTERVAL_S = 2.0
log = logging.getLogger(__name__)


class StepProgress:
    def __init__(self, step: str) -> None:
        self.step = step
        self._artifact_id = None
        self._last_sent = 0.0
        self._last_value = -1.0
        self._active = _in_task_run()

    def update(self, fraction: float, force: bool = False) -> None:
        """Report `fraction` (0..1) done; cheap to call for every frame or segment."""
        if not self._active:
            return
        percent = round(max(0.0, min(1.0, fraction)) * 100, 1)
        now = time.monotonic()
        if percent == self._last_value or (not force and now - self._last_sent < MIN_INTERVAL_S and percent < 100):
            return
        self._last_sent, self._last_value = now, percent
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if self._artifact_id is None:
                self._artifact_id = create_progress_artifact(percent, description=f"{self.step}: progress")
            else:
                update_progress_artifact(self._artifact_id, percent)
        except Exception as exc:  # progress is a courtesy: never fail a step over it
            log.debug("progress artifact for %s not updated: %s", self.step, exc)
            self._active = False

    def done(self) -> None:
        self.update(1.0, force=True)


def _in_task_run() -> bool:
    try:
        from prefect.context import TaskRunContext

        return TaskRunContext.get() is not None
    except Exception:
        return False


def step_progress(step: str) -> StepProgress:
    return StepProgress(step)
