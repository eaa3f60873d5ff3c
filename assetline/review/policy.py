"""Which assets a person must see before delivery, and why: the recipe's `review` section applied to what was made.

`review_reasons` reads only the staged outputs and their step records (the
transcript, the subtitle cues, a cutout's alpha): it needs no Prefect and no
model, so it is the same function for a run, a test and a rerun.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from assetline.config import Recipe, ReviewOptions
from assetline.provenance.manifest import ReviewReason, StepRecord

SOFT_LOW, SOFT_HIGH = 5, 250  # alpha strictly between these is neither subject nor background


class MadeOutput(Protocol):
    """What `review_reasons` needs of each output (flows/_asset.Made is one)."""

    output: Path
    steps: list[StepRecord]


def review_reasons(kind: str, made: Iterable[MadeOutput], recipe: Recipe) -> list[ReviewReason]:
    """Why this asset must wait for a person; empty when it can be delivered now.

    `kind` is the asset's (image | audio | video), `made` its staged outputs in
    the order made, `recipe` the run's recipe (its `review` section is the
    policy; the kind's `transcribe.forbidden` the terms). Flags (`review.flags`):
      forbidden            a subtitle cue holds a forbidden term (each cue named)
      language_uncertain   the detected language's probability < review.min_language_probability
      low_confidence       the mean word probability < review.min_confidence
      subtitle_exceptions  a cue misses a timing or layout rule (counted by the subtitles step)
      soft_matte           more than review.max_soft_matte of a cutout's subject is half transparent
    With `review.required: always` every asset of `review.kinds` is held
    (reason `required`, plus any flag that fired); with `never`, none is.
    """
    policy: ReviewOptions = recipe.review
    if policy.required == "never" or kind not in policy.kinds:
        return []
    made = list(made)
    by_name = {m.output.name: m for m in made}
    steps = [s for m in made for s in m.steps]
    flags = set(policy.flags)
    reasons: list[ReviewReason] = []
    transcript = _transcript(by_name.get("transcript.json"))
    if "forbidden" in flags:
        reasons += _forbidden(by_name, steps, _forbidden_terms(recipe, kind))
    if transcript is not None and "language_uncertain" in flags:
        reasons += _language(transcript, policy.min_language_probability)
    if transcript is not None and "low_confidence" in flags:
        reasons += _confidence(transcript, policy.min_confidence)
    if "subtitle_exceptions" in flags:
        reasons += _exceptions(steps)
    if "soft_matte" in flags:
        reasons += _soft_mattes(made, policy.max_soft_matte)
    if policy.required == "always":
        reasons.insert(0, ReviewReason(flag="required", detail=f"review.required is always for {kind} assets"))
    return reasons


def _forbidden_terms(recipe: Recipe, kind: str) -> list[str]:
    section = getattr(recipe, kind, None)
    transcribe = getattr(section, "transcribe", None)
    return [t for t in getattr(transcribe, "forbidden", None) or [] if t.strip()]


def _transcript(made: MadeOutput | None) -> dict[str, Any] | None:
    if made is None:
        return None
    try:
        return json.loads(made.output.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _words(transcript: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for seg in transcript.get("segments") or [] for w in seg.get("words") or [] if isinstance(w, dict)]


def term_pattern(term: str) -> re.Pattern[str]:
    """`term` as a whole word or phrase, any case, any run of spaces between its words."""
    words = [re.escape(w) for w in term.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def cues_with_terms(srt: Path, terms: list[str]) -> dict[int, list[str]]:
    """Cue number (1-based, as the SRT numbers them) -> the forbidden terms its text holds."""
    import pysubs2

    try:
        subs = pysubs2.load(str(srt), encoding="utf-8", format_="srt")
    except Exception:  # unreadable subtitles hold no cue to flag; the subtitles step reported them
        return {}
    patterns = [(t, term_pattern(t)) for t in terms]
    found: dict[int, list[str]] = {}
    for number, event in enumerate(subs, start=1):
        text = " ".join(event.plaintext.split())
        hits = [t for t, p in patterns if p.search(text)]
        if hits:
            found[number] = hits
    return found


def _forbidden(by_name: dict[str, MadeOutput], steps: list[StepRecord], terms: list[str]) -> list[ReviewReason]:
    """Cues holding a forbidden term: found in the subtitles written (every language), and any the
    subtitles step itself recorded (`parameters.forbidden`)."""
    reasons = []
    for name in sorted(by_name):
        if not name.endswith(".srt"):
            continue
        found = cues_with_terms(by_name[name].output, terms) if terms else {}
        for step in steps:
            if step.name == "subtitles" and step.output == name:
                for number in _recorded_cues(step.parameters.get("forbidden")):
                    found.setdefault(number, [])
        if found:
            said = sorted({t for hits in found.values() for t in hits})
            cues = sorted(found)
            reasons.append(ReviewReason(
                flag="forbidden", output=name, cues=cues,
                detail=f"{name}: forbidden term{'s' if len(said) != 1 else ''} "
                       f"{', '.join(repr(t) for t in said) or '(recorded by the subtitles step)'} in cue{'s' if len(cues) > 1 else ''} "
                       f"{', '.join(map(str, cues))}",
            ))  # fmt: skip
    return reasons


def _recorded_cues(value: Any) -> list[int]:
    """Cue numbers from however the subtitles step records its forbidden cues (numbers, or records with one)."""
    numbers = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, int) and not isinstance(item, bool):
            numbers.append(item)
        elif isinstance(item, dict):
            n = item.get("cue", item.get("index", item.get("number")))
            if isinstance(n, int) and not isinstance(n, bool):
                numbers.append(n)
    return numbers


def language_probability(transcript: dict[str, Any]) -> float | None:
    """The detected language's probability: as transcribed, else the windows' speech-weighted mean for it."""
    value = transcript.get("language_probability")
    if isinstance(value, (int, float)):
        return float(value)
    language = transcript.get("language")
    windows = [w for w in transcript.get("windows") or [] if w.get("language") == language and w.get("probability") is not None]
    speech = sum(w.get("speech_seconds") or 0 for w in windows)
    if not windows or speech <= 0:
        return None
    return sum(w["probability"] * (w.get("speech_seconds") or 0) for w in windows) / speech


def _language(transcript: dict[str, Any], minimum: float) -> list[ReviewReason]:
    options = transcript.get("options") or {}
    given = options.get("language")
    if given and str(given).lower() != "auto" and not options.get("detected"):
        return []  # the recipe named the language: nothing was detected
    if not _words(transcript):
        return []  # no speech: no language to be unsure of
    p = language_probability(transcript)
    if p is None or p >= minimum:
        return []
    return [ReviewReason(flag="language_uncertain", output="transcript.json",
                         detail=f"detected language {transcript.get('language')!r} at probability {p:.2f} (under {minimum:g})")]  # fmt: skip


def mean_word_probability(transcript: dict[str, Any]) -> float | None:
    probabilities = [float(w["probability"]) for w in _words(transcript) if isinstance(w.get("probability"), (int, float))]
    return sum(probabilities) / len(probabilities) if probabilities else None


def _confidence(transcript: dict[str, Any], minimum: float) -> list[ReviewReason]:
    mean = mean_word_probability(transcript)
    if mean is None or mean >= minimum:
        return []
    n = len(_words(transcript))
    return [ReviewReason(flag="low_confidence", output="transcript.json",
                         detail=f"mean word probability {mean:.2f} over {n} words (under {minimum:g})")]  # fmt: skip


def _exceptions(steps: list[StepRecord]) -> list[ReviewReason]:
    reasons = []
    for step in steps:
        if step.name != "subtitles" or not step.output.endswith(".srt"):
            continue
        counts = step.parameters.get("exceptions")
        if isinstance(counts, dict):
            missed = {rule: n for rule, n in counts.items() if isinstance(n, int) and n > 0}
        elif isinstance(counts, list):
            missed = {str(rule): 1 for rule in counts}
        else:
            missed = {}
        if missed:
            what = ", ".join(f"{rule} x{n}" for rule, n in sorted(missed.items()))
            reasons.append(ReviewReason(flag="subtitle_exceptions", output=step.output,
                                        detail=f"{step.output}: cues that miss a rule ({what})"))  # fmt: skip
    return reasons


def soft_fraction(path: Path) -> float | None:
    """Of a picture's subject (alpha above 5), the share whose alpha is below 250; None without alpha."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            if "A" not in image.getbands():
                return None
            alpha = np.asarray(image.getchannel("A"))
    except OSError:
        return None
    subject = alpha > SOFT_LOW
    count = int(subject.sum())
    if count == 0:
        return None
    return float((subject & (alpha < SOFT_HIGH)).sum()) / count


def _recorded_soft(steps: list[StepRecord]) -> float | None:
    """A matte step's own measure of its soft share (video mattes record it; decoding them again is costly)."""
    for step in reversed(steps):
        for key in ("soft_fraction", "soft_matte", "soft_share"):
            value = step.parameters.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def _soft_mattes(made: list[MadeOutput], maximum: float) -> list[ReviewReason]:
    reasons = []
    for item in made:
        name = item.output.name
        if name == "cutout.png":
            share = soft_fraction(item.output)
        elif name.startswith("matte."):
            share = _recorded_soft(item.steps)
        else:
            continue
        if share is not None and share > maximum:
            reasons.append(ReviewReason(flag="soft_matte", output=name,
                                        detail=f"{name}: {share:.0%} of the subject is half transparent (over {maximum:.0%})"))  # fmt: skip
    return reasons
