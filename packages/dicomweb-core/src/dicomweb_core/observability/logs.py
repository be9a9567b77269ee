"""Logging set-up: a text line (default) or one JSON object per line (``LOG_FORMAT=json``).

The access logger (``dicomweb.access``) passes the request's fields as ``extra``; the JSON
formatter writes them as keys, the text formatter has them in the message already. Paths are
logged without their query string: QIDO queries carry patient names and IDs (PHI); paths carry
UIDs only.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from .config import ObservabilitySettings
from .middleware import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: ``extra`` keys the JSON formatter copies into the object (the access line's fields).
FIELDS = ("request_id", "method", "path", "route", "status", "bytes_in", "bytes_out", "duration_ms", "client")
_configured_handler: logging.Handler | None = None


class _SecondStamp:
    """``strftime`` once per second, not once per line (an access line per request)."""

    def __init__(self, fmt: str, convert: Callable[[float], time.struct_time]) -> None:
        self._fmt = fmt
        self._convert = convert
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self._fmt, self._convert(second))
            self._second = second
        return self._text


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, with the date formatted once per second."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._stamp = _SecondStamp("%Y-%m-%d %H:%M:%S", time.localtime)

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self._stamp(record.created)},{int(record.msecs):03d} {record.levelname} {record.name}: "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._stamp = _SecondStamp("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": f"{self._stamp(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                doc[key] = value
        if "request_id" not in doc:
            rid = current_request_id.get()
            if rid is not None:
                doc["request_id"] = rid
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure_logging(settings: ObservabilitySettings) -> None:
    """Install one handler on the root logger (idempotent: worker processes call it again)."""
    global _configured_handler
    root = logging.getLogger()
    if _configured_handler is not None:
        root.removeHandler(_configured_handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # No format of ours shows threads or processes: spare every record looking them up.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _configured_handler = handler
    # uvicorn's own loggers go through the same handler (the CLI passes log_config=None)...
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # ... except its access log: ours is the access line, and uvicorn writes its own whenever
    # that logger has a handler (it would log query strings, which carry patient names).
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
