"""The witness site (FastAPI): pages, JavaScript-off streamed sealing, security headers.

Entry point: :func:`app.web.app.create_app`, run by ``guwah serve``.

Layout (FastAPI's larger-application shape; imports only point down this list):

- ``routers/``: one ``APIRouter`` per area (pages, submit, mailbox, uploads, commit); a new
  page or endpoint goes into the router of its area, takes the shared state as ``WebDep``.
- ``app.py`` (the factory), ``middleware.py`` (outer layers, exception handlers).
- ``sealing_request.py`` (the body into the Sealer), ``commit.py`` and ``uploads.py`` (the
  checks and limits of browser uploads).
- ``rendering.py`` (Jinja, the error page), then ``state.py`` (the typed shared state).
- ``mailbox.py`` (reading mailboxes, follow-up tickets), ``sealing.py``, ``budget.py``,
  ``quota.py``, ``pacing.py``, ``forms.py``, ``i18n.py``, ``security.py``,
  ``h11_limits.py``: one job each.
- ``errors.py``: the Refusal family and the one table from error type to status and message.
"""
