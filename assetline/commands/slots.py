"""`assetline slots`: who holds this machine's heavy-step slots now (see `assetline.slots`)."""

from __future__ import annotations

from assetline.commands._common import out


def slots() -> None:
    """Who holds this machine's heavy-step slots now (render_video, transcribe): asset, flow run, pid, since."""
    from assetline.slots import holders, host, slots_dir

    held = holders()
    for h in held:
        out.print(f"{h.step} #{h.slot} on {host()}: {h.describe()}", highlight=False)
    out.print(f"{len(held)} slot(s) held ({slots_dir()})", highlight=False)
