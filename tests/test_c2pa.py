"""Content Credentials end to end: one real run (a still, speech, a clip), every output signed,
read by c2pa alone, chained across runs, and each kind of tampering caught by `assetline verify`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import REPO, make_clip, photo, run_cli

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

SPEECH = REPO / "tests" / "data" / "arctic_a0007.wav"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


@pytest.fixture(scope="module")
def signed_run(prefect_api, tmp_path_factory):
    """One run over a still, a speech clip and a short video with speech; the tests read what it made."""
    root = tmp_path_factory.mktemp("c2pa")
    inputs = root / "in"
    inputs.mkdir()
    photo("chelsea", (96, 64)).save(inputs / "chelsea.jpg", quality=92)
    shutil.copy(SPEECH, inputs / "speech.wav")
    make_clip(inputs / "interview.mp4")
    result = run_cli("run", str(inputs), "--out", str(root / "out"), api_url=prefect_api, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "out"


def folder(out: Path, stem: str) -> Path:
    (found,) = [p for p in out.iterdir() if p.name.startswith(stem + "-")]
    return found


def tampered(signed_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(signed_run, copy)
    return copy


def failures(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("FAILED")]


def flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- untouched outputs


def test_untouched_outputs_verify_trusted_with_their_chain_and_ai_disclosure(signed_run):
    result = run_cli("verify", str(signed_run), api_url=None)
    assert result.returncode == 0, result.stdout
    assert "11 of 11 outputs verified" in result.stdout  # 2 stills, 4 for speech, 5 for footage (SRT, VTT, TTML)
    oks = [line for line in result.stdout.splitlines() if line.startswith("ok")]
    assert len(oks) == 11 and all("C2PA Trusted" in line for line in oks)
    upscaled = next(line for line in oks if line.split()[1].endswith("upscaled.png"))
    assert "chain: upscaled.png <- cutout.png <- chelsea.jpg" in upscaled
    assert "AI: compositeWithTrainedAlgorithmicMedia" in upscaled


def test_pictures_and_video_embed_their_manifest_text_gets_a_store_beside_it(signed_run, signing_keys):
    names = {p.relative_to(signed_run).as_posix().split("/", 1)[1] for p in signed_run.rglob("*") if p.is_file()}
    assert {"cutout.png", "upscaled.png", "video.mp4"} <= names
    assert not {n for n in names if n.endswith((".png.c2pa", ".mp4.c2pa"))}
    for text in ("transcript.json", "subtitles.srt", "subtitles.vtt"):
        assert f"{text}.c2pa" in names
    secret = "".join((signing_keys / "signer.key").read_text().strip().splitlines()[1:-1]).encode()
    ca_secret = "".join((signing_keys / "ca.key").read_text().strip().splitlines()[1:-1]).encode()
    for path in signed_run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data and secret not in data and ca_secret not in data, path


def test_the_json_sidecar_records_the_signed_file_and_its_signature(signed_run):
    from assetline.storage import sha256_file

    for name in ("upscaled.png", "subtitles.srt", "video.mp4"):
        base = folder(signed_run, "chelsea" if name.endswith(".png") else "interview")
        m = json.loads((base / f"{name}.provenance.json").read_text())
        assert m["output"]["sha256"] == sha256_file(base / name)  # the bytes as signed
        sig = m["signature"]
        assert sig["format"] == "c2pa" and sig["manifest"].startswith("urn:c2pa:")
        assert sig["store"] == ("embedded" if name != "subtitles.srt" else "subtitles.srt.c2pa")
        assert sig["alg"] == "Es256" and sig["signer"] == "assetline development signer"
    up = json.loads((folder(signed_run, "chelsea") / "upscaled.png.provenance.json").read_text())
    cutout = folder(signed_run, "chelsea") / "cutout.png"
    assert up["inputs"][1] == {"path": "cutout.png", "sha256": sha256_file(cutout), "role": "intermediate",
                               "bytes": cutout.stat().st_size}  # the signed cutout it chains to  # fmt: skip


# --------------------------------------------------------------------------- interoperability


def test_c2pa_reader_alone_finds_actions_source_types_and_parent_ingredient(signed_run, signing_keys):
    """Read the outputs with c2pa-python only: no assetline code in the checks."""
    import c2pa

    context = c2pa.Context.from_dict({"trust": {"trust_anchors": (signing_keys / "ca.pem").read_text()},
                                      "verify": {"remote_manifest_fetch": False}})  # fmt: skip

    def read(path: Path) -> tuple[str, dict]:
        if path.suffix in (".png", ".mp4"):
            with c2pa.Reader(str(path), context=context) as reader:
                return reader.get_validation_state(), reader.get_active_manifest()
        store = path.with_name(path.name + ".c2pa").read_bytes()
        with open(path, "rb") as fh, c2pa.Reader("application/c2pa", fh, store, context=context) as reader:
            return reader.get_validation_state(), reader.get_active_manifest()

    def actions(manifest: dict) -> list[dict]:
        (assertion,) = [a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
        return assertion["data"]["actions"]

    def parent(manifest: dict) -> dict:
        (found,) = [i for i in manifest["ingredients"] if i["relationship"] == "parentOf"]
        return found

    still = folder(signed_run, "chelsea")
    state, cutout = read(still / "cutout.png")
    assert state == "Trusted" and cutout["title"] == "cutout.png"
    assert [a["action"] for a in actions(cutout)] == ["c2pa.opened", "c2pa.edited"]
    edited = actions(cutout)[1]
    assert edited["digitalSourceType"] == IPTC + "compositeWithTrainedAlgorithmicMedia"
    assert edited["softwareAgent"]["name"] == "rembg" and edited["parameters"]["model"]["name"] == "u2netp"
    assert len(edited["parameters"]["model"]["sha256"]) == 64
    assert parent(cutout)["title"] == "chelsea.jpg" and "thumbnail" in cutout
    entries = next(a for a in cutout["assertions"] if a["label"] == "cawg.training-mining")["data"]["entries"]
    assert entries["cawg.ai_training"]["use"] == "notAllowed"

    state, upscaled = read(still / "upscaled.png")
    assert state == "Trusted"
    assert [a["action"] for a in actions(upscaled)] == ["c2pa.opened", "c2pa.resized"]
    assert parent(upscaled)["title"] == "cutout.png" and parent(upscaled)["active_manifest"]  # chained

    clip = folder(signed_run, "interview")
    state, video = read(clip / "video.mp4")
    assert state == "Trusted" and "thumbnail" in video
    assert [a["action"] for a in actions(video)] == [
        "c2pa.opened", "c2pa.filtered", "c2pa.resized", "c2pa.transcoded", "c2pa.edited", "c2pa.placed",
    ]  # fmt: skip
    assert parent(video)["title"] == "interview.mp4"
    (component,) = [i for i in video["ingredients"] if i["relationship"] == "componentOf"]
    assert component["title"] == "subtitles.srt" and component["active_manifest"]  # the subtitles, with their manifest

    state, srt = read(clip / "subtitles.srt")
    assert state == "Trusted" and srt["title"] == "subtitles.srt"
    kinds = [(a["action"], a.get("digitalSourceType")) for a in actions(srt)]
    assert kinds[0] == ("c2pa.opened", None)
    assert ("c2pa.converted", IPTC + "trainedAlgorithmicMedia") in kinds  # transcription, then the cues
    assert parent(srt)["title"] == "interview.mp4"

    _, speech = read(folder(signed_run, "speech") / "transcript.json")
    assert parent(speech)["title"] == "speech.wav"
    assert actions(speech)[-1]["parameters"]["model"]["name"] == "whisper-base"  # the default model


# --------------------------------------------------------------------------- tampering


def test_a_flipped_byte_in_a_png_output_is_one_line(signed_run, tmp_path):
    out = tampered(signed_run, tmp_path)
    flip_byte(folder(out, "chelsea") / "upscaled.png")
    result = run_cli("verify", str(out), api_url=None)
    assert result.returncode == 1
    (line,) = failures(result)
    assert "upscaled.png: content does not match the manifest" in line and "altered since it was made" in line


def test_a_flipped_byte_in_an_mp4_output_is_one_line(signed_run, tmp_path):
    out = tampered(signed_run, tmp_path)
    flip_byte(folder(out, "interview") / "video.mp4", at=0.9)
    result = run_cli("verify", str(out), api_url=None)
    assert result.returncode == 1
    (line,) = failures(result)
    assert "video.mp4: content does not match the manifest" in line and "C2PA" in line


def test_an_edited_subtitle_file_is_one_line(signed_run, tmp_path):
    out = tampered(signed_run, tmp_path)
    srt = folder(out, "interview") / "subtitles.srt"
    srt.write_text(srt.read_text().replace("a", "e", 1))  # same size, different words
    result = run_cli("verify", str(out), api_url=None)
    assert result.returncode == 1
    (line,) = [line for line in failures(result) if "subtitles.srt:" in line]
    assert "content does not match the manifest" in line
    assert "assertion.dataHash.mismatch" in line  # C2PA's own binding to the file's bytes caught it too
    # video.mp4 carries those subtitles: its record of them no longer holds either, and says so.
    (other,) = [line for line in failures(result) if "subtitles.srt:" not in line]
    assert "video.mp4: intermediate input subtitles.srt has changed" in other


def test_an_edited_json_sidecar_is_one_line(signed_run, tmp_path):
    out = tampered(signed_run, tmp_path)
    sidecar = folder(out, "chelsea") / "upscaled.png.provenance.json"
    m = json.loads(sidecar.read_text())
    m["ai_disclosure"]["ai_generated_content"] = False  # hide the AI involvement
    sidecar.write_text(json.dumps(m, indent=2))
    result = run_cli("verify", str(out), api_url=None)
    assert result.returncode == 1
    (line,) = failures(result)
    assert "upscaled.png: JSON sidecar disagrees with its signed C2PA manifest at ai_disclosure.ai_generated_content" in line


@pytest.mark.unchecked_subtitles  # swaps one output for another on purpose (an SRT where the VTT was)
@pytest.mark.parametrize("what", ["file", "file+sidecars"])
def test_an_output_replaced_by_another_output_of_the_run_is_one_line(signed_run, tmp_path, what):
    """An attacker copies cutout.png over upscaled.png (and, the thorough one, its sidecars too)."""
    out = tampered(signed_run, tmp_path)
    still, clip = folder(out, "chelsea"), folder(out, "interview")
    shutil.copy(still / "cutout.png", still / "upscaled.png")
    shutil.copy(clip / "subtitles.srt", clip / "subtitles.vtt")
    if what == "file+sidecars":
        shutil.copy(still / "cutout.png.provenance.json", still / "upscaled.png.provenance.json")
        for suffix in (".c2pa", ".provenance.json"):
            shutil.copy(clip / f"subtitles.srt{suffix}", clip / f"subtitles.vtt{suffix}")
    result = run_cli("verify", str(out), api_url=None)
    assert result.returncode == 1
    lines = failures(result)
    assert len(lines) == 2, result.stdout
    assert "upscaled.png: replaced by another output of the run: this is 'cutout.png'" in lines[0] + lines[1]
    assert "subtitles.vtt: replaced by another output of the run: this is 'subtitles.srt'" in lines[0] + lines[1]


def test_outputs_signed_outside_the_trust_anchors_fail_one_line_each(signed_run, tmp_path):
    """Verified against another CA: every output's signer is outside the anchors."""
    from assetline.keys import init_keys

    other = init_keys(tmp_path / "other-ca")
    result = run_cli("verify", str(folder(signed_run, "chelsea")), api_url=None,
                     env={"ASSETLINE_TRUST_ANCHORS": str(other / "ca.pem")})  # fmt: skip
    assert result.returncode == 1
    lines = failures(result)
    assert len(lines) == 2 and all("signed by a key outside the trust anchors" in line for line in lines)


def test_a_manifest_re_signed_with_a_key_outside_the_trust_anchors_is_one_line(signed_run, tmp_path, monkeypatch):
    """A forger re-signs an edited transcript with their own CA and rewrites its sidecars to match."""
    from assetline.keys import init_keys, signing_key
    from assetline.provenance import read_manifest, sidecar_for, write_manifest
    from assetline.provenance.signing import ContentSigner

    out = tampered(signed_run, tmp_path)
    transcript = folder(out, "speech") / "transcript.json"
    transcript.write_text(transcript.read_text().replace("superlative", "superb"))
    manifest = read_manifest(sidecar_for(transcript))
    monkeypatch.setenv("ASSETLINE_KEYS", str(init_keys(tmp_path / "forger")))
    forged, _ = signing_key(create=False)
    write_manifest(transcript, manifest, ContentSigner(forged, None))
    monkeypatch.undo()  # verify under the session's anchors again
    result = run_cli("verify", str(transcript), api_url=None)
    assert result.returncode == 1
    (line,) = failures(result)
    assert "transcript.json: signed by a key outside the trust anchors" in line


# --------------------------------------------------------------------------- chaining and the recipe


def test_processing_an_output_again_chains_to_its_manifest(signed_run, prefect_api, tmp_path, signing_keys):
    """upscaled.png as a new input: the new cutout's parent ingredient carries the first manifest."""
    import c2pa

    first = folder(signed_run, "chelsea") / "upscaled.png"
    result = run_cli("run", str(first), "--out", str(tmp_path / "out"), "--set", "image.upscale.enabled=false",
                     "--set", "provenance.training_mining=constrained", api_url=prefect_api)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    again = folder(tmp_path / "out", "upscaled") / "cutout.png"
    context = c2pa.Context.from_dict({"trust": {"trust_anchors": (signing_keys / "ca.pem").read_text()}})
    with c2pa.Reader(str(first), context=context) as reader:
        first_label = reader.get_active_manifest()["label"]
    with c2pa.Reader(str(again), context=context) as reader:
        assert reader.get_validation_state() == "Trusted"
        manifest = reader.get_active_manifest()
        (parent,) = [i for i in manifest["ingredients"] if i["relationship"] == "parentOf"]
        assert parent["title"] == "upscaled.png" and parent["active_manifest"] == first_label
        carried = reader.get_manifest(first_label)
        assert carried["title"] == "upscaled.png"
        assert [i["title"] for i in carried["ingredients"] if i["relationship"] == "parentOf"] == ["cutout.png"]
        mining = next(a for a in manifest["assertions"] if a["label"] == "cawg.training-mining")
        assert mining["data"]["entries"]["cawg.data_mining"]["use"] == "constrained"  # from the recipe
    verified = run_cli("verify", str(again), api_url=None)
    assert verified.returncode == 0, verified.stdout
    assert "chain: cutout.png <- upscaled.png <- cutout.png <- chelsea.jpg" in verified.stdout


def test_the_training_mining_setting_is_part_of_every_kind_s_recipe_hash():
    from assetline.recipes import load_recipe

    base, allowed = load_recipe(None), load_recipe(None, ["provenance.training_mining=allowed"])
    for kind in ("image", "audio", "video"):
        assert base.section_sha256(kind) != allowed.section_sha256(kind)
    with pytest.raises(Exception, match="provenance.training_mining"):
        load_recipe(None, ["provenance.training_mining=maybe"])
