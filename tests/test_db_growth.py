"""What each asset leaves in the Prefect database: thumbnails small enough to keep inline.

Summaries are stored twice (the artifact and its key's latest copy), so each
picture's bytes count double; at 240 px and JPEG quality 80 the two pictures
made 48 KiB of 242 KiB per asset (SQLite, measured through `serve`), at 160 px
and 60 they make 19 KiB. Retention (Prefect's db_vacuum) is checked on a real
server in test_auth.py.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from helpers import photo

THUMB_BUDGET_BYTES = 10_000  # per picture, as the data: URL stored; 240 px at quality 80 made up to 19 KB


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "coffee", "rocket"])
def test_a_thumbnail_is_a_small_jpeg_still_showing_the_picture(tmp_path, name):
    from assetline.flows._report import THUMB_PX, _thumbnail

    source = tmp_path / f"{name}.png"
    photo(name).save(source)
    url = _thumbnail(source)
    assert url is not None and url.startswith("data:image/jpeg;base64,")
    assert len(url) <= THUMB_BUDGET_BYTES
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as thumb:
        assert max(thumb.size) == THUMB_PX and thumb.mode == "RGB"
        with Image.open(source) as full:
            assert abs(thumb.width / thumb.height - full.width / full.height) < 0.02  # not distorted


def test_a_cutouts_thumbnail_shows_its_transparency_over_a_checkerboard(tmp_path):
    from assetline.flows._report import _thumbnail

    cutout = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    cutout.paste((200, 30, 30, 255), (100, 75, 300, 225))
    cutout.save(tmp_path / "cutout.png")
    url = _thumbnail(tmp_path / "cutout.png")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as thumb:
        corner = thumb.convert("L").crop((0, 0, 16, 16))
        lo, hi = corner.getextrema()
        assert hi - lo > 30  # light and lighter squares where the cutout is transparent
        r, g, b = thumb.getpixel((thumb.width // 2, thumb.height // 2))
        assert r > 150 and g < 80 and b < 80  # the subject itself, opaque
