"""Writing cues as SubRip and WebVTT through pysubs2, and as TTML (IMSC 1.1 Text) through ttconv.

The transcript's text is shown literally, never as markup, in every format.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as et
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import pysubs2

from assetline.captions.cues import SubtitleCue
from assetline.storage import write_atomically

# pysubs2 keeps cue text in SubStation form, where {...} is an override block and
# a backslash starts \N, \h; players read {\an8} and <i> in SRT as styling too.
# Transcript text is shown as text: braces and backslashes become harmless
# look-alikes, and each format's own markup characters are neutralised.
_SUBSTATION_SAFE = {"{": "(", "}": ")", "\\": "/"}
_SRT_SAFE = str.maketrans({**_SUBSTATION_SAFE, "<": "‹", ">": "›"})  # SRT has no escapes
_VTT_SAFE = str.maketrans({**_SUBSTATION_SAFE, "&": "&amp;", "<": "&lt;", ">": "&gt;"})


def write_subtitles(cues: Sequence[SubtitleCue], srt_path: Path, vtt_path: Path) -> None:
    """Write `cues` as SubRip and WebVTT, each atomically; no cues gives valid empty files.

    The SRT is empty (zero cues); the WebVTT holds only its `WEBVTT` header.
    """
    for path, fmt, table in ((srt_path, "srt", _SRT_SAFE), (vtt_path, "vtt", _VTT_SAFE)):
        subs = pysubs2.SSAFile()
        for cue in cues:
            text = r"\N".join(line.translate(table) for line in cue.lines)
            subs.append(pysubs2.SSAEvent(start=round(cue.start * 1000), end=round(cue.end * 1000), text=text))
        write_atomically(path, subs.to_string(fmt).encode("utf-8"))


IMSC11_TEXT = "http://www.w3.org/ns/ttml/profile/imsc1.1/text"
_TTP = "http://www.w3.org/ns/ttml#parameter"


def frame_rate(fps: float) -> Fraction:
    """The exact rate for a nominal one: 29.97 is 30000/1001, 23.976 is 24000/1001, 25 is 25."""
    for nominal in (24, 30, 48, 60, 120):
        ntsc = Fraction(nominal * 1000, 1001)
        if abs(fps - float(ntsc)) < 0.005:
            return ntsc
    return Fraction(fps).limit_denominator(1001)


def ttml_document(cues: Sequence[SubtitleCue], language: str, fps: float) -> bytes:
    """`cues` as an IMSC 1.1 Text document (TTML2): frame-based media times, `xml:lang`, a bottom-centre region.

    Each cue is one `<p>`, its lines separated by `<br/>`; times are whole
    frames at `fps` (the subtitles step puts cue times on that grid already).
    Text is character data (ElementTree escapes it): a `<` in speech stays a `<`.
    """
    from ttconv import model
    from ttconv import style_properties as styles
    from ttconv.imsc import writer
    from ttconv.imsc.config import ContentProfilesSignaling, IMSCWriterConfiguration
    from ttconv.imsc.attributes import TimeExpressionSyntaxEnum

    rate = frame_rate(fps)
    doc = model.ContentDocument()
    doc.set_lang(language)
    doc.set_content_profiles({IMSC11_TEXT})
    doc.set_cell_resolution(model.CellResolutionType(rows=15, columns=50))

    region = model.Region("bottom", doc)  # the title-safe area's bottom edge, text centred
    pct = styles.LengthType.Units.pct
    region.set_style(styles.StyleProperties.Origin, styles.CoordinateType(x=styles.LengthType(10, pct), y=styles.LengthType(10, pct)))
    region.set_style(styles.StyleProperties.Extent, styles.ExtentType(height=styles.LengthType(80, pct), width=styles.LengthType(80, pct)))
    region.set_style(styles.StyleProperties.DisplayAlign, styles.DisplayAlignType.after)
    region.set_style(styles.StyleProperties.TextAlign, styles.TextAlignType.center)
    region.set_style(styles.StyleProperties.FontFamily, (styles.GenericFontFamilyType.proportionalSansSerif,))
    region.set_style(styles.StyleProperties.FontSize, styles.LengthType(100, pct))
    region.set_style(styles.StyleProperties.LineHeight, styles.LengthType(125, pct))
    region.set_style(styles.StyleProperties.Color, styles.NamedColors.white.value)
    region.set_style(styles.StyleProperties.TextOutline, styles.TextOutlineType(styles.LengthType(5, pct), styles.NamedColors.black.value))
    doc.put_region(region)

    body = model.Body(doc)
    body.set_region(region)
    doc.set_body(body)
    div = model.Div(doc)
    body.push_child(div)
    for cue in cues:
        p = model.P(doc)
        p.set_begin(Fraction(round(cue.start * rate)) / rate)
        p.set_end(Fraction(round(cue.end * rate)) / rate)
        for i, line in enumerate(cue.lines):
            if i:
                p.push_child(model.Br(doc))
            span = model.Span(doc)
            span.push_child(model.Text(doc, line))
            p.push_child(span)
        div.push_child(p)

    config = IMSCWriterConfiguration(
        time_format=TimeExpressionSyntaxEnum.frames, fps=rate,
        profile_signaling=ContentProfilesSignaling.CONTENT_PROFILES,
    )  # fmt: skip
    tree = writer.from_model(doc, config)
    root = tree.getroot()
    root.set(f"{{{_TTP}}}timeBase", "media")  # the default, said outright: delivery specs check for it
    out = io.BytesIO()
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out.getvalue()


def write_ttml(cues: Sequence[SubtitleCue], path: Path, language: str, fps: float) -> None:
    """Write `cues` as IMSC 1.1 Text TTML, atomically (see `ttml_document`); no cues gives a valid empty body."""
    write_atomically(path, ttml_document(cues, language, fps))


def read_ttml(data: bytes) -> list[SubtitleCue]:
    """Cues back from a TTML document (ttconv's IMSC reader), times in seconds: for checking what was written."""
    from ttconv.imsc import reader
    from ttconv import model

    doc = reader.to_model(et.ElementTree(et.fromstring(data)))
    cues = []
    body = doc.get_body()
    for div in body or ():
        for p in div:
            lines, current = [], []
            for child in p:
                if isinstance(child, model.Br):
                    lines.append("".join(current))
                    current = []
                else:
                    current.append("".join(t.get_text() for t in child if isinstance(t, model.Text)))
            lines.append("".join(current))
            begin = p.get_begin() or 0  # ttconv reads a begin of 0 as none
            cues.append(SubtitleCue(float(begin), float(p.get_end()), tuple(lines)))
    return cues
