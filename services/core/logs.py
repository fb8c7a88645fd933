"""Structured logs: one JSON object a line off a terminal, readable key=value on one."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

# Attributes every LogRecord has; anything else was passed in ``extra`` and is a field,
# except uvicorn's ``color_message``: the message again, with terminal colour escapes.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class LogFormatter(logging.Formatter):
    def __init__(self, as_json: bool, pid: int | None = None) -> None:
        super().__init__()
        self.as_json = as_json
        self.pid = pid  # a worker's lines say which worker wrote them
        self._second = (-1, "")  # the last second formatted: a request's line is one of many

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.pid is not None:
            fields["pid"] = self.pid
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:  # orjson: a request's line in half json.dumps's time
            return orjson.dumps(fields, default=str).decode()
        extras = " ".join(f"{k}={v}" for k, v in list(fields.items())[4:] if k != "exc")
        line = f"{fields['ts']} {fields['level']:<7} {fields['msg']} {extras}".rstrip()
        return line + ("\n" + fields["exc"] if "exc" in fields else "")


def configure_logging(level: str, *, pid: bool = False) -> None:
    # The logging HOWTO's optimisations: no line says where in the code it was logged from,
    # nor its thread or process, so they are not collected (finding the caller walks the
    # stack for every line, a large share of what writing a request's log line costs).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    formatter = LogFormatter(as_json=not sys.stderr.isatty(), pid=os.getpid() if pid else None)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
