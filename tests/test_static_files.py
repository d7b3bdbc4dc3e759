"""Static files: the build's gzip twins are sent only to browsers that accept gzip.

Served from the real app/web/static directory through PrecompressedStaticFiles; what the
browser decodes is byte for byte the file SRI.json pins.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from app.web.static_files import PrecompressedStaticFiles, accepts_gzip

STATIC = Path(__file__).resolve().parents[1] / "app" / "web" / "static"


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[Mount("/static", PrecompressedStaticFiles(directory=str(STATIC)))])
    return TestClient(app)


@pytest.mark.parametrize(("header", "ok"), [
    ("gzip, deflate, br", True),
    ("br;q=1.0, gzip;q=0.5", True),
    ("*", True),
    ("GZIP", True),
    ("", False),
    ("identity", False),
    ("br", False),
    ("gzip;q=0", False),
    ("gzip;q=0.0, br", False),
    ("gzip;q=x", False),
])
def test_accepts_gzip(header: str, ok: bool) -> None:
    assert accepts_gzip(header) is ok


def test_gzip_twin_sent_when_accepted(client: TestClient) -> None:
    pinned = json.loads((STATIC / "js" / "SRI.json").read_text())["submit.js"]
    r = client.get("/static/js/submit.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.headers["content-type"].startswith("text/javascript")
    assert int(r.headers["content-length"]) == (STATIC / "js" / "submit.js.gz").stat().st_size
    # httpx decodes it: the decoded bytes are what the integrity hash pins
    digest = base64.b64encode(hashlib.sha384(r.content).digest()).decode()
    assert f"sha384-{digest}" == pinned


def test_plain_file_when_gzip_is_not_accepted(client: TestClient) -> None:
    r = client.get("/static/js/submit.js", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.content == (STATIC / "js" / "submit.js").read_bytes()
    assert gzip.decompress((STATIC / "js" / "submit.js.gz").read_bytes()) == r.content


def test_files_without_a_twin_are_unchanged(client: TestClient) -> None:
    r = client.get("/static/css/site.css", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert "vary" not in r.headers
    assert client.get("/static/js/nothing.js", headers={"Accept-Encoding": "gzip"}).status_code == 404


def test_not_modified_answers_for_the_twin(client: TestClient) -> None:
    first = client.get("/static/js/submit.js", headers={"Accept-Encoding": "gzip"})
    again = client.get("/static/js/submit.js", headers={"Accept-Encoding": "gzip",
                                                        "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["vary"] == "Accept-Encoding"
