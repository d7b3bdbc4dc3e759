"""Scrubbing what phones record: HEIC/HEIF/AVIF photos, MP4/MOV/3GP video, M4A/Ogg/AMR/AAC/
MP3/WAV audio — with the well-kept tools, chosen format by format (docs/scrubbing.md has the
measurements behind each choice).

- HEIC/HEIF/AVIF: ``exiftool -all=`` deletes the EXIF and XMP items (GPS, make/model, serial,
  times, author) and leaves the coded image alone. Why not ffmpeg: it cannot read HEIF here;
  why not mat2: for HEIC it runs exiftool too, with more dependencies around it.
- Audio and video containers: an ffmpeg *remux* (``-c copy``: not one audio or video sample is
  re-encoded) into the same container with ``-map_metadata -1 -map_chapters -1`` and bitexact
  flags. Only video (not cover art) and audio streams are kept, so timed-metadata tracks
  (Apple ``mebx`` location/motion tracks), subtitles and attachments go. ffmpeg writes zero
  creation times in ``mvhd``/``tkhd``/``mdhd``. Why not exiftool: it cannot delete those
  header dates and cannot write Ogg, WAV, AMR or ADTS at all; why not mat2: it knows only
  ``.mp4`` of the QuickTime family (and runs ffmpeg for it), and no M4A, MOV, 3GP, AMR or AAC.
- WAV and AMR without ffmpeg: simple enough for a pure-Python path (keep only the RIFF ``fmt``,
  ``fact`` and ``data`` chunks; AMR has no metadata at all, so a file whose every byte parses as
  AMR frames is copied as is).

Every copy is checked afterwards by the caller (``scrub.py``), never trusted as written.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import EditorError


class ToolMissing(EditorError):
    """The tool a format needs is not installed (and the format has no pure-Python path)."""


@dataclass(frozen=True)
class MediaKind:
    label: str  # what the editor is told: "HEIC", "MOV", …
    tool: str  # "exiftool" or "ffmpeg"
    muxer: str = ""  # ffmpeg -f value
    extra: tuple[str, ...] = ()  # muxer options
    pure: str = ""  # "wav" / "amr": pure-Python path when ffmpeg is missing
    frames: str = ""  # "amr" / "adts": no metadata fields; the copy is checked frame by frame


_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
                 b"avif", b"avis"}
FFMPEG_REMUX = ("-map", "0:V?", "-map", "0:a?", "-c", "copy", "-map_metadata", "-1",
                "-map_chapters", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
                "-flags:a", "+bitexact")
AMR_NB = (13, 14, 16, 18, 20, 21, 27, 32, 6, 1, 1, 1, 1, 1, 1, 1)  # frame sizes by type
AMR_WB = (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 1, 1, 1, 1, 1, 1)


def _iso_kind(head: bytes) -> MediaKind | None:
    """ISO base media (``ftyp`` box): HEIF images, QuickTime, 3GP, M4A, MP4."""
    size = struct.unpack(">I", head[:4])[0]
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, min(size, len(head)), 4)]
    major = brands[0]
    if major in _IMAGE_BRANDS or (major not in (b"qt  ",) and set(brands) & {b"mif1", b"msf1"}
                                  and not set(brands) & {b"isom", b"mp41", b"mp42"}):
        return MediaKind("HEIC/HEIF image", "exiftool")
    if major == b"qt  ":
        return MediaKind("MOV", "ffmpeg", "mov")
    if major.startswith(b"3g2"):
        return MediaKind("3G2", "ffmpeg", "3g2")
    if major.startswith((b"3gp", b"3ge", b"3gg")):
        return MediaKind("3GP", "ffmpeg", "3gp")
    if major in (b"M4A ", b"M4B ", b"M4P "):
        return MediaKind("M4A", "ffmpeg", "ipod")
    return MediaKind("MP4", "ffmpeg", "mp4")


def _skip_id3(head: bytes) -> bytes:
    if head.startswith(b"ID3") and len(head) >= 10:
        size = 0
        for b in head[6:10]:
            size = (size << 7) | (b & 0x7F)
        return head[10 + size :]
    return head


def sniff(path: Path) -> MediaKind | None:
    """The phone media kind of ``path`` from its first bytes, or None."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[4:8] == b"ftyp" and len(head) >= 12:
        return _iso_kind(head)
    if head.startswith(b"OggS"):
        label = "Ogg Opus" if b"OpusHead" in head[:512] else "Ogg"
        return MediaKind(label, "ffmpeg", "ogg")
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return MediaKind("AMR", "ffmpeg", "amr", pure="amr", frames="amr")
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return MediaKind("WAV", "ffmpeg", "wav", pure="wav")
    body = _skip_id3(head)
    if len(body) >= 2 and body[0] == 0xFF and body[1] & 0xF6 == 0xF0:
        return MediaKind("AAC (ADTS)", "ffmpeg", "adts", frames="adts")
    if len(body) >= 2 and body[0] == 0xFF and body[1] & 0xE0 == 0xE0 and body[1] & 0x06:
        return MediaKind("MP3", "ffmpeg", "mp3", ("-id3v2_version", "0", "-write_xing", "0"))
    return None


def _timeout(path: Path) -> int:
    return 300 + path.stat().st_size // (5 << 20)  # generous: a remux reads at disk speed


def _run(cmd: list[str], path: Path, what: str) -> None:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=_timeout(path), stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise EditorError(f"{path.name}: {what} took too long: no copy written") from None
    if proc.returncode != 0:
        last = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["failed"])[-1]
        raise EditorError(f"{path.name}: {what} cannot clean this file ({last[:200]}): "
                          "no copy written")


def clean(kind: MediaKind, src: Path, out: Path) -> list[str]:
    """Write the cleaned copy of ``src`` to ``out`` (a fresh path); return notes."""
    if kind.tool == "exiftool":
        if shutil.which("exiftool") is None:
            raise ToolMissing(f"{src.name}: cleaning a {kind.label} needs exiftool "
                              "(Debian package libimage-exiftool-perl): no copy written")
        _run(["exiftool", "-q", "-all=", "-o", str(out), "--", str(src)], src, "exiftool")
        return ["cleaned with exiftool -all="]
    if shutil.which("ffmpeg") is None:
        if kind.pure:
            data = (scrub_wav if kind.pure == "wav" else scrub_amr)(src.read_bytes())
            out.write_bytes(data)
            return [f"ffmpeg is not installed: pure-Python {kind.label} path used"]
        raise ToolMissing(f"{src.name}: cleaning a {kind.label} needs ffmpeg (Debian package "
                          "ffmpeg): no copy written")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), *FFMPEG_REMUX, *kind.extra,
           "-f", kind.muxer, str(out)]
    _run(cmd, src, "ffmpeg")
    return ["remuxed with ffmpeg (no re-encoding)"]


def scrub_wav(data: bytes) -> bytes:
    """RIFF/WAVE with only ``fmt``, ``fact`` and ``data``: LIST/INFO, bext, iXML, id3 … go."""
    if not (data.startswith(b"RIFF") and data[8:12] == b"WAVE"):
        raise EditorError("not a WAV file")
    keep, i = [], 12
    while i + 8 <= len(data):
        cid, size = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])[0]
        end = i + 8 + size
        if end > len(data):
            raise EditorError("the WAV is malformed (a chunk runs past the end)")
        if cid in (b"fmt ", b"fact", b"data"):
            keep.append(data[i:end] + (b"\0" if size % 2 else b""))
        i = end + (size % 2)
    if not any(c.startswith(b"fmt ") for c in keep) or not any(c.startswith(b"data") for c in keep):
        raise EditorError("the WAV has no fmt or data chunk")
    body = b"WAVE" + b"".join(keep)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def scrub_amr(data: bytes) -> bytes:
    """AMR storage format has no metadata: accept the file only if every byte is a frame."""
    wide = data.startswith(b"#!AMR-WB\n")
    i = len(b"#!AMR-WB\n") if wide else len(b"#!AMR\n")
    if not wide and not data.startswith(b"#!AMR\n"):
        raise EditorError("not an AMR file")
    sizes = AMR_WB if wide else AMR_NB
    while i < len(data):
        header = data[i]
        if header & 0x83:
            raise EditorError("the AMR holds bytes that are not audio frames: not copied")
        i += sizes[(header >> 3) & 0x0F]
    if i != len(data):
        raise EditorError("the AMR is truncated")
    return data


def check_adts(path: Path) -> None:
    """The file is ADTS frames from its first byte to its last: no ID3, APE or trailing tag."""
    data = path.read_bytes()
    i = 0
    while i < len(data):
        if i + 7 > len(data) or data[i] != 0xFF or data[i + 1] & 0xF6 != 0xF0:
            raise EditorError(f"{path.name}: the AAC copy holds bytes that are not ADTS frames")
        length = ((data[i + 3] & 0x03) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
        if length < 7:
            raise EditorError(f"{path.name}: the AAC copy has a malformed frame")
        i += length
    if i != len(data):
        raise EditorError(f"{path.name}: the AAC copy is truncated")


def check_amr(path: Path) -> None:
    scrub_amr(path.read_bytes())


# Formats with no metadata fields: the copy is proven clean by parsing it (exiftool cannot read
# them: it reports "Unknown file type").
FRAME_CHECKS = {"adts": check_adts, "amr": check_amr}
