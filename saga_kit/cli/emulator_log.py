"""Keeps the emulator's chatter off a newcomer's first screen.

moto warns, once per resource and twice over (a log line and a ``UserWarning``), about every
resource type its CloudFormation does not emulate (alarms, queue policies, API Gateway stages and
models): some forty lines before the kit says anything. None of it is news: the local cloud
documents what moto skips and stands in for what matters. ``saga demo`` and ``saga serve`` send
those lines to a log file and show one line that sums them up.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: The loggers whose warnings are the emulator's, not the kit's.
EMULATOR_LOGGERS = ("moto", "saga_kit.local_cloud")
_RESOURCE_TYPE = re.compile(r"AWS::[A-Za-z0-9]+::[A-Za-z0-9]+")


@dataclass
class EmulatorNotes:
    """What the emulator said, and where the details went."""

    log_path: Path
    lines: int = 0
    unsupported: set[str] = field(default_factory=set)

    def summary(self) -> str:
        """One line: how much was said, which resource types moto skipped, where to read it."""
        if not self.lines:
            return ""
        return (f"local cloud: moto skipped {len(self.unsupported)} resource types it does not "
                f"emulate ({self.lines} notes in {self.log_path}; saga_kit/local_cloud/README.md says why)")


class _Recorder(logging.Handler):
    def __init__(self, notes: EmulatorNotes, file_handler: logging.Handler) -> None:
        super().__init__(logging.DEBUG)
        self._notes, self._file = notes, file_handler

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self._notes.lines += 1
            self._notes.unsupported.update(_RESOURCE_TYPE.findall(record.getMessage()))
        self._file.emit(record)


@contextmanager
def emulator_notes_to_log(log_path: Path | None = None) -> Iterator[EmulatorNotes]:
    """Inside the block, emulator warnings and log lines go to ``log_path`` only."""
    path = log_path or Path(tempfile.gettempdir()) / "saga-kit-local-cloud.log"
    notes = EmulatorNotes(path)
    file_handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    recorder = _Recorder(notes, file_handler)
    loggers = [logging.getLogger(name) for name in EMULATOR_LOGGERS]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(recorder)
        lg.propagate = False
    emulator = logging.getLogger("saga_kit.local_cloud.emulator")

    def to_log(message: Warning | str, category: type[Warning], filename: str, lineno: int,
               file: object = None, line: str | None = None) -> None:
        emulator.warning("%s: %s (%s:%s)", category.__name__, message, filename, lineno)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # every one is logged (and counted), none shown
            warnings.showwarning = to_log
            yield notes
    finally:
        for lg, (propagate, level) in zip(loggers, saved, strict=True):
            lg.removeHandler(recorder)
            lg.propagate, lg.level = propagate, level
        file_handler.close()
