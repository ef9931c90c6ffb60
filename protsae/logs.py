"""Logging set-up for the rule scripts: every record, and any uncaught error with its traceback,
goes to stderr and to the rule's ``log:`` file (under SLURM stderr lands in the executor's log,
so the rule's log is where the user looks)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, when given, to ``log_path`` (a rule's ``log:`` file); an exception that
    ends the script is logged there too, traceback and all."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logger = logging.getLogger("protsae")
    sys.excepthook = _log_uncaught
    return logger


def _log_uncaught(exc_type, exc, tb) -> None:
    """`sys.excepthook`: the error and its traceback through the handlers (stderr and the log)."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("protsae").critical("the job failed: %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))
    logging.shutdown()
