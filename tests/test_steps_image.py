"""The image steps on real photos and real models: cutouts match rembg, upscales are exact and seamless."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assetline import models
from assetline.config import ImageRecipe, RemoveBackgroundOptions, UpscaleOptions
from assetline.imaging import run_tiled
from assetline.media import load_image
from assetline.tasks import remove_background, upscale
from assetline.tasks.upscale import ncnn_net
from helpers import iou, photo


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "astronaut.png"
    photo("astronaut", (256, 256)).save(path)
    return path


def test_cutout_alpha_matches_rembgs_own_output_for_the_same_model(astronaut, tmp_path, monkeypatch):
    from rembg import new_session, remove

    record = remove_background.fn(astronaut, tmp_path)
    ours = np.asarray(Image.open(tmp_path / "cutout.png").getchannel("A")) > 127
    # rembg's own u2netp session, reading the same verified file (U2NET_HOME holds it: no download).
    monkeypatch.setenv("U2NET_HOME", str(models.require("u2netp")))
    theirs = np.asarray(remove(Image.open(astronaut), session=new_session("u2netp")).getchannel("A")) > 127
    assert iou(ours, theirs) >= 0.95
    assert 0.2 < ours.mean() < 0.9  # a real subject, not an empty or full mask
    assert record.model.name == "u2netp"
    assert record.model.sha256 == models.get_spec("u2netp").sha256


def test_cutout_is_rgba_at_the_input_size(astronaut, tmp_path):
    remove_background.fn(astronaut, tmp_path)
    out = Image.open(tmp_path / "cutout.png")
    assert out.mode == "RGBA" and out.size == (256, 256)


def test_mask_only_writes_a_greyscale_mask(astronaut, tmp_path):
    remove_background.fn(astronaut, tmp_path, ImageRecipe(remove_background=RemoveBackgroundOptions(mask_only=True)))
    out = Image.open(tmp_path / "cutout.png")
    assert out.mode == "L" and out.size == (256, 256)


def test_solid_background_replaces_transparency(astronaut, tmp_path):
    remove_background.fn(astronaut, tmp_path, ImageRecipe(remove_background=RemoveBackgroundOptions(background="#00ff00")))
    out = np.asarray(Image.open(tmp_path / "cutout.png"))
    assert out.shape == (256, 256, 3)
    assert (out[0, -1] == [0, 255, 0]).all()  # top-right corner is background in this photo


def test_alpha_matting_and_decontamination_produce_a_cutout(astronaut, tmp_path):
    options = RemoveBackgroundOptions(alpha_matting=True, decontaminate=True)
    record = remove_background.fn(astronaut, tmp_path, ImageRecipe(remove_background=options))
    out = Image.open(tmp_path / "cutout.png")
    assert out.mode == "RGBA" and out.size == (256, 256)
    assert record.parameters["alpha_matting"] is True


def test_exif_orientation_is_applied(tmp_path):
    src = tmp_path / "rotated.jpg"
    img = photo("astronaut", (120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(src, exif=exif)
    record = remove_background.fn(src, tmp_path)
    assert Image.open(tmp_path / "cutout.png").size == (80, 120)
    assert record.parameters["exif_orientation_applied"] is True


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "LA", "RGBA", "1", "I;16"])
def test_every_pixel_format_becomes_a_cutout(mode, tmp_path):
    base = photo("chelsea", (90, 60))
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        img = Image.fromarray(arr)
    elif mode == "P":
        img = base.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        img = base.convert(mode)
    src = tmp_path / ("in.tif" if mode == "CMYK" else "in.png")
    src.write_bytes(_encode(img, "TIFF" if mode == "CMYK" else "PNG"))
    assert Image.open(src).mode == mode
    record = remove_background.fn(src, tmp_path)
    out = Image.open(tmp_path / "cutout.png")
    assert out.mode == "RGBA" and out.size == (90, 60)
    assert record.parameters["source_mode"] == mode


def test_sixteen_bit_greyscale_keeps_its_tonal_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (16, 1))
    src = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(src)
    loaded = np.asarray(load_image(src, 10**8).rgb)
    assert loaded[..., 0].min() == 0 and loaded[..., 0].max() == 255


def test_transparent_input_stays_transparent_in_the_cutout(tmp_path):
    img = photo("astronaut", (128, 128)).convert("RGBA")
    alpha = np.full((128, 128), 255, np.uint8)
    alpha[:, :40] = 0  # the left strip was already cut away
    img.putalpha(Image.fromarray(alpha))
    src = tmp_path / "rgba.png"
    img.save(src)
    remove_background.fn(src, tmp_path)
    out_alpha = np.asarray(Image.open(tmp_path / "cutout.png").getchannel("A"))
    assert out_alpha[:, :40].max() == 0


# --- upscale -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cutout(astronaut, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cutout")
    remove_background.fn(astronaut, folder)
    return folder / "cutout.png"


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscaled_size_is_exact(cutout, tmp_path, scale):
    record = upscale.fn(cutout, tmp_path, ImageRecipe(upscale=UpscaleOptions(scale=scale)))
    assert Image.open(tmp_path / "upscaled.png").size == (256 * scale, 256 * scale)
    assert record.model.name == "realesr-animevideov3"
    assert record.parameters["native_scale"] == scale


def test_alpha_edge_survives_upscaling(cutout, tmp_path):
    upscale.fn(cutout, tmp_path, ImageRecipe(upscale=UpscaleOptions(scale=2)))
    big = Image.open(tmp_path / "upscaled.png")
    assert big.mode == "RGBA"
    small_alpha = Image.open(cutout).getchannel("A")
    expected = np.asarray(small_alpha.resize(big.size, Image.Resampling.NEAREST)) > 127
    got = np.asarray(big.getchannel("A"))
    assert iou(got > 127, expected) >= 0.97
    assert got.min() == 0 and got.max() == 255  # still a cutout: fully clear and fully solid parts


def test_no_dark_fringe_at_the_cutout_edge(cutout, tmp_path):
    """Colour under transparent pixels is bled from the subject, so edges don't darken."""
    upscale.fn(cutout, tmp_path, ImageRecipe(upscale=UpscaleOptions(scale=2)))
    big = np.asarray(Image.open(tmp_path / "upscaled.png")).astype(int)
    edge = (big[..., 3] > 20) & (big[..., 3] < 235)
    inner = big[..., 3] == 255
    assert edge.sum() > 100
    assert big[edge][:, :3].mean() > 0.6 * big[inner][:, :3].mean()


def test_tiles_meet_without_seams(tmp_path):
    rgb = np.asarray(photo("coffee", (200, 136)))
    net, _, _ = ncnn_net("realesr-animevideov3", 2, "cpu")
    whole = run_tiled(net, rgb, 2, tile=512, overlap=16).astype(int)
    tiled = run_tiled(net, rgb, 2, tile=48, overlap=16).astype(int)
    assert whole.shape == tiled.shape == (272, 400, 3)
    diff = np.abs(whole - tiled)
    assert diff.mean() < 0.5 and diff.max() <= 8
    # no tile-boundary lines either: differences at tile edges are no larger than elsewhere
    boundary_cols = [x * 2 for x in range(48, 200, 48)]
    assert diff[:, boundary_cols].mean() < 1.0


def test_lanczos_method_needs_no_model(cutout, tmp_path):
    record = upscale.fn(cutout, tmp_path, ImageRecipe(upscale=UpscaleOptions(method="lanczos", scale=4)))
    out = Image.open(tmp_path / "upscaled.png")
    assert out.size == (1024, 1024) and out.mode == "RGBA"
    assert record.model is None and record.tool.name == "pillow"
    assert record.digital_source_type == "algorithmicallyEnhanced"


def test_x4plus_at_scale_2_runs_at_4_and_reduces(tmp_path):
    src = tmp_path / "small.png"
    photo("rocket", (40, 30)).save(src)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    record = upscale.fn(src, out_dir, ImageRecipe(upscale=UpscaleOptions(model="realesrgan-x4plus", scale=2)))
    assert Image.open(out_dir / "upscaled.png").size == (80, 60)
    assert record.parameters["native_scale"] == 4
    assert record.model.files == {
        "realesrgan-x4plus.param": models.get_spec("realesrgan-x4plus").files[0].sha256,
        "realesrgan-x4plus.bin": models.get_spec("realesrgan-x4plus").files[1].sha256,
    }


def test_a_mask_is_resampled_not_hallucinated(astronaut, tmp_path):
    remove_background.fn(astronaut, tmp_path, ImageRecipe(remove_background=RemoveBackgroundOptions(mask_only=True)))
    record = upscale.fn(tmp_path / "cutout.png", tmp_path, ImageRecipe(upscale=UpscaleOptions(scale=2)))
    out = Image.open(tmp_path / "upscaled.png")
    assert out.mode == "L" and out.size == (512, 512)
    assert record.parameters["method"] == "lanczos"


def test_one_pixel_image_upscales(tmp_path):
    src = tmp_path / "dot.png"
    Image.new("RGBA", (1, 1), (200, 10, 10, 255)).save(src)
    upscale.fn(src, tmp_path, ImageRecipe(upscale=UpscaleOptions(scale=4)))
    out = Image.open(tmp_path / "upscaled.png")
    assert out.size == (4, 4)


def test_models_load_once_per_process_and_are_shared_by_every_asset(astronaut, cutout, tmp_path):
    from assetline.tasks.remove_background import rembg_session

    session = rembg_session("u2netp", "cpu")
    net = ncnn_net("realesr-animevideov3", 2, "cpu")[0]
    for i in range(2):
        out = tmp_path / str(i)
        out.mkdir()
        remove_background.fn(astronaut, out)
        upscale.fn(cutout, out)
    assert rembg_session("u2netp", "cpu") is session
    assert ncnn_net("realesr-animevideov3", 2, "cpu")[0] is net


def test_a_requested_gpu_that_is_absent_is_an_error_not_a_fallback(astronaut, tmp_path):
    import onnxruntime

    from assetline.errors import DeviceError

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    with pytest.raises(DeviceError, match="no CUDA provider"):
        remove_background.fn(astronaut, tmp_path, ImageRecipe(device="cuda"))
    assert not (tmp_path / "cutout.png").exists()
