"""Pages: the Jinja environment, the translated render of a template, and the error page.

Every page goes through :func:`render`, which sets the request's language for gettext and
adds what the base template needs (language links, the path prefix); security headers are
added to every response by app/web/security.py.
"""

from __future__ import annotations

import gettext
import logging
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .i18n import DEFAULT, Language, bdi, plural_samples
from .scripts import PageScript, page_script
from .security import Scope
from .state import Web

log = logging.getLogger("guwah.web")

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
# templates/ at the top of the source tree (the layout reads like the architecture); a wheel
# can carry them as app/web/templates, which wins when present.
TEMPLATES_DIR = next(
    (p for p in (WEB_DIR / "templates", WEB_DIR.parent.parent / "templates") if p.is_dir()),
    WEB_DIR.parent.parent / "templates",
)

_current: ContextVar[gettext.NullTranslations] = ContextVar("guwah_translations")


def _gettext(message: str) -> str:
    return _current.get().gettext(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return _current.get().ngettext(singular, plural, n)


def make_env(templates_dir: Path = TEMPLATES_DIR) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["plainsize"] = plain_size
    env.filters["bdi"] = bdi
    return env


def plain_size(n: int) -> str:
    """A size in the words witnesses know ("4 GB", "500 MB"): why not Jinja's
    ``filesizeformat``: "4.0 GiB" reads as jargon."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{round(n / scale, 1):g} {unit}"
    return f"{n} B"


def load_sri(name: str) -> PageScript | None:
    """A built script, its integrity hash and its shared modules, when built."""
    return page_script(STATIC_DIR / "js", name)


def page_context(web: Web, scope: Scope) -> dict[str, Any]:
    lang: Language = web.catalogs.pick(scope.get("guwah.lang"))
    path = local_path(scope.get("path", "/"))
    languages = [(other, web.catalogs.url_base(other.code) + path)
                 for other in web.catalogs.available]
    return {
        "lang": lang,
        "base": web.catalogs.url_base(lang.code),
        "path": path,
        "draft_translation": web.catalogs.is_draft(lang.code),
        "languages": languages,
        "english_url": next((url for other, url in languages if other.code == DEFAULT), None),
        "plurals": plural_samples(lang.code),
    }


def local_path(path: str) -> str:
    """``path`` as a link that can only stay on this site.

    Language links are built from the request path; ``/ug//evil.example/x`` would otherwise
    give ``//evil.example/x``, which a browser reads as another host (so would ``/\\evil``).
    """
    return "/" + path.replace("\\", "/").lstrip("/")


def render(web: Web, scope: Scope, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    context = page_context(web, scope)
    context.update(ctx)
    token = _current.set(web.catalogs.get(context["lang"].code))
    try:
        html = web.env.get_template(template).render(**context)
    finally:
        _current.reset(token)
    return HTMLResponse(html, status_code=status)


def render_error(web: Web, scope: Scope, status: int, message: str) -> HTMLResponse:
    try:
        return render(web, scope, "error.html", status, code=status, message=message)
    except Exception as exc:  # a broken template must not turn into a traceback
        log.error("error page failed to render (%s)", type(exc).__name__)
        return HTMLResponse("<!doctype html><title>Error</title><p>Error.</p>", status)


def translate(web: Web, scope: Scope, message: str) -> str:
    """``message`` (a msgid) in the request's language, for JSON answers."""
    return web.catalogs.get(scope.get("guwah.lang", "en")).gettext(message)
