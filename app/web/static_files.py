"""Static files, sent gzip-compressed when the browser accepts it.

The build (tests/js/build.mjs) writes a ``.gz`` twin next to each script; sending it saves
about two thirds of the bytes, which over Tor is many seconds. The twin is chosen per
request from ``Accept-Encoding`` and the answer is always marked ``Vary: Accept-Encoding``
so that no cache hands it to a browser that cannot read it. Subresource Integrity still
holds: the browser checks the hash over the decoded bytes. Nothing is compressed at request
time (no CPU spent per request; these files are public and the same for everyone).
"""

from __future__ import annotations

import mimetypes
import os
import stat

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, PathLike, StaticFiles
from starlette.types import Scope

GZIP_SUFFIX = ".gz"


def accepts_gzip(accept_encoding: str) -> bool:
    """True if an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*`` with q > 0)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                if float(value) <= 0:
                    continue
            except ValueError:
                continue
        return True
    return False


def _gzip_twin(full_path: PathLike) -> tuple[str, os.stat_result] | None:
    twin = os.fspath(full_path) + GZIP_SUFFIX
    try:
        st = os.stat(twin)
    except OSError:
        return None
    return (twin, st) if stat.S_ISREG(st.st_mode) else None


class PrecompressedStaticFiles(StaticFiles):
    """``StaticFiles`` that sends ``name.gz`` (``Content-Encoding: gzip``) when it exists
    and the browser accepts gzip; the plain file otherwise."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        twin = _gzip_twin(full_path)
        if twin is None:
            return super().file_response(full_path, stat_result, scope, status_code)
        request_headers = Headers(scope=scope)
        if not accepts_gzip(request_headers.get("accept-encoding", "")):
            response = super().file_response(full_path, stat_result, scope, status_code)
        else:
            media_type = mimetypes.guess_type(os.fspath(full_path))[0] or "text/plain"
            response = FileResponse(twin[0], status_code=status_code, stat_result=twin[1],
                                    media_type=media_type)
            response.headers["Content-Encoding"] = "gzip"
            if self.is_not_modified(response.headers, request_headers):
                response = NotModifiedResponse(response.headers)
        response.headers["Vary"] = "Accept-Encoding"
        return response
