"""Language codes: Whisper's (ISO 639-1, a few 639-3) to the ISO 639-2/T codes MP4 tracks are tagged with.

Data only, no Prefect and no model. `und` (undetermined, ISO 639-2) stands for
a clip in which no speech was found, so no language could be detected.
"""

from __future__ import annotations

UNDETERMINED = "und"

# ISO 639-1 -> ISO 639-2/T (the terminology code MP4's `mdhd` language field holds), for every
# language Whisper knows. "jw" is Whisper's spelling of Javanese (ISO 639-1 "jv"); "haw" and "yue"
# have no two-letter code and are already ISO 639-2/639-3.
ISO639_2: dict[str, str] = {
    "af": "afr", "am": "amh", "ar": "ara", "as": "asm", "az": "aze", "ba": "bak", "be": "bel",
    "bg": "bul", "bn": "ben", "bo": "bod", "br": "bre", "bs": "bos", "ca": "cat", "cs": "ces",
    "cy": "cym", "da": "dan", "de": "deu", "el": "ell", "en": "eng", "es": "spa", "et": "est",
    "eu": "eus", "fa": "fas", "fi": "fin", "fo": "fao", "fr": "fra", "gl": "glg", "gu": "guj",
    "ha": "hau", "haw": "haw", "he": "heb", "hi": "hin", "hr": "hrv", "ht": "hat", "hu": "hun",
    "hy": "hye", "id": "ind", "is": "isl", "it": "ita", "ja": "jpn", "jw": "jav", "ka": "kat",
    "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor", "la": "lat", "lb": "ltz", "ln": "lin",
    "lo": "lao", "lt": "lit", "lv": "lav", "mg": "mlg", "mi": "mri", "mk": "mkd", "ml": "mal",
    "mn": "mon", "mr": "mar", "ms": "msa", "mt": "mlt", "my": "mya", "ne": "nep", "nl": "nld",
    "nn": "nno", "no": "nor", "oc": "oci", "pa": "pan", "pl": "pol", "ps": "pus", "pt": "por",
    "ro": "ron", "ru": "rus", "sa": "san", "sd": "snd", "si": "sin", "sk": "slk", "sl": "slv",
    "sn": "sna", "so": "som", "sq": "sqi", "sr": "srp", "su": "sun", "sv": "swe", "sw": "swa",
    "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha", "tk": "tuk", "tl": "tgl", "tr": "tur",
    "tt": "tat", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie", "yi": "yid", "yo": "yor",
    "zh": "zho", "yue": "yue",
}  # fmt: skip


def iso639_2(code: str) -> str:
    """The ISO 639-2/T code for a Whisper language code (`es` -> `spa`); a 3-letter code is kept; else `und`."""
    code = code.lower()
    if code in ISO639_2:
        return ISO639_2[code]
    if len(code) == 3 and code.isalpha():
        return code
    return UNDETERMINED


def bcp47(code: str) -> str:
    """The tag for `xml:lang` and WebVTT: Whisper's code, with Javanese spelled as BCP 47 does."""
    return {"jw": "jv"}.get(code, code)
