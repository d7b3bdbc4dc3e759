"""Parse a JSON request body: one owner for "what counts as a malformed JSON body".

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on deeply nested input — 30,000
``[`` are enough — and an uncaught one is a 500. Every JSON route parses through here and gets
``BadJson`` for anything malformed, which it answers with 400 and a sentence.
"""

from __future__ import annotations

import json


class BadJson(ValueError):
    """The body is not JSON we can read (bad encoding, syntax, or nesting too deep)."""


def parse_json(body: bytes, encoding: str = "utf-8") -> object:
    """The decoded document, or BadJson."""
    try:
        return json.loads(body.decode(encoding))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadJson("not a JSON document this site reads") from None
