"""Steps: one module each, a Prefect @task over a plain function (`task.fn` reaches it).

A step takes paths and options, writes its output into a folder it is given,
and returns a `StepRecord` for provenance. It never sees Prefect state.
"""

from assetline.tasks.loudness import normalize_loudness
from assetline.tasks.package import package
from assetline.tasks.remove_background import remove_background
from assetline.tasks.subtitles import subtitles
from assetline.tasks.transcribe import transcribe
from assetline.tasks.upscale import upscale

__all__ = ["normalize_loudness", "package", "remove_background", "subtitles", "transcribe", "upscale"]
