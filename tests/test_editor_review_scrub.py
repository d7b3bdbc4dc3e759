"""guwah-editor scrub: real sample files with real metadata; the copy loses it, keeps the data.

JPEG with an EXIF GPS block (hand-built TIFF structure), XMP and a comment; PNG with tEXt,
iTXt, zTXt, eXIf and tIME; a docx zip with author/company in docProps; a PDF with an /Info
dictionary and an XMP stream. When exiftool is installed it double-checks the result.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest
from roundtrip_helper import run_editor

SECRET = b"Secret Camera Owner"


def _seg(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def exif_with_gps() -> bytes:
    """A little-endian TIFF with IFD0 -> GPS IFD holding GPSLatitudeRef 'N' and a latitude."""
    # IFD0 at 8: 2 entries (Artist, GPSInfo pointer)
    artist = SECRET + b"\0"
    ifd0_off = 8
    ifd0_size = 2 + 2 * 12 + 4
    artist_off = ifd0_off + ifd0_size
    gps_off = artist_off + len(artist)
    gps_size = 2 + 2 * 12 + 4
    lat_off = gps_off + gps_size
    tiff = b"II*\0" + struct.pack("<I", ifd0_off)
    tiff += struct.pack("<H", 2)
    tiff += struct.pack("<HHII", 0x013B, 2, len(artist), artist_off)  # Artist
    tiff += struct.pack("<HHII", 0x8825, 4, 1, gps_off)  # GPS IFD pointer
    tiff += struct.pack("<I", 0)
    tiff += artist
    tiff += struct.pack("<H", 2)
    tiff += struct.pack("<HHI4s", 0x0001, 2, 2, b"N\0\0\0")  # GPSLatitudeRef
    tiff += struct.pack("<HHII", 0x0002, 5, 3, lat_off)  # GPSLatitude (3 rationals)
    tiff += struct.pack("<I", 0)
    tiff += struct.pack("<6I", 43, 1, 48, 1, 1234, 100)
    return b"Exif\0\0" + tiff


SCAN = bytes(range(256)) * 8  # stand-in entropy-coded data (copied byte for byte)


def sample_jpeg() -> bytes:
    dqt = _seg(0xDB, b"\x00" + bytes(range(1, 65)))
    sof = _seg(0xC0, b"\x08\x00\x10\x00\x10\x01\x01\x11\x00")
    dht = _seg(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00")
    icc = _seg(0xE2, b"ICC_PROFILE\0\x01\x01" + b"icc-data")
    return (
        b"\xff\xd8"
        + _seg(0xE0, b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + _seg(0xE1, exif_with_gps())
        + _seg(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>" + SECRET + b"</x:xmpmeta>")
        + _seg(0xED, b"Photoshop 3.0\0" + SECRET)
        + _seg(0xFE, b"comment: " + SECRET)
        + icc + dqt + sof + dht
        + _seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + SCAN
        + b"\xff\xd9"
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def sample_png() -> bytes:
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    idat = _chunk(b"IDAT", zlib.compress(raw))
    return (
        b"\x89PNG\r\n\x1a\n" + ihdr
        + _chunk(b"tEXt", b"Author\0" + SECRET)
        + _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(SECRET))
        + _chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + SECRET)
        + _chunk(b"eXIf", exif_with_gps()[6:])
        + _chunk(b"tIME", b"\x07\xe9\x01\x02\x03\x04\x05")
        + idat + _chunk(b"IEND", b"")
    )


def sample_docx() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("_rels/.rels", "<Relationships/>")
        z.writestr("word/document.xml", "<w:document>the body text stays</w:document>")
        z.writestr("docProps/core.xml", "<cp:coreProperties><dc:creator>" + SECRET.decode()
                   + "</dc:creator><cp:lastModifiedBy>" + SECRET.decode()
                   + "</cp:lastModifiedBy></cp:coreProperties>")
        z.writestr("docProps/app.xml", "<Properties><Company>" + SECRET.decode()
                   + "</Company></Properties>")
    return buf.getvalue()


def sample_pdf() -> bytes:
    xmp = b"<?xpacket?><x:xmpmeta><dc:creator>" + SECRET + b"</dc:creator></x:xmpmeta>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Metadata 5 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
        b"<< /Length 35 >>\nstream\nBT /F1 12 Tf 10 10 Td (Hi) Tj ET\nendstream",
        b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n" % len(xmp) + xmp
        + b"\nendstream",
        b"<< /Author (" + SECRET + b") /Producer (Leaky \\(v1\\)) /Title <53656372> >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def _segments(jpeg: bytes) -> list[int]:
    markers, i = [], 2
    while jpeg[i + 1] != 0xDA:
        markers.append(jpeg[i + 1])
        i += 2 + struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
    return markers


def _scrub(tmp_path: Path, name: str, data: bytes) -> tuple[Path, Path]:
    sub = tmp_path / "review" / "2026-11-26_abc"
    sub.mkdir(parents=True, exist_ok=True)
    original = sub / name
    original.write_bytes(data)
    proc = run_editor("scrub", str(original))
    out = next(p for p in sub.iterdir() if ".scrubbed" in p.name and p.name.startswith(
        original.stem + ".scrubbed"))
    assert str(out) in proc.stdout.replace("\n", "")
    assert original.read_bytes() == data  # evidence untouched
    return original, out


def _exiftool(path: Path) -> str:
    if not shutil.which("exiftool"):
        return ""
    return subprocess.run(["exiftool", "-a", "-G1", str(path)], capture_output=True,
                          text=True).stdout


def test_jpeg_loses_exif_gps_xmp_iptc_comment_but_keeps_image(tmp_path: Path) -> None:
    data = sample_jpeg()
    assert "GPS" in _exiftool(_scrub(tmp_path, "raw.jpg", data)[0]) or not shutil.which(
        "exiftool")
    _, out = _scrub(tmp_path, "photo.jpg", data)
    clean = out.read_bytes()
    assert SECRET not in clean and b"Exif" not in clean and b"xmpmeta" not in clean
    assert _segments(clean) == [0xE0, 0xE2, 0xDB, 0xC0, 0xC4]  # JFIF, ICC, tables kept
    scan_at = data.index(b"\xff\xda")
    assert clean.endswith(data[scan_at:])  # image data byte for byte
    meta = _exiftool(out)
    assert "GPS" not in meta and "Artist" not in meta and SECRET.decode() not in meta


def test_png_loses_text_exif_time_chunks(tmp_path: Path) -> None:
    data = sample_png()
    _, out = _scrub(tmp_path, "shot.png", data)
    clean = out.read_bytes()
    assert SECRET not in clean and b"tEXt" not in clean and b"tIME" not in clean
    assert b"eXIf" not in clean and b"iTXt" not in clean and b"zTXt" not in clean
    assert clean == b"\x89PNG\r\n\x1a\n" + data[8:33] + data[data.index(b"IDAT") - 4:]
    meta = _exiftool(out)
    assert SECRET.decode() not in meta and "GPS" not in meta


def test_docx_docprops_are_emptied(tmp_path: Path) -> None:
    _, out = _scrub(tmp_path, "letter.docx", sample_docx())
    with zipfile.ZipFile(out) as z:
        assert SECRET.decode() not in z.read("docProps/core.xml").decode()
        assert SECRET.decode() not in z.read("docProps/app.xml").decode()
        assert z.read("word/document.xml") == b"<w:document>the body text stays</w:document>"
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in z.infolist())
        assert z.testzip() is None


def test_pdf_info_and_xmp_are_blanked(tmp_path: Path) -> None:
    data = sample_pdf()
    _, out = _scrub(tmp_path, "doc.pdf", data)
    clean = out.read_bytes()
    assert SECRET not in clean and b"Leaky" not in clean and b"53656372" not in clean
    assert len(clean) == len(data)  # blanked in place: xref offsets stay valid
    assert b"(Hi) Tj" in clean  # page content untouched
    meta = _exiftool(out)
    assert SECRET.decode() not in meta and "Leaky" not in meta
    if shutil.which("qpdf"):
        assert subprocess.run(["qpdf", "--check", str(out)], capture_output=True).returncode == 0


def test_scrub_refuses_unknown_types_and_never_overwrites(tmp_path: Path) -> None:
    sub = tmp_path / "s"
    sub.mkdir()
    (sub / "notes.txt").write_text("plain")
    proc = run_editor("scrub", str(sub / "notes.txt"), check=False)
    assert proc.returncode == 1 and "supports JPEG, PNG, PDF, Office, HEIC" in proc.stderr
    (sub / "a.png").write_bytes(sample_png())
    run_editor("scrub", str(sub / "a.png"))
    proc = run_editor("scrub", str(sub / "a.png"), check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    (sub / "link.png").symlink_to(sub / "a.png")
    proc = run_editor("scrub", str(sub / "link.png"), check=False)
    assert proc.returncode == 1 and "not a regular file" in proc.stderr


@pytest.mark.parametrize("bad", [b"\xff\xd8\xff\xe1\xff\xff", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_scrub_of_damaged_images_is_one_line(tmp_path: Path, bad: bytes) -> None:
    f = tmp_path / "broken.bin"
    f.write_bytes(bad)
    proc = run_editor("scrub", str(f), check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*scrubbed*"))
