"""guwah-editor scrub on what phones record, through the real CLI and the real tools.

Samples are made here (tests/media_samples.py: ffmpeg for video and audio, pillow-heif for
HEIC) and tagged with exiftool or ffmpeg with GPS, make/model, serial, creation time and
author. After scrubbing, ``exiftool -a -G1`` finds none of them in the copy, the copy still
decodes (ffmpeg / pillow-heif), and the original's SHA-256 is unchanged. Then: the paths
where a tool is missing, a file whose metadata hides in its media data too (refused, no
copy), and the review index showing metadata before and after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import media_samples as ms
import pillow_heif
import pytest
from roundtrip_helper import run_editor
from test_editor_review import Env, env  # noqa: F401  (fixture)

from app.editor import media

PACKAGES = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "exiftool": "libimage-exiftool-perl"}
SENSITIVE_TAGS = ("GPS", "Make", "Model", "Serial", "Author", "Artist", "Creator", "Originator",
                  "Comment", "Location")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    for tool, package in PACKAGES.items():
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: apt-get install {package}")
    made = ms.make_all(tmp_path_factory.mktemp("samples"))
    return {name: path.read_bytes() for name, path in made.items()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decodes(path: Path) -> str:
    """A description of the decoded content (raises if it does not decode)."""
    if path.suffix == ".heic":
        img = pillow_heif.open_heif(str(path)).to_pillow()
        img.load()
        return f"image {img.size}"
    proc = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null",
                           "-"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return probe.stdout


def tag_lines(path: Path) -> list[str]:
    """exiftool -a -G1 lines naming a sensitive tag, or a date that is not zeroed."""
    out = []
    for line in ms.exiftool_dump(path).splitlines():
        name, _, value = line.partition(": ")
        if any(t in name for t in SENSITIVE_TAGS) and value.strip():
            out.append(line)
        elif "Date" in name and value.strip() and not value.startswith("0000:00:00"):
            out.append(line)
    return out


@pytest.mark.parametrize("name", [*sorted(ms.FFMPEG_SAMPLES), "photo.heic", "voice.amr"])
def test_scrubbed_copy_has_no_metadata_and_still_decodes(
    tmp_path: Path, samples: dict[str, bytes], name: str
) -> None:
    data = samples[name]
    original = tmp_path / f"file-1_{name}"
    original.write_bytes(data)
    original.chmod(0o400)  # as import leaves it: evidence, read-only is fine
    planted = ms.leaks(original)
    if name != "voice.amr":  # AMR has no place for metadata
        assert planted, "the sample must carry the planted metadata"
    proc = run_editor("scrub", str(original))
    copy = original.with_name(f"file-1_{Path(name).stem}.scrubbed{Path(name).suffix}")
    assert f"copy written to {copy}" in proc.stdout.replace("\n", "")
    assert sha(original.read_bytes()) == sha(data)
    assert ms.leaks(copy) == []
    assert tag_lines(copy) == [], tag_lines(copy)
    raw = copy.read_bytes()  # exiftool cannot read every format (ADTS, AMR): bytes too
    for text in (ms.MODEL, ms.SERIAL, ms.AUTHOR, "ID3", "LIST", "bext"):
        assert text.encode() not in raw, text
    assert decodes(copy) == decodes(original)
    assert copy.stat().st_mode & 0o777 == 0o600
    assert "left in the copy: none" in proc.stdout
    if planted:
        assert "found in the original:" in proc.stdout and "author" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([original.name, copy.name])


def test_heic_copy_keeps_the_picture(tmp_path: Path, samples: dict[str, bytes]) -> None:
    original = tmp_path / "IMG_0001.heic"
    original.write_bytes(samples["photo.heic"])
    run_editor("scrub", str(original))
    before = pillow_heif.open_heif(str(original)).to_pillow()
    after = pillow_heif.open_heif(str(tmp_path / "IMG_0001.scrubbed.heic")).to_pillow()
    assert before.size == after.size and before.tobytes() == after.tobytes()


def _path_with(tmp_path: Path, *tools: str) -> dict[str, str]:
    """An environment whose PATH holds only ``tools``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return {"PATH": str(bin_dir)}


def test_without_exiftool_media_is_refused(tmp_path: Path, samples: dict[str, bytes]) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(samples["clip.mp4"])
    proc = run_editor("scrub", str(clip), check=False, env=_path_with(tmp_path, "ffmpeg"))
    assert proc.returncode == 1
    assert "libimage-exiftool-perl" in proc.stderr and "no copy written" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name != "bin"] == ["clip.mp4"]


def test_without_ffmpeg_wav_and_amr_take_the_pure_path(
    tmp_path: Path, samples: dict[str, bytes]
) -> None:
    only_exiftool = _path_with(tmp_path, "exiftool")
    for name in ("voice.wav", "voice.amr"):
        original = tmp_path / name
        original.write_bytes(samples[name])
        proc = run_editor("scrub", str(original), env=only_exiftool)
        assert "pure-Python" in proc.stderr
        copy = tmp_path / name.replace(".", ".scrubbed.")
        assert ms.leaks(copy) == [] and tag_lines(copy) == []
        assert decodes(copy) == decodes(original)
        assert sha(original.read_bytes()) == sha(samples[name])
    clip = tmp_path / "clip.mov"
    clip.write_bytes(samples["clip.mov"])
    proc = run_editor("scrub", str(clip), check=False, env=only_exiftool)
    assert proc.returncode == 1 and "needs ffmpeg" in proc.stderr
    assert not (tmp_path / "clip.scrubbed.mov").exists()


def test_metadata_hidden_in_the_media_data_is_refused(tmp_path: Path) -> None:
    """The serial is in the RIFF INFO comment *and* in the PCM samples: the remux removes the
    tag but copies the samples, so the copy is not clean and must not be written."""
    raw = tmp_path / "pcm.raw"
    raw.write_bytes((b"\0" * 400 + f"{ms.MODEL} {ms.SERIAL}".encode()) * 20)
    wav = tmp_path / "voice.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "s16le", "-ar", "8000", "-ac", "1", "-i",
                    str(raw), "-metadata", f"comment={ms.MODEL} {ms.SERIAL}", str(wav)],
                   check=True)
    before = sha(wav.read_bytes())
    proc = run_editor("scrub", str(wav), check=False)
    assert proc.returncode == 1, proc.stdout
    assert "still contains" in proc.stderr and "no copy written" in proc.stderr
    assert not (tmp_path / "voice.scrubbed.wav").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert sha(wav.read_bytes()) == before


def test_damaged_video_is_one_line_and_leaves_nothing(tmp_path: Path,
                                                      samples: dict[str, bytes]) -> None:
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(samples["clip.mp4"][:40] + os.urandom(300))
    proc = run_editor("scrub", str(broken), check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "no copy written" in proc.stderr or "could not read" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_review_index_shows_metadata_before_and_after(env: Env,  # noqa: F811
                                                      samples: dict[str, bytes]) -> None:
    files = [("IMG_0001.HEIC", samples["photo.heic"]), ("clip.mov", samples["clip.mov"])]
    env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("see", files))]))
    sub = env.sub_dir("s1")
    index = (env.review / "index.html").read_text()
    assert index.count("Metadata found:") == 2
    assert "39 deg 54" in index and ms.SERIAL in index and ms.AUTHOR in index
    assert "no scrubbed copy yet" in index
    assert (sub / "metadata.json").is_file()
    heic = sub / "file-1_IMG_0001.HEIC"
    proc = run_editor("scrub", str(heic))
    assert "Updated" in proc.stdout
    index = (env.review / "index.html").read_text()
    assert "file-1_IMG_0001.scrubbed.HEIC" in index
    assert "no GPS, device, time or author tags (exiftool" in index
    assert index.count("no scrubbed copy yet") == 1  # the clip is not scrubbed yet
    assert "<script" not in index.lower()
    # a submission without metadata.json (older import) gets it on "guwah-editor index"
    (sub / "metadata.json").unlink()
    proc = run_editor("index", "--review", str(env.review))
    assert "Read the metadata of 1 submission(s)" in proc.stdout
    again = (env.review / "index.html").read_text()
    assert again == index  # the same findings, the scrubbed copy's included


def test_frame_formats_with_anything_else_are_refused(tmp_path: Path,
                                                      samples: dict[str, bytes]) -> None:
    """AAC (ADTS) and AMR have no metadata fields and exiftool cannot read them: their copies
    are checked by parsing every frame, so a tag or junk after the frames is caught."""


    run_editor("scrub", str(_write(tmp_path, "voice.aac", samples["voice.aac"])))
    clean = (tmp_path / "voice.scrubbed.aac").read_bytes()
    assert clean[:2] in (b"\xff\xf1", b"\xff\xf9")
    media.check_adts(tmp_path / "voice.scrubbed.aac")
    for name, data, check in [
        ("tagged.aac", clean + b"TAG" + ms.AUTHOR.encode().ljust(125, b"\0"), media.check_adts),
        ("id3.aac", b"ID3\x04\x00\x00\x00\x00\x00\x00" + clean, media.check_adts),
        ("junk.amr", samples["voice.amr"] + ms.SERIAL.encode(), media.check_amr),
    ]:
        with pytest.raises(media.EditorError):
            check(_write(tmp_path, name, data))


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_import_without_exiftool_still_imports_and_says_so(env: Env,  # noqa: F811
                                                           samples: dict[str, bytes]) -> None:
    files = [("IMG_0001.HEIC", samples["photo.heic"])]
    bundle = env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("see", files))])
    run_editor("import", str(bundle), "--review", str(env.review), "--keyring",
               str(env.keyring), "--passphrase-file", str(env.passfile),
               env={"PATH": str(env.tmp / "empty-bin")})
    index = (env.review / "index.html").read_text()
    assert "metadata not read: exiftool is not installed" in index
    assert (env.sub_dir("s1") / "file-1_IMG_0001.HEIC").read_bytes() == samples["photo.heic"]
    # once exiftool is there, "index" reads what could not be read at import
    proc = run_editor("index", "--review", str(env.review))
    assert "Read the metadata of 1 submission(s)" in proc.stdout
    assert "39 deg 54" in (env.review / "index.html").read_text()
