"""Logs are data: every record carries its fields both in the message and as ``extra``.

The fields (event id, model, version, correlation id...) are what an operator follows one
event with; ``custom_dimensions`` is where Application Insights looks for them. Never pass
settings or payloads here: only identifiers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

ROOT = "reactor"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{name}")


def log(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    if not logger.isEnabledFor(level):
        return
    clean = {k: v for k, v in fields.items() if v not in (None, "")}
    text = json.dumps(clean, sort_keys=True, default=str)
    logger.log(level, "%s %s", message, text, extra={"custom_dimensions": clean})


def configure(level: str) -> None:
    logging.getLogger(ROOT).setLevel(level)
    # The Azure SDKs log every HTTP request and response at INFO: noise, and a cost per call.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
