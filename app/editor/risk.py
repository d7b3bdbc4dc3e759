"""Flag attachments that could run code, from their bytes and name, without opening them.

The scanner sees the decrypted bytes as they are written (no second pass over large files):
it keeps the first 4 KiB for magic numbers and looks for PDF action keywords across chunk
boundaries. Office files are zips: only their central directory is listed (``zipfile`` does not
extract or run anything) to spot ``vbaProject.bin``. Nothing here renders or executes a file.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

_SCRIPT_EXT = {
    ".sh", ".bash", ".zsh", ".bat", ".cmd", ".ps1", ".psm1", ".vbs", ".vbe", ".js", ".jse",
    ".wsf", ".wsh", ".hta", ".py", ".pyw", ".pl", ".rb", ".php", ".scr", ".com", ".exe",
    ".dll", ".msi", ".jar", ".lnk", ".apk", ".app", ".command", ".desktop", ".reg", ".cpl",
    ".html", ".htm", ".xhtml", ".svg", ".mht", ".url", ".iso", ".img", ".dmg",
}  # fmt: skip
_MACRO_EXT = {".docm", ".dotm", ".xlsm", ".xltm", ".xlam", ".pptm", ".potm", ".ppam", ".ppsm"}
_PDF_KEYS = re.compile(rb"/(JavaScript|JS|OpenAction|Launch|AA|EmbeddedFile|RichMedia)\b")
_PDF_WHY = {
    b"JavaScript": "PDF with JavaScript",
    b"JS": "PDF with JavaScript",
    b"OpenAction": "PDF that acts when opened (/OpenAction)",
    b"Launch": "PDF that can launch programs (/Launch)",
    b"AA": "PDF with automatic actions (/AA)",
    b"EmbeddedFile": "PDF with embedded files",
    b"RichMedia": "PDF with rich media (Flash)",
}
_MAGIC = [
    (b"MZ", "Windows executable (PE)"),
    (b"\x7fELF", "Linux executable (ELF)"),
    (b"\xfe\xed\xfa\xce", "macOS executable (Mach-O)"),
    (b"\xfe\xed\xfa\xcf", "macOS executable (Mach-O)"),
    (b"\xce\xfa\xed\xfe", "macOS executable (Mach-O)"),
    (b"\xcf\xfa\xed\xfe", "macOS executable (Mach-O)"),
    (b"\xca\xfe\xba\xbe", "macOS universal executable or Java class"),
    (b"#!", "script (starts with #!)"),
]
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class RiskScanner:
    """Feed it the file's bytes in order, then call :meth:`finish` with the written path."""

    HEAD = 4096

    def __init__(self, name: str) -> None:
        self.name = name
        self._head = bytearray()
        self._tail = b""
        self._pdf_hits: set[bytes] = set()
        self._ole_vba = False
        self._is_pdf: bool | None = None

    def feed(self, data: bytes | memoryview) -> None:
        if len(self._head) < self.HEAD:
            self._head += bytes(data[: self.HEAD - len(self._head)])
        if self._is_pdf is None and len(self._head) >= 5:
            self._is_pdf = b"%PDF-" in bytes(self._head[:1024])
        interesting = self._is_pdf or self._head.startswith(_OLE)
        if not interesting:
            return
        window = self._tail + bytes(data)
        if self._is_pdf:
            for match in _PDF_KEYS.finditer(window):
                self._pdf_hits.add(match.group(1))
        if self._head.startswith(_OLE) and (b"_VBA_PROJECT" in window or b"VBA\x00" in window):
            self._ole_vba = True
        self._tail = window[-32:]

    def finish(self, path: Path | None = None) -> list[str]:
        risks: list[str] = []
        head = bytes(self._head)
        for magic, what in _MAGIC:
            if head.startswith(magic):
                risks.append(what)
                break
        suffix = Path(self.name).suffix.lower()
        if suffix in _SCRIPT_EXT:
            risks.append(f"risky file type ({suffix})")
        if suffix in _MACRO_EXT:
            risks.append(f"Office file type that carries macros ({suffix})")
        for key in sorted(self._pdf_hits):
            why = _PDF_WHY[key]
            if why not in risks:
                risks.append(why)
        if self._ole_vba:
            risks.append("Office document with macros (VBA)")
        if head.startswith(b"PK\x03\x04") and path is not None:
            try:
                with zipfile.ZipFile(path) as archive:
                    names = [n.lower() for n in archive.namelist()]
            except (zipfile.BadZipFile, OSError, ValueError):
                names = []
            if any(n.endswith("vbaproject.bin") for n in names):
                risks.append("Office document with macros (vbaProject.bin)")
            if any(n.endswith((".exe", ".dll", ".js", ".vbs", ".bat", ".ps1")) for n in names):
                risks.append("archive containing executables or scripts")
        return risks

