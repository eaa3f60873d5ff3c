"""Load the models a batch will use before its first asset asks for them, while something else is waited on.

`assetline run` calls this in a thread while its Prefect server starts (about
5 s on 2 cores, the server's own imports): the rembg session, the ncnn net and
the Whisper model are then in `models.sessions` when the first step runs, made
exactly as the step would make them (same loader, same thread count, so the
same cache key). Best effort: a model that fails to load here fails again in
its step, which reports it properly for its asset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from assetline.config import Recipe

log = logging.getLogger(__name__)


def warm_up(recipe: Recipe, kinds: Iterable[str]) -> list[str]:
    """Load what the steps for `kinds` (image, audio, video) will use under `recipe`; the models loaded."""
    loaded = []
    for kind in sorted(set(kinds)):
        for name, load in _loaders(recipe, kind):
            try:
                load()
                loaded.append(name)
            except Exception as exc:  # its step meets it again, and says so for its asset
                log.debug("warm-up of %s skipped: %s", name, exc)
    return loaded


def _loaders(recipe: Recipe, kind: str) -> list[tuple[str, object]]:
    from assetline import models

    if kind == "image":
        image, found = recipe.image, []
        if image.remove_background.enabled:
            from assetline.tasks.remove_background import rembg_session

            found.append((image.remove_background.model, lambda: rembg_session(image.remove_background.model, image.device)))
        if image.upscale.enabled and image.upscale.method == "realesrgan":
            from assetline.imaging.scaling import native_scale
            from assetline.tasks.upscale import ncnn_net

            spec = models.get_spec(image.upscale.model)
            scale = native_scale(spec, image.upscale.scale)
            found.append((image.upscale.model, lambda: ncnn_net(image.upscale.model, scale, image.device)))
        return found
    options = recipe.audio.transcribe if kind == "audio" else recipe.video.transcribe if kind == "video" else None
    if options is None or not options.enabled:
        return []
    from assetline.tasks.transcribe import whisper_model

    threads = options.cpu_threads or models.threads_per_asset()
    return [(options.model, lambda: whisper_model(options.model, options.device, options.compute_type, threads))]
