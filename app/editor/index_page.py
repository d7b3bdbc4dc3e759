"""The review folder's ``index.html``: by desk, then by day (newest first), then quarantine.

A static page (templates/index.html) read on the offline laptop: no script, a Content
Security Policy that loads nothing, every string from a witness or a bundle escaped by Jinja's
autoescape, relative links only. This module turns the custody records into rows; the template
owns the markup. Rewritten after every import, scrub and ``guwah-editor index``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from app.durable import replace_file

from . import metareport, quarantine, routine
from .layout import CUSTODY, testimony_fields

INDEX = "index.html"
EXCERPT = 400

_ENV = Environment(
    loader=PackageLoader("app.editor", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

Record = tuple[Path, dict[str, Any], dict[str, Any]]  # folder, custody.json, testimony.json


@dataclass(frozen=True)
class FileRow:
    href: str
    name: str
    size: str
    content_type: str
    flags: str
    metadata: Markup


@dataclass(frozen=True)
class SubmissionRow:
    sid: str
    text_href: str
    sequence: str
    protection: str
    parent: str
    parent_here: bool
    children: list[str]
    excerpt: str
    files: list[FileRow]
    warnings: list[str]
    answers: Markup
    custody_href: str


@dataclass(frozen=True)
class DayRow:
    day: str
    submissions: list[SubmissionRow]


@dataclass(frozen=True)
class DeskRow:
    name: str
    anchor: str
    days: list[DayRow]


@dataclass(frozen=True)
class HeldRow:
    sid: str
    reason_href: str
    desk: str
    day: str
    sequence: str
    reason: str
    folder: str


class _Page:
    """What one rendering needs: the review folder, its records and who follows up whom."""

    def __init__(self, review: Path) -> None:
        self.review = review
        self.records = records(review)
        self.answers = routine.Answers(review)
        self.here = {c["submission_id"] for _, c, _ in self.records}
        self.children: dict[str, list[str]] = {}
        for _, c, _doc in self.records:
            if c.get("parent_id"):
                self.children.setdefault(c["parent_id"], []).append(c["submission_id"])

    def href(self, path: Path) -> str:
        return quote(path.relative_to(self.review).as_posix())

    def desks(self) -> list[DeskRow]:
        by_desk: dict[str, dict[str, list[Record]]] = {}
        for rec in self.records:
            by_desk.setdefault(rec[1]["desk"], {}).setdefault(rec[1]["day"], []).append(rec)
        return [
            DeskRow(desk, quote(desk), [
                DayRow(day, [self.submission(rec) for rec in by_desk[desk][day]])
                for day in sorted(by_desk[desk], reverse=True)
            ])
            for desk in sorted(by_desk)
        ]

    def submission(self, rec: Record) -> SubmissionRow:
        folder, c, doc = rec
        sid = c["submission_id"]
        text = testimony_fields(doc)["text"]
        parent = c.get("parent_id") or ""
        return SubmissionRow(
            sid=sid,
            text_href=self.href(folder / "testimony.txt"),
            sequence=str(c["bundle"]["sequence"]),
            protection=c.get("protection") or "unknown protection",
            parent=parent,
            parent_here=parent in self.here,
            children=self.children.get(sid, []),
            excerpt=text[:EXCERPT] + ("…" if len(text) > EXCERPT else ""),
            files=[self.file(folder, f) for f in c["files"]],
            warnings=list(c.get("warnings", [])),
            answers=Markup(self.answers.html(folder, sid)),  # noqa: S704 (escaped by routine.py)
            custody_href=self.href(folder / CUSTODY),
        )

    def file(self, folder: Path, f: dict[str, Any]) -> FileRow:
        flags = [] if f["match"] else ["SHA-256 MISMATCH"]
        flags += [f"RISKY: {r}" for r in f["risks"]]
        meta = metareport.render_file(folder, f["saved_as"], self.href)
        return FileRow(
            href=self.href(folder / f["saved_as"]),
            name=f["saved_as"],
            size=str(f["size"]),
            content_type=f["content_type"] or "?",
            flags="; ".join(flags),
            metadata=Markup(meta),  # noqa: S704 (escaped by metareport.py)
        )

    def held(self) -> list[HeldRow]:
        return [
            HeldRow(
                sid=str(rec.get("submission_id")),
                reason_href=self.href(folder / quarantine.REASON),
                desk=str(rec.get("desk")),
                day=str(rec.get("day")),
                sequence=str((rec.get("bundle") or {}).get("sequence")),
                reason=str(rec.get("reason")),
                folder=folder.as_posix(),
            )
            for folder, rec in quarantine.entries(self.review)
        ]


def records(review: Path) -> list[Record]:
    """Every laid-out submission of ``review`` (never a hidden staging folder), in path order."""
    out = []
    for custody_path in sorted(review.glob(f"*/bundle-*/*/{CUSTODY}")):
        if any(p.startswith(".") for p in custody_path.relative_to(review).parts):
            continue
        try:
            custody = json.loads(custody_path.read_text("utf-8"))
            doc = json.loads((custody_path.parent / "testimony.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        out.append((custody_path.parent, custody, doc if isinstance(doc, dict) else {}))
    return out


def render_index(review: Path) -> str:
    """The whole page for ``review`` as it is on disk now."""
    page = _Page(review)
    return _ENV.get_template(INDEX).render(
        count=len(page.records),
        how_to=Markup(routine.how_to_html(review)),  # noqa: S704 (escaped by routine.py)
        held=page.held(),
        desks=page.desks(),
    )


def write_index(review: Path) -> Path:
    """Replace ``review/index.html`` in one step: a reader sees the old page or the new one."""
    path = review / INDEX
    replace_file(path, render_index(review).encode())
    return path
