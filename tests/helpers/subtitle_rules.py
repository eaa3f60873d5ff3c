"""The broadcast rule checker every subtitle file the suite writes must pass (SRT, WebVTT, TTML).

Written apart from `assetline.captions` (it reads only the per-language word lists, which
are data): it parses a file, checks every timing rule, the frame grid, the gap chaining and
the never-break pairs for the file's language, and compares what it finds with the
exceptions counted in the file's sidecar (`<file>.provenance.json`, the subtitles step's
`parameters.exceptions`). A rule broken more often than counted fails.

Rules that are never an exception: the frame grid, at most max_lines lines, at most
max_duration, at least min_gap_frames to the next cue, never before its speech.
"""

from __future__ import annotations

import html
import json
import re
import string
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pysubs2

from assetline.config import SubtitleOptions

LANG_DIR = Path(__file__).resolve().parents[2] / "assetline" / "captions" / "lang"
NEVER_EXCEPTIONS = ("frame_grid", "max_lines", "max_duration", "gap", "before_speech", "order", "empty")
_PUNCT = string.punctuation + "“”‘’«»…—–¿¡"
_CLOSERS = "\"'”’»)]"
_OPENERS = "\"'“‘«([¿¡"


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Violation:
    rule: str
    cue: int
    detail: str

    def __str__(self) -> str:
        return f"cue {self.cue + 1}: {self.rule}: {self.detail}"


# --- word lists ----------------------------------------------------------------------------------

def word_lists(language: str | None) -> dict | None:
    """The language's lists (lower case sets), or None where the language has none (neutral: punctuation only)."""
    code = (language or "").lower().replace("_", "-").split("-")[0]
    path = LANG_DIR / f"{code}.json"
    if not code or not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    lists = {k: {w.lower() for w in v} for k, v in raw.items() if isinstance(v, list) and k != "fixed_phrases"}
    lists["fixed_phrases"] = [tuple(p.lower().split()) for p in raw.get("fixed_phrases", [])]
    lists["capitalised_nouns"] = bool(raw.get("capitalised_nouns"))
    lists["function"] = lists["determiners"] | lists["prepositions"] | lists["conjunctions"] | lists["subordinators"]
    return lists


def _core(word: str) -> str:
    return word.strip(_PUNCT).lower().replace("’", "'")


def _has_punctuation(word: str, lists: dict) -> bool:
    mark = word.rstrip(_CLOSERS)[-1:]
    return bool(mark) and mark in _PUNCT and not (mark == "." and _core(word) in lists["abbreviations"])


def pair_rule(before: str, after: str, lists: dict | None) -> str | None:
    """Which no-split pair a break between two words splits: determiner+noun, preposition+object, ..."""
    if lists is None or _has_punctuation(before, lists) or after[:1] in _OPENERS:
        return None
    b, a = _core(before), _core(after)
    if not b or not a:
        return None
    content = a not in lists["function"]
    checks = (
        ("preposition", b in lists["prepositions"]),
        ("determiner", b in lists["determiners"] and content),
        ("negation", b in lists["negations"] and content),
        ("auxiliary", b in lists["auxiliaries"] and content and a not in lists["subject_pronouns"]),
        ("pronoun", b in lists["subject_pronouns"] and content),
        ("particle", a in lists["particles"] and b not in lists["function"] and b not in lists["subject_pronouns"]),
        ("adjective", b in lists["adjectives"] and content),
    )
    for name, hit in checks:
        if hit:
            return name
    first = lists["first_person_singular"]
    capitals = before[:1].isupper() and after[:1].isupper()
    if not lists["capitalised_nouns"] and capitals and b not in first and a not in first:
        return "name"
    return None


def split_pairs(words: list[str], breaks: list[int], lists: dict | None) -> dict[int, str]:
    """For each break position (a break before words[k]) that splits a no-split pair or fixed phrase, the rule."""
    found: dict[int, str] = {}
    if lists is None:
        return found
    cores = [_core(w) for w in words]
    inside_phrase: set[int] = set()
    for phrase in lists["fixed_phrases"]:
        for i in range(len(cores) - len(phrase) + 1):
            if tuple(cores[i : i + len(phrase)]) == phrase:
                inside = range(i + 1, i + len(phrase))
                inside_phrase.update(k for k in inside if not _has_punctuation(words[k - 1], lists))
    for k in breaks:
        rule = pair_rule(words[k - 1], words[k], lists) or ("fixed_phrase" if k in inside_phrase else None)
        if rule:
            found[k] = rule
    return found


# --- the rules -----------------------------------------------------------------------------------

def _frame(seconds: float, fps: float) -> int | None:
    """The frame `seconds` (as written, whole ms) stands for, or None when it is on no frame."""
    frame = round(seconds * fps)
    return frame if abs(frame * 1000 / fps - seconds * 1000) <= 0.5 + 1e-6 else None


def check_cues(
    cues: list[Cue],
    *,
    rules: SubtitleOptions = SubtitleOptions(),
    fps: float | None = None,
    language: str | None = "en",
    speech_starts: list[float] | None = None,
    shot_changes: list[float] = (),
) -> list[Violation]:
    """Every rule broken by `cues` (seconds as written). `speech_starts`: each cue's first word's start, if known."""
    fps = rules.fps if fps is None else fps
    for base in (24, 30, 48, 60, 120):  # 29.97 means 30000/1001 (and so on), as a TTML frameRateMultiplier says
        if abs(fps - base * 1000 / 1001) < 0.0015:
            fps = base * 1000 / 1001
    lists = word_lists(language)
    found: list[Violation] = []
    frames = []
    cuts = sorted(round(t * fps) for t in shot_changes if t > 0)  # a cut at 0 is the start of the video
    for i, cue in enumerate(cues):
        start, end = _frame(cue.start, fps), _frame(cue.end, fps)
        if start is None or end is None:
            found.append(Violation("frame_grid", i, f"{cue.start:.3f}..{cue.end:.3f} not on the {fps} fps grid"))
            start, end = round(cue.start * fps), round(cue.end * fps)
        frames.append((start, end))
        duration = cue.end - cue.start
        if not cue.lines or any(not line.strip() for line in cue.lines):
            found.append(Violation("empty", i, f"empty line in {cue.lines}"))
        if len(cue.lines) > rules.max_lines:
            found.append(Violation("max_lines", i, f"{len(cue.lines)} lines"))
        for line in cue.lines:
            if len(line) > rules.max_chars_per_line:
                found.append(Violation("line_length", i, f"{len(line)} characters: {line!r}"))
        if duration <= 0:
            found.append(Violation("order", i, f"ends at {cue.end} before it starts at {cue.start}"))
            continue
        if duration > rules.max_duration + 1e-6:
            found.append(Violation("max_duration", i, f"{duration:.3f} s"))
        if duration < rules.min_duration - 1e-6:
            found.append(Violation("min_duration", i, f"{duration:.3f} s"))
        chars = sum(len(line) for line in cue.lines)  # spaces count, line breaks do not
        if chars / duration > rules.max_chars_per_second * (1 + 1e-9) + 1e-9:
            found.append(Violation("reading_speed", i, f"{chars / duration:.2f} cps ({chars} in {duration:.3f} s)"))
        if speech_starts is not None and cue.start < speech_starts[i] - 1e-9:
            found.append(Violation("before_speech", i, f"shown at {cue.start} before its speech at {speech_starts[i]}"))
        for cut in cuts:
            if 0 < abs(start - cut) < rules.shot_change_frames:
                found.append(Violation("shot_change", i, f"in-time {abs(start - cut)} frames from the cut ({cut})"))
            if end - cut not in (0, -rules.min_gap_frames) and abs(end - cut) < rules.shot_change_frames:
                found.append(Violation("shot_change", i, f"out-time {end - cut:+d} frames from the cut at frame {cut}"))
    for i in range(len(cues) - 1):
        gap = frames[i + 1][0] - frames[i][1]
        if gap < rules.min_gap_frames:
            found.append(Violation("gap", i, f"{gap} frames to the next cue"))
        elif rules.min_gap_frames < gap < max(rules.gap_close_frames, rules.min_gap_frames + 1):
            found.append(Violation("gap_closing", i, f"a {gap}-frame gap left open"))
    # No-split pairs, at line breaks and cue breaks (counted for the cue the break is in or ends).
    words: list[str] = []
    owner: dict[int, int] = {}
    for i, cue in enumerate(cues):
        for j, line in enumerate(cue.lines):
            if words:
                owner[len(words)] = i if j else i - 1
            words.extend(line.split())
    for k, rule in split_pairs(words, sorted(owner), lists).items():
        found.append(Violation("forced_break", owner[k], f"{rule}: {words[k - 1]!r} | {words[k]!r}"))
    return found


# --- files ---------------------------------------------------------------------------------------

_CLOCK = re.compile(r"^(\d+):(\d{2}):(\d{2})(?:\.(\d+))?$")
_SMPTE = re.compile(r"^(\d+):(\d{2}):(\d{2}):(\d+)(?:\.\d+)?$")
_OFFSET = re.compile(r"^([\d.]+)(h|m|s|ms|f|t)$")


def _ttml_time(value: str, fps: float, tick_rate: float) -> float:
    value = value.strip()
    if m := _CLOCK.match(value):
        h, mi, s, frac = m.groups()
        return int(h) * 3600 + int(mi) * 60 + int(s) + (float("0." + frac) if frac else 0.0)
    if m := _SMPTE.match(value):
        h, mi, s, f = m.groups()
        return int(h) * 3600 + int(mi) * 60 + int(s) + int(f) / fps
    if m := _OFFSET.match(value):
        number, unit = float(m.group(1)), m.group(2)
        return number * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "f": 1 / fps, "t": 1 / tick_rate}[unit]
    raise ValueError(f"TTML time {value!r}")


def parse_ttml(path: Path) -> tuple[list[Cue], dict]:
    """Cues of a TTML document (each <p>, <br/> between lines), and its attributes: fps, language, time base."""
    tt = ET.parse(path).getroot()
    ttp = "{http://www.w3.org/ns/ttml#parameter}"
    xml_lang = "{http://www.w3.org/XML/1998/namespace}lang"
    rate = float(tt.get(f"{ttp}frameRate", "30"))
    num, _, den = tt.get(f"{ttp}frameRateMultiplier", "1 1").partition(" ")
    fps = rate * float(num) / float(den or 1)
    tick_rate = float(tt.get(f"{ttp}tickRate", "1"))
    cues = []
    for p in tt.iter():
        if not p.tag.endswith("}p"):
            continue
        lines, current = [], []

        def walk(node):
            if node.text:
                current.append(node.text)
            for child in node:
                if child.tag.endswith("}br"):
                    lines.append("".join(current))
                    current.clear()
                else:
                    walk(child)
                if child.tail:
                    current.append(child.tail)

        walk(p)
        lines.append("".join(current))
        begin, end = p.get("begin"), p.get("end")
        if begin is None or end is None:
            raise ValueError(f"{path}: a <p> without begin/end (timing on a parent is not used here)")
        cues.append(Cue(_ttml_time(begin, fps, tick_rate), _ttml_time(end, fps, tick_rate),
                        tuple(" ".join(line.split()) for line in lines)))  # fmt: skip
    meta = {"fps": fps, "language": tt.get(xml_lang), "time_base": tt.get(f"{ttp}timeBase")}
    return sorted(cues, key=lambda c: c.start), meta


def parse(path: Path) -> tuple[list[Cue], dict]:
    """Cues of an SRT, WebVTT or TTML file."""
    if path.suffix == ".ttml":
        try:
            import ttconv.imsc.reader as imsc_reader

            assert imsc_reader.to_model(ET.parse(path)) is not None, f"{path}: ttconv reads no document"
        except ImportError:
            pass
        return parse_ttml(path)
    text = path.read_text(encoding="utf-8")
    cues = parse_vtt(text) if path.suffix == ".vtt" else parse_srt(text)
    # pysubs2 (what the files are written with) reads the same cues and times.
    subs = pysubs2.SSAFile.from_string(text, format_=path.suffix[1:]) if text.strip() else []
    assert [(round(c.start * 1000), round(c.end * 1000)) for c in cues] == [(e.start, e.end) for e in subs] or len(
        subs
    ) > len(cues), f"{path}: pysubs2 reads other times"  # pysubs2 is laxer: it finds timestamps inside text lines
    return cues, {}


_SRT_TIMING = re.compile(r"^(\d{2,}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2,}):(\d{2}):(\d{2}),(\d{3})$")
_VTT_TIMING = re.compile(r"^(?:(\d{2,}):)?(\d{2}):(\d{2})\.(\d{3}) --> (?:(\d{2,}):)?(\d{2}):(\d{2})\.(\d{3})(?: .*)?$")


def _seconds(h, m, s, ms) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[Cue]:
    """SubRip cues, strictly: blocks apart by a blank line, an index line, a whole timing line, the text lines."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.split("\n")
        if not block.strip():
            continue
        if len(lines) < 2 or not lines[0].strip().isdigit() or not (m := _SRT_TIMING.match(lines[1].strip())):
            raise ValueError(f"not a SubRip cue: {block[:80]!r}")
        g = m.groups()
        cues.append(Cue(_seconds(*g[:4]), _seconds(*g[4:]), tuple(lines[2:])))
    return cues


def parse_vtt(text: str) -> list[Cue]:
    """WebVTT cues (the header block skipped, NOTE/STYLE blocks too); entities decoded."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip())
    if not blocks or not blocks[0].startswith("WEBVTT"):
        raise ValueError("no WEBVTT header")
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        if lines[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        if not _VTT_TIMING.match(lines[0]):
            lines = lines[1:]  # an identifier
        if not lines or not (m := _VTT_TIMING.match(lines[0])):
            raise ValueError(f"not a WebVTT cue: {block[:80]!r}")
        g = m.groups()
        cues.append(Cue(_seconds(*g[:4]), _seconds(*g[4:]), tuple(html.unescape(line) for line in lines[1:])))
    return cues


def _sidecar_step(path: Path) -> dict | None:
    sidecar = path.with_name(path.name + ".provenance.json")
    if not sidecar.is_file():
        return None
    doc = json.loads(sidecar.read_text(encoding="utf-8"))
    steps = [s for s in doc.get("steps", []) if "exceptions" in (s.get("parameters") or {})]
    return steps[-1]["parameters"] if steps else None


def _speech_starts(path: Path, cues: list[Cue], language: str | None) -> list[float] | None:
    """Each cue's first word's start, from transcript.json beside the file, where the words match."""
    transcript = path.with_name("transcript.json")
    if not transcript.is_file() or ".en." in path.name:
        return None
    try:
        from assetline.captions.text import display_tokens
        from assetline.transcript import Transcript

        tokens = display_tokens(Transcript.model_validate_json(transcript.read_bytes()).words())
    except Exception:
        return None
    shown = [w for cue in cues for line in cue.lines for w in line.split()]
    if [t.text for t in tokens] != shown:
        return None  # text changed after transcription (glossary, markup made safe): no word timing to compare
    starts, at = [], 0
    for cue in cues:
        starts.append(tokens[at].start)
        at += sum(len(line.split()) for line in cue.lines)
    return starts


def check_file(path: Path) -> list[str]:
    """Problems with one subtitle file: rules broken more often than its sidecar counts, or never allowed."""
    path = Path(path)
    cues, meta = parse(path)
    params = _sidecar_step(path) or {}
    fields = {k: v for k, v in params.items() if k in SubtitleOptions.model_fields and k != "enabled"}
    try:
        rules = SubtitleOptions(**fields)
    except Exception:
        rules = SubtitleOptions()
    fps = float(params.get("fps") or meta.get("fps") or rules.fps)
    name_lang = re.match(r"subtitles\.([a-z]{2,3})\.", path.name)
    language = name_lang.group(1) if name_lang else None
    language = language or params.get("subtitle_language") or params.get("language") or meta.get("language") or "en"
    found = check_cues(
        cues, rules=rules, fps=fps, language=language,
        speech_starts=_speech_starts(path, cues, language),
        shot_changes=params.get("shot_changes") or (),
    )  # fmt: skip
    counted = params.get("exceptions") or {}
    problems = []
    by_rule: dict[str, list[Violation]] = {}
    for v in found:
        by_rule.setdefault(v.rule, []).append(v)
    for rule, violations in sorted(by_rule.items()):
        cues_broken = sorted({v.cue for v in violations})
        allowed = 0 if rule in NEVER_EXCEPTIONS else int(counted.get(rule, 0))
        if len(cues_broken) > allowed:
            shown = "; ".join(map(str, violations[:3]))
            problems.append(f"{path.name}: {rule} broken in {len(cues_broken)} cue(s), {allowed} counted: {shown}")
    return problems


def subtitle_files(folder: Path) -> list[Path]:
    return sorted(p for ext in ("srt", "vtt", "ttml") for p in Path(folder).rglob(f"subtitles*.{ext}") if p.is_file())


# --- WebVTT, by the W3C's parser -------------------------------------------------------------------

NODE_DIR = Path(__file__).resolve().parents[1] / "node"  # tests/node/, git-ignored; `make test-deps` fills it
WEBVTT_PARSER = "webvtt-parser@2.2.0"


def webvtt_parser() -> Path | None:
    """tests/node/node_modules with the W3C's webvtt-parser, installed with npm now if missing; None without node."""
    import shutil
    import subprocess

    modules = NODE_DIR / "node_modules"
    if (modules / "webvtt-parser" / "parser.js").is_file():
        return modules
    if not (shutil.which("node") and shutil.which("npm")):
        return None
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(NODE_DIR), WEBVTT_PARSER],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    return modules


def webvtt_validate(paths: list[Path]) -> list[dict]:
    """What the W3C's parser reads in each WebVTT file: {"path", "cues": [{start, end, text}], "errors": [...]}."""
    import subprocess

    modules = webvtt_parser()
    if modules is None:
        raise RuntimeError("node and npm are needed to validate WebVTT")
    script = Path(__file__).with_name("webvtt_validate.js")
    proc = subprocess.run(["node", str(script), str(modules), *map(str, paths)],
                          check=True, capture_output=True, text=True, timeout=120)  # fmt: skip
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
