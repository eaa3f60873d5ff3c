"""render_video: denoise + upscale + H.264 in one pass, keeping timing, shape, orientation and sound.

Clips are made here with ffmpeg's lavfi sources (testsrc2, sine, color+noise),
tiny so the learned path stays quick on a CPU. Each clip is rendered once per
method and several specifications read the same result.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from assetline.config import DenoiseOptions, EncodeOptions, VideoUpscaleOptions
from assetline.errors import BadInputError, DeviceError
from assetline.ffmpeg import run_ffmpeg
from assetline.tasks.render_video import OUTPUT_NAME, render_video
from assetline.video import DENOISE_FILTERS

METHODS = ["lanczos", "realesrgan"]
TESTSRC = "testsrc2=s=64x48:r=10:d=1"


def make(path: Path, *args: str) -> Path:
    run_ffmpeg([*args, str(path)], path)
    return path


def x264(*extra: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Small sources, each showing one thing the render must keep."""
    d = tmp_path_factory.mktemp("clips")
    c: dict[str, Path] = {}
    c["plain"] = make(d / "plain.mp4", "-f", "lavfi", "-i", TESTSRC, "-f", "lavfi", "-i", "sine=d=1",
                      *x264(), "-c:a", "aac", "-shortest")  # fmt: skip
    c["wide"] = make(d / "wide.mp4", "-f", "lavfi", "-i", "testsrc2=s=96x54:r=10:d=1", *x264())
    c["anamorphic"] = make(d / "anamorphic.mp4", "-f", "lavfi", "-i", TESTSRC, "-vf", "setsar=4/3", *x264())
    # 30 fps for the first second, then 10 fps: real variable frame rate, as phones record.
    c["vfr"] = make(d / "vfr.mp4", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=30:d=2", "-f", "lavfi",
                    "-i", "sine=d=2", "-vf", r"select='lt(n\,30)+not(mod(n\,3))'", "-fps_mode", "vfr",
                    *x264(), "-c:a", "aac")  # fmt: skip
    # Matroska keeps milliseconds: 29.97 fps comes out as gaps of 33 and 34 ms, still a constant rate.
    c["ntsc_mkv"] = make(d / "ntsc.mkv", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=30000/1001:d=1", *x264())
    c["vfr_mkv"] = make(d / "vfr.mkv", "-i", str(c["vfr"]), "-c", "copy")
    # Phone footage stored sideways: a display matrix says "turn -90 degrees to show".
    c["rotated"] = make(d / "rotated.mp4", "-display_rotation", "-90", "-i", str(c["plain"]), "-c", "copy")
    # MPEG-TS starts its clock at 1.4 s; the picture begins half a second after the sound.
    c["late_picture"] = make(d / "late_picture.ts", "-itsoffset", "0.5", "-f", "lavfi", "-i", TESTSRC,
                             "-f", "lavfi", "-i", "sine=d=2", *x264(), "-c:a", "aac")  # fmt: skip
    c["noisy"] = make(d / "noisy.mp4", "-f", "lavfi", "-i", "color=c=gray:s=64x48:r=10:d=1",
                      "-vf", "noise=alls=10:allf=t", *x264("-qp", "0"))  # fmt: skip
    c["silent"] = make(d / "silent.mp4", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac")
    moov_last = make(d / "moov_last.mp4", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=3", *x264(),
                     "-movflags", "-faststart")  # fmt: skip
    moov_first = make(d / "moov_first.mp4", "-i", str(moov_last), "-c", "copy", "-movflags", "+faststart")
    data = moov_last.read_bytes()
    (d / "no_moov.mp4").write_bytes(data[: len(data) // 2])  # the index was to come at the end
    c["no_moov"] = d / "no_moov.mp4"
    data = moov_first.read_bytes()
    (d / "cut_short.mp4").write_bytes(data[: len(data) // 2])  # index intact, half the frames gone
    c["cut_short"] = d / "cut_short.mp4"
    (d / "notes.mp4").write_text("these are not moving pictures\n")
    c["text"] = d / "notes.mp4"
    return c


@pytest.fixture(scope="module")
def rendered(clips, tmp_path_factory):
    """render(clip, method, ...) -> (output path, step records), each combination rendered once."""
    done: dict = {}

    def render(clip: str, method: str = "lanczos", denoise: str = "hqdn3d", **upscale) -> tuple[Path, list]:
        key = (clip, method, denoise, tuple(sorted(upscale.items())))
        if key not in done:
            dest = tmp_path_factory.mktemp(f"{clip}-{method}-{denoise}")
            options = (DenoiseOptions(method=denoise), VideoUpscaleOptions(method=method, **upscale))
            steps = render_video.fn(clips[clip], dest, *options, EncodeOptions(preset="veryfast"))
            done[key] = (dest / OUTPUT_NAME, steps)
        return done[key]

    return render


def video_facts(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return {
            "codec": s.codec_context.name,
            "pix_fmt": s.codec_context.pix_fmt,
            "size": (s.codec_context.width, s.codec_context.height),
            "sar": s.sample_aspect_ratio or Fraction(1),
            "rate": s.average_rate,
            "times": [f.pts * f.time_base for f in frames],  # exact: Fractions
            "rotation": frames[0].rotation,
            "duration": float(s.duration * s.time_base) if s.duration else c.duration / av.time_base,
        }


def audio_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts * p.time_base, bytes(p)) for p in c.demux(audio=0) if p.size]


def first_times(path: Path) -> tuple[float, float]:
    """When the first frame is shown and the first sound plays, in seconds."""
    with av.open(str(path)) as c:
        picture = float(next(c.decode(video=0)).time)
    with av.open(str(path)) as c:
        sound = next(p for p in c.demux(audio=0) if p.size)
        return picture, float(sound.pts * sound.time_base)


def top_level_boxes(path: Path) -> list[str]:
    data, boxes, i = path.read_bytes(), [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        size = struct.unpack(">Q", data[i + 8 : i + 16])[0] if size == 1 else size or len(data) - i
        boxes.append(kind.decode("latin-1"))
        i += size
    return boxes


def test_lanczos_x2_gives_twice_the_size_with_the_same_frame_rate_and_duration(clips, rendered):
    out, _ = rendered("plain")
    source, result = video_facts(clips["plain"]), video_facts(out)
    assert result["size"] == (128, 96)
    assert result["rate"] == source["rate"] == 10
    assert len(result["times"]) == len(source["times"]) == 10
    assert result["duration"] == pytest.approx(source["duration"], abs=0.01)


def test_target_height_keeps_the_aspect_ratio_with_an_even_width(rendered):
    out, steps = rendered("wide", target_height=100)
    width, height = video_facts(out)["size"]
    assert (width, height) == (178, 100)  # 96x54 is 16:9; 177.8 rounds to the even 178
    assert width / height == pytest.approx(96 / 54, rel=0.01)
    assert steps[1].parameters["target_height"] == 100 and "scale" not in steps[1].parameters


def test_the_upscale_stops_at_the_delivery_height(rendered):
    out, steps = rendered("wide", max_height=80)  # 96x54 x2 would be 108 high
    assert video_facts(out)["size"] == (142, 80)  # 96 * 80/54 = 142.2, even
    assert steps[1].parameters["max_height"] == 80 and steps[1].parameters["output_size"] == [142, 80]


def test_a_source_at_the_delivery_height_keeps_its_size(rendered):
    out, steps = rendered("wide", max_height=54)  # "4K stays 4K"
    assert video_facts(out)["size"] == (96, 54)


@pytest.mark.parametrize(("size", "cap", "expected"), [
    ((1920, 1080), 2160, (3840, 2160)),  # 1080p x2 reaches the cap exactly
    ((2560, 1440), 2160, (3840, 2160)),  # 1440p x2 would be 2880p: capped
    ((3840, 2160), 2160, (3840, 2160)),  # 4K stays 4K
    ((4096, 2304), 2160, (4096, 2304)),  # above the cap: never shrunk
    ((1280, 720), None, (2560, 1440)),   # no cap: plain x2
])  # fmt: skip
def test_output_size_caps_the_scale_at_max_height(size, cap, expected):
    from assetline.video import output_size

    assert output_size(*size, VideoUpscaleOptions(scale=2, max_height=cap)) == expected


@pytest.mark.parametrize("method", METHODS)
def test_an_anamorphic_sample_aspect_ratio_survives(clips, rendered, method):
    out, steps = rendered("anamorphic", method)
    assert video_facts(clips["anamorphic"])["sar"] == Fraction(4, 3)
    result = video_facts(out)
    assert result["sar"] == Fraction(4, 3)
    assert result["size"] == (128, 96)
    assert steps[1].parameters["sar"] == "4:3"


@pytest.mark.parametrize("method", METHODS)
def test_variable_frame_rate_keeps_every_frame_timestamp(clips, rendered, method):
    out, steps = rendered("vfr", method)
    source = video_facts(clips["vfr"])["times"]
    gaps = {b - a for a, b in zip(source, source[1:])}
    assert gaps == {Fraction(1, 30), Fraction(1, 10)}  # the source really is VFR
    assert video_facts(out)["times"] == source
    assert steps[1].parameters["source"]["vfr"] is True


@pytest.mark.parametrize(("clip", "varies"), [("plain", False), ("vfr", True), ("ntsc_mkv", False), ("vfr_mkv", True)])
def test_the_record_says_whether_the_frame_rate_varies(clips, rendered, clip, varies):
    out, steps = rendered(clip)
    assert steps[1].parameters["source"]["vfr"] is varies
    assert video_facts(out)["times"] == video_facts(clips[clip])["times"]


@pytest.mark.parametrize("method", METHODS)
def test_rotation_metadata_survives_and_the_picture_stays_stored_as_recorded(clips, rendered, method):
    out, steps = rendered("rotated", method)
    assert video_facts(clips["rotated"])["rotation"] == -90
    result = video_facts(out)
    assert result["rotation"] == -90
    assert result["size"] == (128, 96)  # not turned upright: players turn it, as for the source
    assert steps[1].parameters["source"]["rotation"] == -90


@pytest.mark.parametrize("method", METHODS)
def test_the_audio_is_copied_packet_for_packet(clips, rendered, method):
    out, steps = rendered("vfr", method)
    source = audio_packets(clips["vfr"])
    assert source and audio_packets(out) == source
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
    assert steps[-1].parameters["audio"] == {"copied": ["aac"]}


@pytest.mark.parametrize("method", METHODS)
def test_picture_and_sound_keep_their_offset_when_the_clock_starts_late(clips, rendered, method):
    out, _ = rendered("late_picture", method, denoise="off")
    picture, sound = first_times(clips["late_picture"])
    assert picture - sound == pytest.approx(0.5, abs=0.04)  # the source as made
    out_picture, out_sound = first_times(out)
    assert out_picture - out_sound == pytest.approx(picture - sound, abs=0.001)
    assert out_sound == pytest.approx(0, abs=0.05)  # shifted to start at zero, both together


@pytest.mark.parametrize("method", METHODS)
def test_the_output_is_h264_yuv420p_with_the_index_before_the_media_data(rendered, method):
    out, steps = rendered("plain", method)
    facts = video_facts(out)
    assert (facts["codec"], facts["pix_fmt"]) == ("h264", "yuv420p")
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")
    assert [p.name for p in out.parent.iterdir()] == [OUTPUT_NAME]  # no temporary file left over
    transcode = steps[-1]
    assert transcode.name == "transcode"
    assert {k: transcode.parameters[k] for k in ("codec", "crf", "preset", "pix_fmt", "faststart")} == {
        "codec": "libx264", "crf": 18, "preset": "veryfast", "pix_fmt": "yuv420p", "faststart": True,
    }  # fmt: skip


@pytest.mark.parametrize("denoise", ["hqdn3d", "nlmeans", "off"])
def test_each_denoise_choice_is_recorded_as_the_filter_that_ran(rendered, denoise):
    _, steps = rendered("plain", denoise=denoise)
    names = [s.name for s in steps]
    if denoise == "off":
        assert names == ["upscale", "transcode"]
    else:
        assert names == ["denoise", "upscale", "transcode"]
        assert steps[0].parameters == {"method": denoise, "filter": DENOISE_FILTERS[denoise]}
        assert steps[0].tool.name == "ffmpeg" and steps[0].tool.version
    assert {s.output for s in steps} == {OUTPUT_NAME}
    assert {s.digital_source_type for s in steps} == {"algorithmicallyEnhanced"}
    assert steps[-2].parameters["filter"] == "scale=128:96:flags=lanczos,setsar=1/1"


@pytest.mark.parametrize("method", METHODS)
def test_denoisers_calm_the_grain_of_a_still_grey_scene(clips, rendered, method):
    def grain(path: Path) -> float:
        with av.open(str(path)) as c:
            luma = np.stack([f.to_ndarray(format="gray").astype(float) for f in c.decode(video=0)])
        return float(luma.std(axis=0).mean())  # how much each pixel flickers over time

    untouched = grain(rendered("noisy", method, "off")[0])
    assert grain(rendered("noisy", method, "hqdn3d")[0]) < 0.9 * untouched  # light, by design
    if method == "lanczos":  # nlmeans is the same ffmpeg filter on both paths; once is enough
        assert grain(rendered("noisy", method, "nlmeans")[0]) < 0.5 * untouched


def test_the_learned_path_records_the_model_and_discloses_it(clips, rendered):
    out, steps = rendered("vfr", "realesrgan")
    assert [s.name for s in steps] == ["denoise", "upscale", "transcode"]
    upscale = steps[1]
    assert upscale.digital_source_type == "compositeWithTrainedAlgorithmicMedia"
    assert upscale.model.name == "realesr-animevideov3" and len(upscale.model.sha256) == 64
    assert set(upscale.model.files) == {"realesr-animevideov3-x2.param", "realesr-animevideov3-x2.bin"}
    assert upscale.parameters["output_size"] == [128, 96] and upscale.parameters["native_scale"] == 2
    assert upscale.tool.name == "ncnn"
    assert [s.digital_source_type for s in (steps[0], steps[2])] == ["algorithmicallyEnhanced"] * 2
    result = video_facts(out)
    assert result["size"] == (128, 96)
    assert len(result["times"]) == len(video_facts(clips["vfr"])["times"]) == 40


def test_a_target_height_between_the_model_scales_is_reached_by_resizing_the_net_output(rendered):
    out, steps = rendered("wide", "realesrgan", denoise="off", target_height=100)
    assert video_facts(out)["size"] == (178, 100)
    assert steps[0].parameters["native_scale"] == 2 and steps[0].parameters["resize"]


def test_upscale_off_only_denoises_and_encodes_at_the_source_size(rendered):
    out, steps = rendered("plain", enabled=False)
    assert [s.name for s in steps] == ["denoise", "transcode"]
    assert video_facts(out)["size"] == (64, 48)
    assert steps[-1].parameters["source"]["fps"] == 10


@pytest.mark.parametrize(
    ("clip", "cause"),
    [
        ("no_moov", "moov atom not found"),
        ("cut_short", "truncated or damaged"),
        ("text", "cannot read video"),
        ("silent", "has no video stream"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_unusable_files_are_bad_input_named_in_one_line_and_leave_nothing_behind(clips, tmp_path, clip, cause, method):
    with pytest.raises(BadInputError) as caught:
        render_video.fn(clips[clip], tmp_path, DenoiseOptions(method="off"), VideoUpscaleOptions(method=method))
    message = str(caught.value)
    assert message.startswith(str(clips[clip]) + ": ") and cause in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_cuda_without_a_vulkan_gpu_is_a_device_error_not_a_silent_fallback(clips, tmp_path):
    import ncnn

    if ncnn.get_gpu_count() > 0:
        pytest.skip("this machine has a Vulkan GPU")
    with pytest.raises(DeviceError, match="no Vulkan GPU"):
        render_video.fn(clips["plain"], tmp_path, upscale=VideoUpscaleOptions(method="realesrgan"), device="cuda")
    assert list(tmp_path.iterdir()) == []


PEAK_RSS = """
import json, resource, sys
from pathlib import Path
from assetline.config import DenoiseOptions, EncodeOptions, VideoUpscaleOptions
from assetline.tasks.render_video import render_video
steps = render_video.fn(Path(sys.argv[1]), Path(sys.argv[2]), DenoiseOptions(),
                        VideoUpscaleOptions(method="realesrgan"), EncodeOptions(preset="veryfast"))
print(json.dumps({"frames": steps[-1].parameters["frames"],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_memory_on_the_learned_path_stays_flat_as_the_clip_grows(tmp_path):
    def peak(seconds: int) -> dict:
        clip = make(tmp_path / f"{seconds}s.mp4", "-f", "lavfi", "-i", f"testsrc2=s=64x48:r=25:d={seconds}",
                    "-f", "lavfi", "-i", f"sine=d={seconds}", *x264(), "-c:a", "pcm_s16le")  # fmt: skip
        dest = tmp_path / f"out{seconds}"
        dest.mkdir()
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(clip), str(dest)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # Holding each extra frame's input and output pictures alone would add 250 x 46 kB = 11.5 MB.
    short, long = peak(2), peak(12)
    assert (short["frames"], long["frames"]) == (50, 300)
    assert long["peak_mb"] - short["peak_mb"] < 8, (short, long)
