"""Parse a JSON request body: one owner for "what counts as a malformed JSON body".

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on deeply nested input — 30,000
``[`` are enough — and an uncaught one is a 500. Every JSON route parses through here and gets
``BadJson`` for anything malformed, which it answers with 400 and a sentence.
"""

from __future__ import annotations

import json

from fastapi import Request
from python_multipart.multipart import parse_options_header

from .errors import BadForm, CrossSite, WrongContentType
from .forms import cross_site


class BadJson(ValueError):
    """The body is not JSON we can read (bad encoding, syntax, or nesting too deep)."""


def parse_json(body: bytes | bytearray, encoding: str = "utf-8") -> object:
    """The decoded document, or BadJson."""
    try:
        return json.loads(body.decode(encoding))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadJson("not a JSON document this site reads") from None


async def read_json_object(request: Request, limit: int) -> dict[str, object]:
    """A same-site ``application/json`` body of at most ``limit`` bytes holding an object.

    CrossSite, WrongContentType, BadForm(413) when longer, BadForm when malformed. The buffer
    the body is gathered in is overwritten as soon as it is parsed (a mailbox token should not
    linger); the received pieces and the parsed strings cannot be, as Python has no way to
    wipe them (docs/threat-model.md).
    """
    if cross_site(dict(request.headers), request.headers.get("host")):
        raise CrossSite()
    if parse_options_header(request.headers.get("content-type", ""))[0] != b"application/json":
        raise WrongContentType()
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BadForm(413)
        doc = parse_json(body, "ascii")
    except BadJson:
        raise BadForm() from None
    finally:
        body[:] = bytes(len(body))
        body.clear()
    if not isinstance(doc, dict):
        raise BadForm()
    return doc
