"""Logging for ``guwah serve``: no access log, no client addresses, no timestamps.

uvicorn's access logger is switched off entirely. Its error logger can still mention a peer in
rare messages (e.g. WebSocket rejections), so every handler runs :class:`RedactAddresses`, which
replaces anything that looks like an IPv4 or IPv6 address before a line is written. No time
field either: journald adds its own, and we add nothing finer than it already has.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?![\w:])"
)


def redact(text: str) -> str:
    """``text`` with IP addresses replaced by ``[address]``."""
    return _IPV4.sub("[address]", _IPV6.sub("[address]", text))


class RedactAddresses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info or record.exc_text:
            # Tracebacks can carry request data; keep the exception type only.
            kind = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
            record.msg = f"{record.msg} ({kind})" if kind else record.msg
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn.run(log_config=...)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "app.server_cli.logconfig.RedactAddresses"}},
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
                "filters": ["redact"],
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "guwah": {"handlers": ["stderr"], "level": level, "propagate": False},
            # psycopg logs a second copy of a failed pipeline's database error as a warning
            # (host, user and database name included); the request already handled it
            "psycopg": {"level": "ERROR"},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
