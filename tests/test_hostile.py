"""Hostile input: file names, transcripts, recipes and folders that try to break out.

- File and folder names with `:`, `'`, `,`, `[`, `]`, `;`, `\\`, `%`, spaces and
  non-ASCII letters go through footage with burn-in (a filter graph holding the
  paths) and through audio, into an output root with such a name too.
- A bare file name that ffmpeg would read as a protocol (`concat:...`) is the file of that name.
- ASS override codes in a transcript (`{\\an8}`, `{\\pos(0,0)}`, drawing mode) are drawn as text.
- Recipes: wrong types, out-of-range values, unknown keys, YAML tricks: one line, exit 2,
  nothing runs; no recipe value names a program or a path.
- Folders: symlinks out of a folder given to `run` are reported, never followed.
"""

from __future__ import annotations

import json
import os
import shutil
import typing
from pathlib import Path

import av
import numpy as np
import pysubs2
import pytest
from PIL import Image
from pydantic import BaseModel

from assetline.assets import discover, identify, output_folder_name
from assetline.config import EncodeOptions, PackageOptions, Recipe
from assetline.recipes import load_recipe
from assetline.errors import BadInputError, RecipeError
from assetline.tasks.package import BURNED_NAME, package
from assetline.tasks.subtitles import SRT_NAME, subtitles
from helpers import REPO, make_clip, photo, run_cli, tree_state

SPEECH = REPO / "tests" / "data" / "arctic_a0007.wav"
HOSTILE = "take 1: it's [final], 100%d; c\\edit – café 日本"
CLI_ENV = {"COLUMNS": "200", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}


# --------------------------------------------------------------------------- names through ffmpeg


def _luma_at(path: Path, seconds: float) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time >= seconds:
                return frame.to_ndarray(format="gray").astype(int)
    raise AssertionError(f"{path.name} has no frame at {seconds} s")


def test_hostile_names_go_through_footage_with_burn_in_and_audio(tmp_path: Path, prefect_api: str) -> None:
    inp = tmp_path / f"in: 'a' [b], 1%; {chr(92)}x"
    inp.mkdir()
    clip = make_clip(inp / f"{HOSTILE}.mp4", seconds=4.2)
    speech = inp / "voice: 'hi' [2], 5% \\ ü.wav"
    shutil.copy(SPEECH, speech)
    long_name = inp / ("写真" * 41 + ".png")  # 246 bytes of UTF-8: its output folder must still fit a name
    photo("coffee", (48, 48)).save(long_name)
    out = tmp_path / "out: [z], 'q' 9%, \\o"
    before = tree_state(inp)
    result = run_cli("run", str(inp), "--out", str(out), "--set", "video.package.burn_in=true",
                     "--set", "video.encode.preset=ultrafast", "--set", "image.upscale.method=lanczos",
                     api_url=prefect_api, env=CLI_ENV)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 done, 0 up to date, 0 failed" in result.stdout

    footage = out / output_folder_name(clip, identify(clip).sha256)
    for name in ("video.mp4", BURNED_NAME, "transcript.json", "subtitles.srt", "subtitles.vtt"):
        assert (footage / name).is_file() and (footage / f"{name}.provenance.json").is_file(), name
    cues = pysubs2.load(str(footage / SRT_NAME))
    assert "superlative" in " ".join(c.plaintext for c in cues).lower()
    # The burn-in filter found the subtitles through the escaped path: text is drawn where the cue is.
    during = (cues[0].start + cues[0].end) / 2000
    diff = np.abs(_luma_at(footage / BURNED_NAME, during) - _luma_at(footage / "video.mp4", during))
    height = diff.shape[0]
    assert (diff[2 * height // 3 :] > 80).sum() > 100  # white text with an outline, bottom third
    assert (diff[: height // 3] > 80).sum() < 20  # nothing drawn in the top third
    audio = out / output_folder_name(speech, identify(speech).sha256)
    assert "superlative" in (audio / SRT_NAME).read_text(encoding="utf-8").lower()
    (still,) = [p for p in out.iterdir() if p.name.startswith("写真")]
    assert len(still.name.encode()) <= 255 - 13 and (still / "upscaled.png").is_file()

    assert run_cli("verify", str(out), api_url=None).returncode == 0
    assert tree_state(inp) == before


def test_a_bare_name_that_reads_as_an_ffmpeg_protocol_is_only_that_file(tmp_path, monkeypatch):
    """`concat:speech.wav` is a text file; ffmpeg given the bare name would read speech.wav instead."""
    shutil.copy(SPEECH, tmp_path / "speech.wav")
    (tmp_path / "concat:speech.wav").write_text("just notes, not audio\n")
    shutil.copy(SPEECH, tmp_path / "pipe:0")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match="not a recognised image, video or audio file"):
        identify(Path("concat:speech.wav"))
    asset = identify(Path("pipe:0"))  # read as the file called pipe:0, not from standard input
    assert asset.kind == "audio" and asset.path == tmp_path / "pipe:0"


# --------------------------------------------------------------------------- override codes


@pytest.mark.unchecked_subtitles  # 70 characters in a second, on purpose; the task alone writes no sidecar to count it in
def test_override_codes_in_a_transcript_are_drawn_as_plain_text(tmp_path: Path) -> None:
    """{\\an8}, {\\pos}, a drawing ({\\p1}) and a karaoke code in the words: all shown as text, at the bottom."""
    words = [(r" {\an8}{\pos(0,0)}Top", 0.3, 0.6), (r" left{\fs200}", 0.6, 0.9),
             (r" {\p1}m 0 0 l 320 0 320 180 0 180{\p0}", 0.9, 1.4), (r" {\k50}sung\N\hover", 1.4, 1.8)]  # fmt: skip
    transcript = tmp_path / "transcript.json"
    transcript.write_text(json.dumps({
        "schema": "assetline/transcript@1", "language": "en", "duration": 3.0,
        "model": {"name": "whisper-tiny.en", "sha256": "0" * 64}, "options": {},
        "segments": [{"start": 0.3, "end": 1.8, "text": "", "words": [
            {"start": s, "end": e, "word": w, "probability": 1.0} for w, s, e in words]}],
    }), encoding="utf-8")  # fmt: skip
    subtitles.fn(transcript, tmp_path)
    srt = tmp_path / SRT_NAME
    text = srt.read_text(encoding="utf-8")
    assert not any(ch in text for ch in "{}\\"), text
    picture = tmp_path / "picture.mp4"
    from assetline.ffmpeg import run_ffmpeg

    run_ffmpeg(["-f", "lavfi", "-i", "color=c=black:size=320x180:rate=25:duration=3", "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(picture)], picture)  # fmt: skip
    package.fn(picture, tmp_path, None, srt, PackageOptions(burn_in=True), EncodeOptions(preset="ultrafast"))
    cue = pysubs2.load(str(srt))[0]
    luma = _luma_at(tmp_path / BURNED_NAME, (cue.start + cue.end) / 2000)
    bright = luma > 128
    rows = np.nonzero(bright.any(axis=1))[0]
    assert rows.size and rows.min() > luma.shape[0] // 2  # not moved to the top by {\an8} or {\pos}
    assert 100 < bright.sum() < 0.15 * bright.size  # text, not a filled drawing nor a 200-point font


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    "setting, message",
    [
        ("run.concurrency=true", "run.concurrency: Input should be a valid integer"),
        ("image.upscale.tile=300.0", "image.upscale.tile: Input should be a valid integer"),
        ("image.upscale.scale='4'", "image.upscale.scale: Input should be 2, 3 or 4"),
        ("image.upscale.tile=99999", "image.upscale.tile: Input should be less than or equal to 2048"),
        ("audio.subtitles.max_duration=.nan", "audio.subtitles.max_duration: Input should be a finite number"),
        ("video.upscale.target_height=.inf", "video.upscale.target_height"),
        ("audio.loudness.integrated_lufs=-1000", "audio.loudness.integrated_lufs"),
        ("video.encode.preset=slowest; rm -rf /", "video.encode.preset"),
        ("audio.transcribe.compute_type=$(reboot)", "unknown compute type"),
        ("audio.transcribe.language=../../etc/passwd", "audio.transcribe.language"),
        ("audio.transcribe.model=/usr/bin/python3", "unknown model '/usr/bin/python3'"),
        ("image.upscale.model=../../../bin/sh", "unknown model"),
        ("image.remove_background.background=url(http://x)", "must be a colour"),
        ("video.package.subtitle_language=en;x", "video.package.subtitle_language"),
        ("image.upscale.shell=/bin/sh", "image.upscale.shell: unknown key"),
        ("image.upscale=4", "image.upscale: Input should be a valid dictionary"),
    ],
)
def test_bad_recipe_values_are_refused_naming_the_key(setting, message):
    with pytest.raises(RecipeError) as exc:
        load_recipe(None, [setting])
    assert message in exc.value.line()
    assert "\n" not in exc.value.line()


def _string_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted names of every field that can hold a string, found through the recipe schema itself."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation) or (annotation,)
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            found += _string_fields(nested[0], f"{prefix}{name}.")
        elif str in args or any(typing.get_origin(a) is list and str in typing.get_args(a) for a in args):
            found.append(prefix + name)
    return found


# Fields whose strings are patterns to match file names against, never opened or run.
NOT_A_PATH = {"inbox.ignore"}


def test_no_recipe_value_can_name_a_program_or_a_path():
    """Every string a recipe holds is checked against a closed set or a pattern: no path or program gets in."""
    fields = _string_fields(Recipe)
    assert "image.upscale.model" in fields and "audio.transcribe.language" in fields
    for dotted in fields:
        if dotted in NOT_A_PATH:
            continue
        for hostile in ("/bin/sh", "../../../etc/passwd", "x; touch /tmp/pwned"):
            with pytest.raises(RecipeError, match=dotted.replace(".", r"\.")):
                load_recipe(None, [f"{dotted}={json.dumps(hostile)}"])


@pytest.mark.parametrize(
    "content, message",
    [
        ("a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n",
         "anchors, aliases and tags are not allowed"),
        ("image: !!python/object/apply:os.system ['touch pwned']\n", "anchors, aliases and tags are not allowed"),
        ("image: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
        (b"\xff\xfe\x00\x01", "not UTF-8 text"),
        ("- image\n- audio\n", "a recipe must be a mapping of sections"),
        ("image:\n  upscale: [1, 2\n", "not valid YAML: expected ',' or ']'"),
    ],
)  # fmt: skip
def test_hostile_recipe_files_are_refused_in_one_line(tmp_path, content, message):
    recipe = tmp_path / "recipe.yaml"
    (recipe.write_bytes if isinstance(content, bytes) else recipe.write_text)(content)
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe)
    assert message in exc.value.line() and str(recipe) in exc.value.line()
    assert "\n" not in exc.value.line()
    assert not (tmp_path / "pwned").exists()


def test_a_recipe_that_is_not_a_file_or_is_too_big_is_refused(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(RecipeError, match="must be a regular file"):
        load_recipe(fifo)  # and does not wait for a writer
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(RecipeError, match="larger than"):
        load_recipe(big)


def test_cli_refuses_a_hostile_recipe_with_exit_2_and_runs_nothing(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photo("chelsea", (32, 32)).save(src / "x.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"image: !!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    result = run_cli("run", str(src), "--out", str(tmp_path / "out"), "--recipe", str(recipe),
                     "--set", "run.concurrency=true", api_url=None)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert str(recipe) in line and "not allowed" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- folders


def test_symlinks_out_of_a_folder_are_reported_and_never_followed(tmp_path):
    root, outside = tmp_path / "in", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    photo("rocket", (16, 16)).save(outside / "secret.png")
    photo("coffee", (16, 16)).save(root / "inside.png")
    (root / "sub" / "passwd").symlink_to("/etc/passwd")
    (root / "escape.png").symlink_to(outside / "secret.png")
    (root / "sub" / "hop.png").symlink_to(root / "escape.png")  # inside -> inside -> outside
    (root / "relative.png").symlink_to(Path("..") / "outside" / "secret.png")
    (root / "dir-out").symlink_to(outside, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "alias.png").symlink_to(root / "inside.png")  # stays inside: the same file, once
    (root / "dangling.png").symlink_to(tmp_path / "gone.png")

    discovered, problems = discover([root])
    found = [path for path, _ in discovered]
    assert discovered == [(root / "alias.png", root.resolve())]  # inside.png is the same file: processed once, under its first name
    reported = {Path(p.subject).name: p.cause for p in problems}
    for name in ("passwd", "escape.png", "hop.png", "relative.png", "dangling.png"):
        assert "symlink points outside" in reported[name] and "not followed" in reported[name], (name, reported)
    for name in ("dir-out", "loop"):
        assert reported[name] == "symlink to a folder: not followed"
    assert all(not Path(p).resolve().is_relative_to(outside) for p in found)


@pytest.mark.parametrize("stem", ["..", "../../etc/x", ".hidden", "  ", "a\\b", "x\x00y\x1b[31m", "写" * 120])
def test_an_output_folder_name_stays_one_safe_name_inside_the_root(tmp_path, stem):
    name = output_folder_name(Path(stem + ".png"), "ab" * 32)
    assert "/" not in name and "\\" not in name and not name.startswith(".") and name.endswith("-abababab")
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    assert len(name.encode()) <= 255 - 13  # room for the staging folder's suffix
    (tmp_path / name).mkdir()
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


# --------------------------------------------------------------------------- found by benchmarks/fuzz.py


def _transcript_with(tmp_path: Path, *words: tuple[str, float, float]) -> Path:
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({
        "schema": "assetline/transcript@1", "language": "en", "duration": 3.0,
        "model": {"name": "whisper-tiny.en", "sha256": "0" * 64}, "options": {},
        "segments": [{"start": 0.0, "end": 1.0, "text": "", "words": [
            {"start": s, "end": e, "word": w, "probability": 1.0} for w, s, e in words]}],
    }), encoding="utf-8")  # fmt: skip
    return path


def test_a_lone_surrogate_in_a_word_is_written_as_a_replacement_character(tmp_path):
    """A lone surrogate used to stop write_subtitles with UnicodeEncodeError (transcript.json refuses one)."""
    from assetline.captions import build_cues, write_subtitles
    from assetline.config import SubtitleOptions
    from assetline.transcript import Word

    cues = build_cues([Word(0.5, 1.0, " caf\ud800"), Word(1.0, 1.4, " ok")], SubtitleOptions()).cues
    write_subtitles(cues, tmp_path / SRT_NAME, tmp_path / "subtitles.vtt")
    assert pysubs2.load(str(tmp_path / SRT_NAME))[0].plaintext == "caf\ufffd ok"
    with pytest.raises(BadInputError, match="not a transcript"):  # the JSON route refuses it outright
        subtitles.fn(_transcript_with(tmp_path, (" caf\ud800", 0.5, 1.0)), tmp_path / "elsewhere")


def test_a_word_later_than_subrip_can_hold_is_refused_not_clamped(tmp_path):
    """pysubs2 clamped a time past 99:59:59.999 silently, giving a cue of no length at the wrong time."""
    transcript = _transcript_with(tmp_path, (" late", 1e9, 1e9 + 1))
    with pytest.raises(BadInputError, match="later than a subtitle file can hold"):
        subtitles.fn(transcript, tmp_path)
    assert not (tmp_path / SRT_NAME).exists()


def test_a_png_whose_header_is_cut_short_is_refused_as_a_corrupt_image(tmp_path):
    """Pillow raises ValueError for it, which used to escape identify() as an unexplained error."""
    from assetline.media import load_image

    good = tmp_path / "good.png"
    photo("coffee", (24, 16)).save(good)
    data = bytearray(good.read_bytes())
    data[8:12] = b"\x00\x00\x00\x00"  # IHDR chunk length 0
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match=r"image is corrupt \(ValueError: Truncated IHDR chunk\)"):
        identify(bad)
    with pytest.raises(BadInputError, match="image is corrupt"):
        load_image(bad, 1_000_000)


def test_a_symlink_swapped_in_after_discovery_is_refused_not_followed(tmp_path, prefect_api):
    from assetline.assets import discover, opened
    from assetline.flows.asset import process_asset

    root, outside = tmp_path / "inbox", tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    photo("coffee", (32, 32)).save(root / "still.png")
    photo("rocket", (32, 32)).save(outside / "secret.png")
    ((found, found_root),), problems = discover([root])
    assert found == root / "still.png" and not problems
    (root / "still.png").unlink()
    (root / "still.png").symlink_to(outside / "secret.png")  # swapped in between discovery and processing

    with pytest.raises(BadInputError, match=r"still\.png: leads outside .*inbox .*refused, not followed"):
        with opened(found, found_root):
            pass
    state = process_asset(str(found), str(tmp_path / "out"), inbox=str(found_root), return_state=True)
    assert state.is_failed()
    assert "leads outside" in str(state.result(raise_on_failure=False))
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]


def test_steps_decode_the_file_that_was_opened_and_hashed_whatever_is_swapped_in_later(tmp_path):
    from assetline.assets import opened
    from assetline.storage import sha256_file

    path = tmp_path / "still.png"
    photo("coffee", (40, 30)).save(path)
    sha = sha256_file(path)
    with opened(path, tmp_path) as asset:
        assert asset.sha256 == sha and asset.reads != path
        path.unlink()
        photo("rocket", (64, 64)).save(path)  # another file under the same name
        with Image.open(asset.reads) as img:
            assert img.size == (40, 30)  # still the one confined and hashed
        assert sha256_file(asset.reads) == sha


def test_a_file_identified_earlier_in_the_run_is_not_hashed_again_unless_it_changed(tmp_path):
    from assetline.assets import identify, opened
    from assetline.storage import sha256_file

    path = tmp_path / "still.png"
    photo("coffee", (40, 30)).save(path)
    first = identify(path, tmp_path)
    marker = "f" * 64  # not the file's hash: seen only if the known one is taken as it is
    with opened(path, tmp_path, known=(marker, first.fingerprint)) as again:
        assert again.sha256 == marker  # the same inode, size and mtime: hashed once per run
    with open(path, "ab") as fh:
        fh.write(b"\0")  # changed since: size and mtime differ
    with opened(path, tmp_path, known=(first.sha256, first.fingerprint)) as changed:
        assert changed.sha256 == sha256_file(path) != first.sha256
