"""What an input is: its content hash, its kind, and where its outputs go.

Inputs are discovered from files and folders (recursively, hidden files and
symlinks out of a folder skipped), identified by content, and matched against
existing outputs so unchanged work is never redone.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from assetline.errors import BadInputError
from assetline.media import Kind, probe_kind
from assetline.provenance import SIDECAR_SUFFIX, verify_output
from assetline.storage import STAGING_DIR, sha256_file


@dataclass(frozen=True)
class Asset:
    path: Path
    sha256: str
    kind: Kind
    bytes: int

    @property
    def label(self) -> str:
        """How runs and tables name the asset: `chelsea.jpg · 3f2a1b9c`."""
        return f"{self.path.name} · {self.sha256[:8]}"

    @property
    def folder_name(self) -> str:
        return output_folder_name(self.path, self.sha256)


# A folder name is at most 255 bytes on common file systems; the staging folder adds 13.
_STEM_MAX_CHARS, _STEM_MAX_BYTES = 120, 200


def output_folder_name(path: Path, sha256: str) -> str:
    """`<input-stem>-<first 8 hex of sha256>`, the stem made safe as one folder name.

    Separators and control characters become `_`, leading dots go (never `..` or a
    hidden folder), and the stem is cut to 120 characters and 200 bytes of UTF-8
    (a long name in a non-Latin script would otherwise exceed the file system's limit).
    """
    stem = unicodedata.normalize("NFC", path.stem)
    stem = re.sub(r"[\x00-\x1f\x7f/\\]", "_", stem).lstrip(".").strip() or "asset"
    stem = stem[:_STEM_MAX_CHARS].encode("utf-8")[:_STEM_MAX_BYTES].decode("utf-8", "ignore").strip() or "asset"
    return f"{stem}-{sha256[:8]}"


def identify(path: Path) -> Asset:
    """Hash and probe one file. Raises `BadInputError` naming the file and the cause.

    The path is made absolute first: ffmpeg and PyAV read a bare name such as
    `concat:a.wav|b.wav` or `pipe:0` as a protocol, not as the file of that name.
    """
    path = path.absolute()
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise BadInputError(path, "not a regular file")
        digest = sha256_file(path) if size else ""
    except PermissionError:
        raise BadInputError(path, "cannot read file: permission denied") from None
    except FileNotFoundError:
        raise BadInputError(path, "no such file") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot read file: {exc.strerror}") from None
    kind = probe_kind(path)  # raises for empty and unrecognised files
    return Asset(path=path, sha256=digest, kind=kind, bytes=size)


def is_up_to_date(asset: Asset, out_root: Path, outputs: list[str], recipe_sha256: str) -> bool:
    """True when every expected output exists, verifies, and came from this input and recipe."""
    if not outputs:
        return False
    folder = out_root / asset.folder_name
    for name in outputs:
        verdict = verify_output(folder / name)
        m = verdict.manifest
        if not verdict.ok or m is None or m.recipe_sha256 != recipe_sha256:
            return False
        if not any(ref.role == "source" and ref.sha256 == asset.sha256 for ref in m.inputs):
            return False
    return True


def discover(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> tuple[list[Path], list[BadInputError]]:
    """Files named, and files found in folders named (recursively), in a stable order.

    Inside a folder, hidden entries, assetline's own output trees (`exclude`)
    and symlinks that lead outside the folder are skipped; a symlink skipped
    that way is reported, not followed.
    """
    excluded = [p.resolve() for p in exclude]
    found: list[Path] = []
    problems: list[BadInputError] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(p)

    for given in paths:
        if not given.exists() and not given.is_symlink():
            problems.append(BadInputError(given, "no such file or folder"))
            continue
        if not given.is_dir():
            add(given)
            continue
        root = given.resolve()
        for dirpath, dirnames, filenames in os.walk(given, followlinks=False):
            current = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                full = current / d
                if d.startswith(".") or d == STAGING_DIR or full.resolve() in excluded:
                    continue
                if full.is_symlink():
                    problems.append(BadInputError(full, "symlink to a folder: not followed"))
                    continue
                keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                full = current / name
                if name.startswith(".") or name.endswith((SIDECAR_SUFFIX, ".c2pa")):  # provenance, not media
                    continue
                if full.is_symlink():
                    target = full.resolve()
                    if not target.is_relative_to(root):
                        problems.append(BadInputError(full, f"symlink points outside {given}: not followed"))
                        continue
                add(full)
    return found, problems
