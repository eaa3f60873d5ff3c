"""The inbox: what counts as arrived, and the watcher's announcements (real watchdog observers, real files)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from assetline.config import InboxOptions
from assetline.recipes import load_recipe
from assetline.errors import BadInputError, RecipeError
from assetline.inbox import InboxWatcher, confine, is_ignored, open_for_writing

BOUND_S = 60  # against hangs only


class Heard:
    def __init__(self):
        self.items: list[tuple[Path, str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, path: Path, sha: str, size: int) -> None:
        with self.lock:
            self.items.append((path, sha, size))

    def names(self) -> list[str]:
        with self.lock:
            return sorted(p.name for p, _, _ in self.items)

    def wait_for(self, count: int) -> list[str]:
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline and len(self.items) < count:
            time.sleep(0.05)
        return self.names()


@pytest.fixture(params=["native", "polling"])
def watched(request, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    heard = Heard()
    options = InboxOptions(observer=request.param, hold_seconds=0.4, poll_seconds=0.1)
    watcher = InboxWatcher(inbox, options, announce=heard, exclude=[inbox / "out"])
    watcher.start()
    yield inbox, heard, watcher
    watcher.stop()


def test_a_complete_file_is_announced_once_with_its_hash(watched):
    inbox, heard, _ = watched
    (inbox / "clip.wav").write_bytes(b"RIFF" + os.urandom(4000))
    assert heard.wait_for(1) == ["clip.wav"]
    path, sha, size = heard.items[0]
    import hashlib

    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() and size == 4004
    time.sleep(1.0)
    assert len(heard.items) == 1  # later modified/closed events of the same write add nothing


def test_partial_and_hidden_files_are_ignored_and_a_rename_into_place_counts(watched):
    inbox, heard, _ = watched
    for name in ("upload.mov.part", "x.tmp", "a.crdownload", "~$notes.docx", ".DS_Store"):
        (inbox / name).write_bytes(os.urandom(100))
    (inbox / ".hidden").mkdir()
    (inbox / ".hidden" / "inside.jpg").write_bytes(os.urandom(100))
    (inbox / "upload.mov.part").rename(inbox / "upload.mov")
    assert heard.wait_for(1) == ["upload.mov"]
    time.sleep(1.0)
    assert heard.names() == ["upload.mov"]


def test_a_file_still_growing_is_held_until_it_stops(watched):
    inbox, heard, _ = watched
    target = inbox / "growing.mxf"
    with open(target, "wb") as fh:
        for _ in range(8):  # 1.6 s of writing, with pauses shorter than the hold
            fh.write(os.urandom(1000))
            fh.flush()
            time.sleep(0.2)
        assert heard.names() == []  # not while it grows (and not while open for writing)
    assert heard.wait_for(1) == ["growing.mxf"]
    assert heard.items[0][2] == 8000  # announced whole


def test_an_open_writer_holds_a_file_even_when_its_size_is_stable(watched):
    inbox, heard, _ = watched
    target = inbox / "slow.wav"
    fh = open(target, "wb")
    try:
        fh.write(os.urandom(500))
        fh.flush()
        time.sleep(1.5)  # well past the hold, but the writer still has it open
        assert open_for_writing(target)
        assert heard.names() == []
    finally:
        fh.close()
    assert not open_for_writing(target)
    assert heard.wait_for(1) == ["slow.wav"]


def test_the_same_content_twice_is_announced_once(watched):
    inbox, heard, _ = watched
    data = os.urandom(2000)
    (inbox / "a.jpg").write_bytes(data)
    assert heard.wait_for(1) == ["a.jpg"]
    (inbox / "copy of a.jpg").write_bytes(data)
    (inbox / "b.jpg").write_bytes(os.urandom(2000))
    assert heard.wait_for(2) == ["a.jpg", "b.jpg"]
    time.sleep(1.0)
    assert len(heard.items) == 2


def test_subfolders_count_and_the_excluded_output_root_does_not(watched):
    inbox, heard, _ = watched
    (inbox / "out").mkdir()
    (inbox / "out" / "result.png").write_bytes(os.urandom(300))
    (inbox / "day1").mkdir()
    (inbox / "day1" / "take1.wav").write_bytes(os.urandom(300))
    assert heard.wait_for(1) == ["take1.wav"]
    time.sleep(1.0)
    assert heard.names() == ["take1.wav"]


def test_confine_keeps_event_paths_inside_the_inbox(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "ok.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("s")
    (inbox / "link.jpg").symlink_to(tmp_path / "secret.txt")
    (inbox / "sub" / "escape").symlink_to(tmp_path)
    assert confine("ok.jpg", inbox) == (inbox / "ok.jpg").resolve()
    assert confine(str(inbox / "ok.jpg"), inbox) == (inbox / "ok.jpg").resolve()
    assert confine("sub/../ok.jpg", inbox) == (inbox / "ok.jpg").resolve()
    for hostile, why in [
        ("/etc/passwd", "outside the inbox"),
        ("../secret.txt", "outside the inbox"),
        ("sub/../../secret.txt", "outside the inbox"),
        ("link.jpg", "through a symlink"),
        ("sub/escape/secret.txt", "through a symlink"),
        ("", "not a usable path"),
        ("a\x00b", "not a usable path"),
    ]:
        with pytest.raises(BadInputError, match=why):
            confine(hostile, inbox)


def test_ignore_patterns_and_hidden_folders(tmp_path):
    patterns = InboxOptions().ignore
    assert is_ignored(tmp_path / "a.part", tmp_path, patterns)
    assert is_ignored(tmp_path / ".git" / "x.jpg", tmp_path, patterns)
    assert is_ignored(tmp_path / ".assetline-staging" / "x.png", tmp_path, patterns)
    assert not is_ignored(tmp_path / "day 1" / "take.wav", tmp_path, patterns)
    assert is_ignored(Path("/elsewhere/x.jpg"), tmp_path, patterns)


@pytest.mark.parametrize("setting, message", [
    ("inbox.hold_seconds=-1", "inbox.hold_seconds"),
    ("inbox.observer=fanotify", "inbox.observer"),
    ("inbox.batch_cron=every night", "not a cron expression"),
    ("inbox.timezone=Mars/Olympus", "unknown time zone"),
    ("run.retries.attempts=99", "run.retries.attempts"),
    ("run.limits.transcribe=-1", "run.limits.transcribe"),
])  # fmt: skip
def test_inbox_and_run_settings_are_validated(setting, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(None, [setting])
