"""The pure cores (imaging, captions, audio windows, video) import without Prefect, and each step reaches them.

Benchmarks and other tools use them as plain libraries; Prefect would cost them
its import time and settings, so not even an indirect import may pull it in.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

CORES = (
    "assetline.imaging",
    "assetline.imaging.alpha",
    "assetline.imaging.scaling",
    "assetline.imaging.tiling",
    "assetline.captions",
    "assetline.captions.cues",
    "assetline.captions.layout",
    "assetline.captions.words",
    "assetline.captions.text",
    "assetline.captions.timing",
    "assetline.captions.writing",
    "assetline.audio_windows",
    "assetline.glossary",
    "assetline.languages",
    "assetline.transcript",
    "assetline.video",
)


def test_the_cores_import_without_prefect():
    # A fresh interpreter: this test process has Prefect loaded already (conftest, other tests).
    check = (
        f"import sys, {', '.join(CORES)}\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_step_tasks_are_thin_layers_over_the_cores():
    """One place per concern: each step uses the core's own function, not a copy of it."""
    from assetline import audio_windows, captions, imaging, video

    # By module path: `assetline.tasks` re-exports the tasks under the modules' own names.
    render_video, subtitles, transcribe, upscale = (
        importlib.import_module(f"assetline.tasks.{name}")
        for name in ("render_video", "subtitles", "transcribe", "upscale")
    )

    assert upscale.native_scale is imaging.native_scale and upscale.upscale_with_net is imaging.upscale_with_net
    assert render_video.run_tiled is imaging.run_tiled
    assert render_video.probe_picture is video.probe_picture and render_video.render_frames is video.render_frames
    assert subtitles.build_cues is captions.build_cues and subtitles.write_subtitles is captions.write_subtitles
    assert transcribe.audio_windows is audio_windows.audio_windows
