"""The witness site (FastAPI): pages, JavaScript-off streamed sealing, security headers.

Entry point: :func:`app.web.app.create_app`, run by ``guwah serve``.
"""
