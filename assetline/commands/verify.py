"""`assetline verify PATHS...`: outputs against their sidecars and Content Credentials, one line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from assetline.commands._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, out


def verify(
    paths: Annotated[list[Path], typer.Argument(help="Outputs, sidecars or output folders.")],
) -> None:
    """Check outputs against their provenance sidecars and Content Credentials; exit 0 only if all hold.

    For each output: its C2PA validation state, whether its signer is trusted
    (the anchors of `assetline keys show`), the chain of ingredients back to
    the original input, the AI disclosure, and that the JSON sidecar agrees
    with the signed manifest, and each earlier version kept under
    `.versions/` against the hash its successor recorded. One line per problem.
    """
    from assetline.provenance import verify_paths

    verdicts = verify_paths(paths)
    failed = [v for v in verdicts if not v.ok]
    for v in verdicts:
        if v.ok:
            c2pa = next((n for n in v.notes if n.startswith("C2PA ")), "")
            out.print(f"[green]ok[/green]     {v.output}" + (f"  ({c2pa})" if c2pa else ""), highlight=False)
            review = v.manifest.review if v.manifest else None
            if review is not None:  # signed with the output: the JSON agrees with the C2PA manifest (checked)
                said = f": {review.comment}" if review.comment else ""
                out.print(f"       approved by {review.by} at {review.at}{said}", highlight=False)
            for note in v.notes:
                if note.startswith("versions: "):  # each earlier version kept, checked against the hash recorded
                    out.print(f"       {note}", highlight=False)
        else:
            for problem in v.problems:
                out.print(f"[red]FAILED[/red] {v.output}: {problem}", highlight=False)
    if not verdicts:
        fail("nothing to verify: no outputs found", EXIT_USAGE)
    out.print(f"{len(verdicts) - len(failed)} of {len(verdicts)} outputs verified")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)
