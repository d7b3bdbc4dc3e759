"""What identifying metadata a file carries, read with exiftool and sorted into what matters.

exiftool (Debian ``libimage-exiftool-perl``) reads every container a phone writes (EXIF, XMP,
QuickTime Keys/UserData/ItemList, Vorbis comments, RIFF INFO/bext, ID3 …), so it is the one
reader: writing our own parsers for all of them would miss what it already knows. Each tag is
sorted by its name into GPS, device, time, author or text (free text such as comments, which
may hold anything); structural tags (sizes, codecs, durations) and tags exiftool derives itself
(groups System, File, ExifTool, Composite, ICC profile headers) are left out.

A zeroed or epoch date ("0000:00:00 00:00:00", 1904/1970/1980-01-01) is what a scrubber
writes where a format demands a date, so it counts as empty.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EditorError

CATEGORIES = ("GPS", "device", "time", "author", "text")
_SKIP_GROUPS = ("System", "File", "ExifTool", "Composite", "ICC", "SourceFile")
_STRUCTURAL = {  # names that match a rule below but describe the stream, not its making
    "HandlerDescription", "HandlerType", "HandlerClass", "HandlerVendorID",
    "SampleGroupDescription", "CopyrightFlag", "TimeScale", "MediaTimeScale", "PreviewTime",
    "PosterTime", "SelectionTime", "CurrentTime", "TimeToSampleTable",
    "CompositionTimeToSample", "TimeReference",
}
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("GPS", re.compile(r"gps|location|iso6709|latitude|longitude|altitude", re.I)),
    ("device", re.compile(
        r"make|model|serial|lens|software|firmware|hostcomputer|originator|encoder|producer|"
        r"contentidentifier|uniqueid|documentid|instanceid|deviceid|bodyid|cameraid|writer",
        re.I)),
    ("author", re.compile(
        r"artist|author|creator|copyright|owner|by-?line|lastmodifiedby|company|manager|"
        r"publisher|credit|rights|composer|performer", re.I)),
    ("time", re.compile(r"date|time", re.I)),
    ("text", re.compile(
        r"comment|description|title|keyword|subject|caption|label|note|album|genre|"
        r"codinghistory|xptitle|userdefined", re.I)),
]
# an unset date as tools write it; used with fullmatch
_EMPTY = re.compile(r"(0000:00:00|1904:01:01|1970:01:01|1980:01:01)[ T]00:00:00([+-]00:00|Z)?")
_USER_KEY = re.compile(r"^\(([^)]{1,64})\) ")
MAX_VALUE = 200  # characters of a value kept for the report


class ExiftoolMissing(EditorError):
    """exiftool is not installed: nothing can be read, so nothing can be promised."""


@dataclass
class Findings:
    """Identifying tags of one file: category -> [(group:tag, value)]."""

    tool: str
    tags: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    error: str = ""  # exiftool's own "Error" for this file: then nothing above can be trusted

    def any(self) -> bool:
        return any(self.tags.values())

    def counts(self) -> str:
        parts = [f"{c} ({len(self.tags[c])})" for c in CATEGORIES if self.tags.get(c)]
        return ", ".join(parts) or "none"

    def texts(self, minimum: int = 6) -> set[str]:
        """Distinctive strings (device, author, text) to look for, byte for byte, in a copy."""
        out = set()
        for cat in ("device", "author", "text"):
            for _name, value in self.tags.get(cat, []):
                if len(value) >= minimum and not value.startswith("(Binary data"):
                    out.add(value)
        return out

    def to_json(self) -> dict[str, object]:
        tags = {c: [list(t) for t in v] for c, v in self.tags.items()}
        return {"tool": self.tool, "tags": tags, "error": self.error}

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> Findings:
        raw = obj.get("tags")
        tags: dict[object, object] = raw if isinstance(raw, dict) else {}
        clean = {str(c): [(str(t[0]), str(t[1])) for t in v if isinstance(t, list) and len(t) == 2]
                 for c, v in tags.items() if c in CATEGORIES and isinstance(v, list)}
        return cls(str(obj.get("tool", "")), clean, str(obj.get("error") or ""))


def category(name: str) -> str | None:
    """The category of a tag name (without its group), or None for a structural tag."""
    for cat, pattern in _RULES:
        if pattern.search(name):
            return cat
    return None


def exiftool_version() -> str:
    exe = shutil.which("exiftool")
    if exe is None:
        raise ExiftoolMissing(
            "exiftool is not installed (Debian package libimage-exiftool-perl): metadata "
            "cannot be read or checked"
        )
    proc = subprocess.run([exe, "-ver"], capture_output=True, text=True, timeout=60)
    return f"exiftool {proc.stdout.strip()}"


def read_many(paths: list[Path]) -> dict[Path, Findings]:
    """Findings for each file exiftool could read, with one run (raises ExiftoolMissing).

    ``-G1:4`` names a repeated tag ``group:CopyN:tag``: plain JSON output would keep only the
    last of two tags with the same name (e.g. two ID3 user-defined texts)."""
    tool = exiftool_version()
    if not paths:
        return {}
    cmd = ["exiftool", "-json", "-a", "-G1:4", "-u", "-charset", "filename=utf8", "--"]
    timeout = 120 + sum(p.stat().st_size for p in paths) // (20 << 20)
    try:
        proc = subprocess.run([*cmd, *map(str, paths)], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EditorError("exiftool took too long to read the metadata") from None
    try:
        records = json.loads(proc.stdout.decode("utf-8", "replace") or "[]",
                             object_pairs_hook=lambda pairs: pairs)
    except ValueError:
        raise EditorError("exiftool's output could not be read") from None
    out: dict[Path, Findings] = {}
    by_name = {str(p): p for p in paths}
    for pairs in records:
        source = next((str(v) for k, v in pairs if k == "SourceFile"), "")
        if source in by_name:
            out[by_name[source]] = _classify(tool, pairs)
    return out


def read(path: Path) -> Findings:
    """Findings for one file; a file exiftool cannot read is an error (never "nothing found")."""
    found = read_many([path]).get(path)
    if found is None or found.error:
        why = f" ({found.error})" if found and found.error else ""
        raise EditorError(f"{path.name}: exiftool cannot read this file{why}: no copy written")
    return found


def _classify(tool: str, pairs: list[tuple[str, object]]) -> Findings:
    found = Findings(tool)
    for key, value in pairs:
        group, _, name = key.rpartition(":")
        if key == "ExifTool:Error":
            found.error = str(value)[:MAX_VALUE]
        if not group or group.startswith(_SKIP_GROUPS) or name in _STRUCTURAL:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        text = text.strip()
        if not text or _EMPTY.fullmatch(text):
            continue
        cat = "GPS" if group.startswith("GPS") else category(name)
        inner = _USER_KEY.match(text) if cat == "text" else None
        if inner:  # ID3 TXXX / user-defined "(key) value": the key says what it is
            cat = category(inner.group(1)) or cat
        if cat is not None:
            found.tags.setdefault(cat, []).append((key, text[:MAX_VALUE]))
    return found


def still_in(path: Path, needles: set[str]) -> list[str]:
    """Which of ``needles`` occur byte for byte (UTF-8 or UTF-16) in the file at ``path``."""
    patterns = {n: (n.encode(), n.encode("utf-16-le"), n.encode("utf-16-be")) for n in needles}
    longest = max((len(p) for ps in patterns.values() for p in ps), default=0)
    hits: set[str] = set()
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            window = tail + chunk
            for needle, forms in patterns.items():
                if needle not in hits and any(f in window for f in forms):
                    hits.add(needle)
            tail = window[-longest:] if longest else b""
    return sorted(hits)
