"""The editor's routine made visible: which submissions wait for an answer, and how to answer.

``guwah-editor list`` and the review ``index.html`` share these, so the commands a newcomer
reads on the page are the ones the tool runs. A submission *waits* until this laptop sent a
reply (its copy ``reply-*.txt`` sits in the submission folder), another editor's reply arrived
with an export (``deskmail``), or its deletion was requested (``done-requested.txt``).
"""

from __future__ import annotations

import hashlib
import html
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from . import deskmail

CUSTODY = "custody.json"
DONE_MARK = "done-requested.txt"  # written by ``guwah-editor done`` in the submission folder
SENT_PREFIX = "reply-"  # the editor's own copy of each reply, in the submission folder


@dataclass(frozen=True)
class Status:
    folder: Path
    submission_id: str
    day: str
    replies: int
    done: bool

    @property
    def waiting(self) -> bool:
        return not self.replies and not self.done

    def label(self) -> str:
        if self.done:
            return "done (deletion requested)"
        return f"answered ({self.replies} reply(ies))" if self.replies else "waiting for a reply"


def statuses(
    review: Path, desk_replies: dict[str, list[tuple[Path, deskmail.DeskReply]]] | None = None
) -> list[Status]:
    """Every submission folder of ``review``, oldest first (day, then id)."""
    if desk_replies is None:
        desk_replies = deskmail.replies_in(review)
    out = []
    for custody in review.glob(f"*/bundle-*/*/{CUSTODY}"):
        if any(p.startswith(".") for p in custody.relative_to(review).parts):
            continue
        try:
            record = json.loads(custody.read_text("utf-8"))
            sid, day = str(record["submission_id"]), str(record["day"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        folder = custody.parent
        # this laptop's copy and the same reply back from an export count once
        texts = {hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in folder.glob(f"{SENT_PREFIX}*.txt")}  # fmt: skip
        texts |= {hashlib.sha256(r.text.encode()).hexdigest() for _, r in desk_replies.get(sid, [])}
        out.append(Status(folder, sid, day, len(texts), (folder / DONE_MARK).exists()))
    return sorted(out, key=lambda s: (s.day, s.submission_id, str(s.folder)))


def how_to_html(review: Path) -> str:
    """The "how to reply, how to mark done" block of index.html (commands to copy)."""
    e = html.escape
    where = shlex.quote(str(review))
    return "\n".join(
        [
            '<section id="how-to-answer"><h2>How to reply and how to mark done</h2>',
            "<p>Each submission below shows its folder. On this laptop, in a terminal:</p>",
            "<pre>"
            + e(
                f"guwah-editor list --todo --review {where}     # folders waiting for a reply\n"
                "guwah-editor reply FOLDER --text-file reply.txt  # encrypted to the witness "
                "and the desk\n"
                "guwah-editor done FOLDER                         # ask the server to delete it\n"
                "guwah-editor outbox --to /media/USB-STICK/       # one signed bundle for the "
                "operator"
            )
            + "</pre>",
            "<p>The operator runs <code>guwah import</code> on that stick; the witness reads "
            "the reply with their codename, and the desk's other editors see it in their next "
            "export.</p></section>",
        ]
    )


class Answers:
    """Statuses and desk replies of a review folder, read once for the whole index."""

    def __init__(self, review: Path) -> None:
        self.review = review
        self.replies = deskmail.replies_in(review)
        self.status = {s.folder: s for s in statuses(review, self.replies)}

    def html(self, folder: Path, sid: str) -> str:
        """The status line, the folder and the replies of one submission."""
        e = html.escape
        status = self.status.get(folder)
        parts = [
            f"<p>Status: {e(status.label() if status else 'unknown')}. "
            f"Folder: <code>{e(str(folder))}</code></p>"
        ]
        for text_path, reply in self.replies.get(sid, []):
            href = e(quote(text_path.relative_to(self.review).as_posix()))
            parts.append(
                f'<p>Reply sent {e(reply.day)} (<a href="{href}">text</a>):</p>'
                f"<pre>{e(reply.text[:400])}</pre>"
            )
        return "\n".join(parts)
