"""``guwah-editor scrub``: a metadata-stripped copy of an attachment, next to the original.

The original stays untouched (it is evidence; its hash is in the custody record). The cleaner
is chosen by magic bytes rather than by the witness's file name. Documents and the two common
still-image formats have pure-Python cleaners (no dependency):

- JPEG: drop APP1 (EXIF incl. GPS, XMP), APP13 (IPTC/Photoshop), every other APPn except
  APP0 (JFIF), APP2 ICC profiles and APP14 (Adobe colour transform), and COM segments; the
  image data (from SOS on) is copied byte for byte. EXIF orientation goes with EXIF.
- PNG: drop tEXt, zTXt, iTXt, eXIf and tIME chunks; every other chunk is copied unchanged.
- PDF: every ``/Info`` dictionary and XMP ``/Metadata`` stream is blanked *in place* with
  spaces of the same length, so cross-reference offsets stay valid. Best effort: metadata
  inside compressed object streams is out of reach; when ``pikepdf`` is installed (optional
  extra) it is used instead and removes both completely.
- Office Open XML (docx/xlsx/pptx …) and OpenDocument: ``docProps/core.xml``, ``app.xml``,
  ``custom.xml`` (or ODF ``meta.xml``) are replaced by empty documents and zip timestamps
  are zeroed; every other part is copied unchanged.

Phone media (HEIC, MP4/MOV/3GP, M4A, Ogg/Opus, AMR, AAC, MP3, WAV) go through exiftool or an
ffmpeg remux (``media.py``). Whatever the cleaner, the copy is made in a private folder next to
the original, then re-read with exiftool (``metadata.py``): if any GPS, device, time, author or
free-text tag is left, or any text value found in the original's metadata still occurs in its
bytes, nothing is written and the editor is told this file cannot be cleaned. Only a copy that
passed is published, with ``app.durable.write_new_file`` (0600, fsynced, never overwriting).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import re
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.durable import write_new_file

from . import media, metadata
from .errors import EditorError

# pikepdf is optional (a full PDF rewrite when installed); without it the pure-Python scrub runs.
_PIKEPDF: Any = importlib.import_module("pikepdf") if importlib.util.find_spec("pikepdf") else None

JPEG_KEEP_APP = {0xE0, 0xE2, 0xEE}  # APP0 JFIF, APP2 ICC, APP14 Adobe
PNG_DROP = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}

CORE_XML = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
    b'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'xmlns:dcterms="http://purl.org/dc/terms/" xmlns:dcmitype="http://purl.org/dc/dcmitype/" '
    b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"></cp:coreProperties>'
)
APP_XML = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'extended-properties" xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'docPropsVTypes"></Properties>'
)
CUSTOM_XML = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'custom-properties" xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'docPropsVTypes"></Properties>'
)
ODF_META = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<office:document-meta xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    b'office:version="1.2"><office:meta/></office:document-meta>'
)
OFFICE_REPLACE = {
    "docProps/core.xml": CORE_XML,
    "docProps/app.xml": APP_XML,
    "docProps/custom.xml": CUSTOM_XML,
    "meta.xml": ODF_META,
}


def scrub_jpeg(data: bytes) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise EditorError("not a JPEG file")
    out = bytearray(b"\xff\xd8")
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise EditorError("the JPEG is malformed (no segment marker where one must be)")
        marker = data[i + 1] if i + 1 < len(data) else None
        if marker is None:
            raise EditorError("the JPEG is truncated")
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            out += data[i : i + 2]
            i += 2
            continue
        if marker == 0xD9:
            out += data[i : i + 2]
            return bytes(out)
        if i + 4 > len(data):
            raise EditorError("the JPEG is truncated")
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2 or i + 2 + length > len(data):
            raise EditorError("the JPEG is malformed (a segment runs past the end)")
        segment = data[i : i + 2 + length]
        if marker == 0xDA:  # start of scan: the rest is image data, copied as is
            out += data[i:]
            return bytes(out)
        drop = marker == 0xFE or (0xE0 <= marker <= 0xEF and marker not in JPEG_KEEP_APP)
        if marker == 0xE2 and not segment[4:].startswith(b"ICC_PROFILE\0"):
            drop = True  # APP2 that is not an ICC profile (e.g. FlashPix) goes too
        if not drop:
            out += segment
        i += 2 + length
    raise EditorError("the JPEG has no image data")


def scrub_png(data: bytes) -> bytes:
    sig = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(sig):
        raise EditorError("not a PNG file")
    out = bytearray(sig)
    i = len(sig)
    while i < len(data):
        if i + 8 > len(data):
            raise EditorError("the PNG is truncated")
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        end = i + 12 + length
        if end > len(data):
            raise EditorError("the PNG is malformed (a chunk runs past the end)")
        if kind not in PNG_DROP:
            out += data[i:end]
        i = end
        if kind == b"IEND":
            return bytes(out)
    raise EditorError("the PNG has no IEND chunk")


_REF = re.compile(rb"/Info\s+(\d+)\s+(\d+)\s+R")
_META_OBJ = re.compile(rb"/Type\s*/Metadata")


def _blank(buf: bytearray, start: int, end: int) -> None:
    """Overwrite buf[start:end] with spaces, keeping line breaks (offsets stay valid)."""
    for k in range(start, end):
        if buf[k] not in (0x0A, 0x0D):
            buf[k] = 0x20


def _outer_dict(buf: bytearray, start: int, limit: int) -> tuple[int, int] | None:
    """Span inside the first ``<< … >>`` at or after ``start`` (nesting-aware, strings skipped)."""
    i = buf.find(b"<<", start, limit)
    if i < 0:
        return None
    depth = 0
    k = i
    while k < limit - 1:
        two = buf[k : k + 2]
        if buf[k] == 0x28:  # ( literal string ): skip with escapes and nesting
            nest, k = 1, k + 1
            while k < limit and nest:
                if buf[k] == 0x5C:
                    k += 2
                    continue
                nest += {0x28: 1, 0x29: -1}.get(buf[k], 0)
                k += 1
            continue
        if two == b"<<":
            depth += 1
            k += 2
            continue
        if two == b">>":
            depth -= 1
            k += 2
            if depth == 0:
                return i + 2, k - 2
            continue
        k += 1
    return None


def scrub_pdf_pure(data: bytes) -> tuple[bytes, list[str]]:
    if not data.lstrip()[:5] == b"%PDF-":
        raise EditorError("not a PDF file")
    buf = bytearray(data)
    notes: list[str] = []
    done = 0
    for num, gen in {(m.group(1), m.group(2)) for m in _REF.finditer(data)}:
        for obj in re.finditer(rb"(?<![0-9])" + num + rb"\s+" + gen + rb"\s+obj\b", data):
            end = data.find(b"endobj", obj.end())
            span = _outer_dict(buf, obj.end(), end if end > 0 else len(buf))
            if span:
                _blank(buf, *span)
                done += 1
    if not done:
        notes.append("no /Info dictionary found in plain objects (may sit in an object stream)")
    for meta in _META_OBJ.finditer(data):
        obj_start = data.rfind(b"obj", 0, meta.start())
        stream = data.find(b"stream", meta.end())
        endstream = data.find(b"endstream", stream)
        if obj_start < 0 or stream < 0 or endstream < 0:
            continue
        header = bytes(buf[obj_start:stream])
        for f in re.finditer(rb"/Filter\s*(/\w+|\[[^\]]*\])", header):
            _blank(buf, obj_start + f.start(), obj_start + f.end())
        body = stream + len(b"stream")
        while body < endstream and buf[body] in (0x0D, 0x0A):
            body += 1
        _blank(buf, body, endstream)
        done += 1
    for ref in re.finditer(rb"/Metadata\s+\d+\s+\d+\s+R", data):
        _blank(buf, ref.start(), ref.end())  # nothing points at the (blank) XMP stream any more
    return bytes(buf), notes


def scrub_pdf(path: Path, out: Path) -> list[str]:
    if _PIKEPDF is not None:
        with _PIKEPDF.open(path) as pdf:
            if "/Info" in pdf.trailer:
                del pdf.trailer["/Info"]
            if "/Metadata" in pdf.Root:
                del pdf.Root["/Metadata"]
            pdf.save(out)
        return ["used pikepdf"]
    data, notes = scrub_pdf_pure(path.read_bytes())
    out.write_bytes(data)
    return [*notes, "pure-Python PDF scrub: best effort (install pikepdf for a full rewrite)"]


def scrub_office(data_path: Path) -> bytes:
    out = io.BytesIO()
    try:
        with zipfile.ZipFile(data_path) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                content = OFFICE_REPLACE.get(info.filename) or src.read(info.filename)
                new = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
                new.compress_type = info.compress_type
                new.external_attr = 0o600 << 16
                dst.writestr(new, content)
    except (zipfile.BadZipFile, ValueError, NotImplementedError) as exc:
        raise EditorError(f"the Office file is not a readable zip: {exc}") from None
    return out.getvalue()


def scrubbed_name(path: Path) -> Path:
    return path.with_name(f"{path.stem}.scrubbed{path.suffix}")


class NotCleaned(EditorError):
    """The tool ran, but the copy still carries identifying metadata: nothing is written."""


@dataclass
class ScrubResult:
    dest: Path
    kind: str
    notes: list[str]
    before: metadata.Findings | None  # None: exiftool is not installed, nothing was read
    after: metadata.Findings | None


Cleaner = Callable[[Path, Path], list[str]]


def _pure(fn: Callable[[bytes], bytes]) -> Cleaner:
    def run(src: Path, out: Path) -> list[str]:
        out.write_bytes(fn(src.read_bytes()))
        return []

    return run


def _office(src: Path, out: Path) -> list[str]:
    with zipfile.ZipFile(src) as z:
        names = set(z.namelist())
    if not names & set(OFFICE_REPLACE):
        raise EditorError(f"{src.name} is a zip archive, not an Office document")
    out.write_bytes(scrub_office(src))
    return []


@dataclass(frozen=True)
class _Plan:
    kind: str
    clean: Cleaner
    needs_exiftool: bool  # without exiftool this copy cannot be checked: refuse
    frames: Callable[[Path], None] | None = None  # a format with no metadata fields at all


def _plan(path: Path) -> _Plan:
    """How to clean and check ``path``, chosen by magic bytes (never by its name)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    pure: list[tuple[bytes, str, Cleaner]] = [
        (b"\xff\xd8\xff", "JPEG", _pure(scrub_jpeg)),
        (b"\x89PNG", "PNG", _pure(scrub_png)),
        (b"%PDF-", "PDF", scrub_pdf),
        (b"PK\x03\x04", "Office/OpenDocument", _office),
    ]
    for magic, kind, run in pure:
        if head.startswith(magic):
            return _Plan(kind, run, False)
    media_kind = media.sniff(path)
    if media_kind is None:
        raise EditorError(
            f"{path.name}: scrubbing supports JPEG, PNG, PDF, Office, HEIC/HEIF, MP4, MOV, 3GP, "
            "M4A, Ogg/Opus, AMR, AAC, MP3 and WAV files; this is none of them"
        )
    pure_path = bool(media_kind.pure) and shutil.which(media_kind.tool) is None
    frames = media.FRAME_CHECKS.get(media_kind.frames)
    return _Plan(
        media_kind.label,
        lambda src, out: media.clean(media_kind, src, out),
        not pure_path and frames is None,
        frames,
    )


def _check_tags(name: str, kind: str, copy: Path) -> metadata.Findings:
    """Re-read the copy with exiftool: any identifying tag left means not clean."""
    after = metadata.read(copy)
    if after.any():
        first = next(t for c in metadata.CATEGORIES for t in after.tags.get(c, []))
        raise NotCleaned(
            f"{name}: the scrubbed {kind} copy still has {after.counts()} metadata "
            f"(e.g. {first[0]}): this file cannot be cleaned here; no copy written"
        )
    return after


def _check_bytes(name: str, kind: str, copy: Path, before: metadata.Findings) -> None:
    """Any text of the original's metadata still in the copy's bytes means not clean."""
    leaked = metadata.still_in(copy, before.texts())
    if leaked:
        raise NotCleaned(
            f"{name}: the scrubbed {kind} copy still contains {leaked[0]!r} (a value of the "
            "original's metadata, also stored elsewhere in the file, e.g. in its audio or video "
            "data): this file cannot be cleaned here; no copy written"
        )


def _before(path: Path, plan: _Plan) -> metadata.Findings | None:
    """The original's findings; None when exiftool is missing and the plan can do without."""
    try:
        found = metadata.read_many([path]).get(path)
    except metadata.ExiftoolMissing as exc:
        if plan.needs_exiftool:
            raise NotCleaned(f"{path.name}: {exc}; no copy written") from None
        return None
    if found is None or (found.error and plan.frames is None):
        why = f" ({found.error})" if found else ""
        raise NotCleaned(f"{path.name}: exiftool cannot read this file{why}: no copy written")
    return found


def _verify(path: Path, plan: _Plan, out: Path, before: metadata.Findings | None,
            notes: list[str]) -> metadata.Findings | None:
    """Check the copy (section 4 of docs/scrubbing.md); return what it still has."""
    if plan.frames is not None:
        plan.frames(out)
        after: metadata.Findings | None = metadata.Findings(FRAMES_CHECKED)
    elif before is not None:
        after = _check_tags(path.name, plan.kind, out)
    else:
        notes.append("the copy was not re-checked: exiftool (Debian package "
                     "libimage-exiftool-perl) is not installed")
        return None
    if before is not None:
        _check_bytes(path.name, plan.kind, out, before)
    return after


FRAMES_CHECKED = "a parse of every frame (the format has no metadata fields)"


def scrub(path: Path) -> ScrubResult:
    """Write ``<stem>.scrubbed<suffix>`` next to ``path`` once it is checked clean."""
    if path.is_symlink() or not path.is_file():
        raise EditorError(f"{path} is not a regular file")
    dest = scrubbed_name(path)
    if dest.exists() or dest.is_symlink():
        raise EditorError(f"{dest} already exists: refusing to overwrite it")
    plan = _plan(path)
    before = _before(path, plan)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".scrub-") as work:
        out = Path(work) / f"copy{path.suffix}"
        notes = plan.clean(path, out)
        if not out.is_file():
            raise NotCleaned(f"{path.name}: the {plan.kind} cleaner wrote nothing: no copy "
                             "written")
        after = _verify(path, plan, out, before, notes)
        with open(out, "rb") as fh:
            write_new_file(dest, fh)
    return ScrubResult(dest, plan.kind, notes, before, after)
