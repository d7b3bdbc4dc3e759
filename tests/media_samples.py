"""Phone-like media samples with the metadata phones really write, made with the real tools.

Each sample is encoded by ffmpeg (video, audio) or pillow-heif (HEIC), then tagged the way a
phone would: exiftool writes QuickTime Keys/UserData/ItemList atoms (GPS as ``©xyz`` and
``com.apple.quicktime.location.ISO6709``, make/model, serial, creation time, author) and EXIF
in HEIC; formats exiftool cannot write (Ogg, WAV, ADTS AAC, MP3) get the same facts through ffmpeg
(Vorbis comments, RIFF INFO + BWF ``bext``, ID3v2). AMR has no place for metadata at all.

Used by tests/test_editor_scrub_media.py and bench/scrub_tools.py (the docs/scrubbing.md table).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pillow_heif
from PIL import Image

GPS = "39.9042 N, 116.4074 E"  # what a phone would record
MAKE, MODEL, SERIAL = "Apple", "iPhone 12 Pro", "C39XK1Q2P0DF"
AUTHOR = "Aygul Witness"
WHEN = "2024:03:05 14:23:11"
# Needles that must not survive in a scrubbed copy (checked in exiftool -a -G1 output).
NEEDLES = ("39.9042", "39 deg 54", "116.4074", "116 deg 24", MODEL, SERIAL, AUTHOR, "2024:03:05",
           "2024-03-05")
SENSITIVE_GROUPS = ("GPS", "Make", "Model", "Serial", "Author", "Artist", "Creat", "Date")

QUICKTIME_TAGS = [
    f"-Keys:GPSCoordinates={GPS}",
    f"-UserData:GPSCoordinates={GPS}",
    f"-Keys:Make={MAKE}",
    f"-Keys:Model={MODEL}",
    f"-UserData:Make={MAKE}",
    f"-UserData:Model={MODEL}",
    f"-XMP-aux:SerialNumber={SERIAL}",
    f"-Keys:CreationDate={WHEN}+08:00",
    f"-QuickTime:CreateDate={WHEN}",
    f"-QuickTime:ModifyDate={WHEN}",
    f"-QuickTime:TrackCreateDate={WHEN}",
    f"-QuickTime:MediaCreateDate={WHEN}",
    f"-Keys:Author={AUTHOR}",
    f"-ItemList:Artist={AUTHOR}",
    f"-XMP-dc:Creator={AUTHOR}",
]
EXIF_TAGS = [
    "-GPSLatitude=39.9042", "-GPSLatitudeRef=N", "-GPSLongitude=116.4074",
    "-GPSLongitudeRef=E", f"-Make={MAKE}", f"-Model={MODEL}", f"-SerialNumber={SERIAL}",
    f"-DateTimeOriginal={WHEN}", f"-CreateDate={WHEN}", f"-Artist={AUTHOR}",
    f"-XMP-dc:Creator={AUTHOR}",
]
# ffmpeg -metadata for containers exiftool cannot write
FFMPEG_TAGS = [
    "-metadata", f"artist={AUTHOR}", "-metadata", "date=2024-03-05T14:23:11",
    "-metadata", "creation_time=2024-03-05T14:23:11Z", "-metadata", "location=+39.9042+116.4074/",
    "-metadata", f"comment={MODEL} {SERIAL}",
]

VIDEO_IN = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
AUDIO_IN = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]

# name -> (ffmpeg inputs + codec arguments, extra muxer arguments, tagging tool)
FFMPEG_SAMPLES: dict[str, tuple[list[str], list[str], str]] = {
    "clip.mp4": ([*VIDEO_IN, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"], [],
                 "exiftool"),
    "clip.mov": ([*VIDEO_IN, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"], [],
                 "exiftool"),
    "clip.3gp": ([*VIDEO_IN, "-c:v", "h263", "-s", "128x96", "-c:a", "aac", "-ar", "16000",
                  "-ac", "1"], [], "exiftool"),
    "voice.m4a": ([*AUDIO_IN, "-c:a", "aac"], [], "exiftool"),
    "voice.ogg": ([*AUDIO_IN, "-c:a", "libvorbis"], [], "ffmpeg"),
    "voice.opus": ([*AUDIO_IN, "-c:a", "libopus"], [], "ffmpeg"),
    "voice.aac": ([*AUDIO_IN, "-c:a", "aac"], ["-write_id3v2", "1"], "ffmpeg"),
    "voice.mp3": ([*AUDIO_IN, "-c:a", "libmp3lame"], [], "ffmpeg"),
    "voice.wav": ([*AUDIO_IN, "-c:a", "pcm_s16le"], ["-write_bext", "1"], "ffmpeg"),
}


def have_tools() -> bool:
    return all(shutil.which(t) for t in ("ffmpeg", "ffprobe", "exiftool"))


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-2000:]}")


def exiftool_tag(path: Path, tags: list[str]) -> None:
    _run(["exiftool", "-q", "-m", "-overwrite_original", *tags, str(path)])


def make_ffmpeg_sample(folder: Path, name: str) -> Path:
    inputs, muxer, tagger = FFMPEG_SAMPLES[name]
    out = folder / name
    meta = FFMPEG_TAGS if tagger == "ffmpeg" else []
    if name.endswith(".wav"):
        meta = [*meta, "-metadata", f"originator={MODEL}",
                "-metadata", "origination_date=2024-03-05",
                "-metadata", f"coding_history={SERIAL}"]
    _run(["ffmpeg", "-v", "error", "-y", *inputs, *meta, *muxer, "-shortest", str(out)])
    if tagger == "exiftool":
        exiftool_tag(out, QUICKTIME_TAGS)
    return out


def make_heic(folder: Path, name: str = "photo.heic") -> Path:
    """A small HEIC (x265 via pillow-heif) with EXIF GPS/make/model/serial/time/author."""
    img = Image.new("RGB", (64, 48))
    img.putdata([((x * 4) % 256, (y * 5) % 256, 128) for y in range(48) for x in range(64)])
    out = folder / name
    pillow_heif.from_pillow(img).save(out, quality=90)
    exiftool_tag(out, EXIF_TAGS)
    return out


def make_amr(folder: Path, name: str = "voice.amr") -> Path:
    """An AMR-NB file (magic + 50 frames of mode 7, 12.2 kbit/s): the format has no metadata."""
    frame = bytes([0x3C]) + bytes((i * 37) % 251 for i in range(31))
    out = folder / name
    out.write_bytes(b"#!AMR\n" + frame * 50)
    return out


def make_all(folder: Path) -> dict[str, Path]:
    """Every sample, by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {name: make_ffmpeg_sample(folder, name) for name in FFMPEG_SAMPLES}
    made["photo.heic"] = make_heic(folder)
    made["voice.amr"] = make_amr(folder)
    return made


def exiftool_dump(path: Path) -> str:
    """``exiftool -a -G1`` of a file, minus the lines about the file system entry itself."""
    proc = subprocess.run(["exiftool", "-a", "-G1", "-u", str(path)], capture_output=True,
                          text=True, timeout=60)
    return "\n".join(ln for ln in proc.stdout.splitlines()
                     if not ln.startswith(("[System]", "[ExifTool]")))


def leaks(path: Path) -> list[str]:
    """Lines of the exiftool dump that still carry a planted fact."""
    return [ln for ln in exiftool_dump(path).splitlines() if any(n in ln for n in NEEDLES)]


def amr_frames(data: bytes) -> int:
    return (len(data) - 6) // 32 if data.startswith(b"#!AMR\n") else 0

