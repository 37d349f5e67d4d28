"""What the demo prints: one line at a time, IDs and field names only, never a value.

The function's own log records are shown compacted (``show_log``); times of the retirement
section are shown relative to its start (``Clock``).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

INDENT = " " * 35  # continuation lines of section 1


def say(text: str = "") -> None:
    print(text, flush=True)


def short(version_id: str) -> str:
    return version_id[:8]


def describe_smtp_attempts(codes: list[int]) -> str:
    if not codes:
        return "no SMTP login seen"
    if codes == [235]:
        return "SMTP AUTH: 235 at the first attempt"
    refused = codes[:-1] if codes[-1] == 235 else codes
    text = f"SMTP AUTH: {'/'.join(str(c) for c in sorted(set(refused)))} x{len(refused)} while the key propagated"
    return text + (f", then 235 (attempt {len(codes)})" if codes[-1] == 235 else "")


# Keys every Powertools record repeats (Lambda context, where in the code): left out of the display.
_LOG_CONTEXT_KEYS = frozenset(
    {"level", "location", "message", "timestamp", "service", "cold_start", "secret_id", "version_id", "xray_trace_id"}
)


def show_log(text: str) -> None:
    """The function's log, one line per record; structured records compacted to their own keys."""
    for line in text.splitlines():
        if line.startswith("END RequestId"):
            continue
        say(f"   | {compact_log_line(line)}")


def compact_log_line(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    if "_aws" in record:  # an embedded-metric-format record
        metrics = [m["Name"] for d in record["_aws"].get("CloudWatchMetrics", []) for m in d.get("Metrics", [])]
        return "metric " + ", ".join(metrics)
    extra = " ".join(
        f"{key}={value}"
        for key, value in record.items()
        if key not in _LOG_CONTEXT_KEYS and not key.startswith("function_")
    )
    return f"{record.get('level', '')} {record.get('message', '')}  {extra}".rstrip()


_ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?\+00:00")


class Clock:
    """Seconds since a section began, for showing compressed durations (``+12.3 s``)."""

    def __init__(self) -> None:
        self.started = datetime.now(UTC)
        self._monotonic = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._monotonic

    def stamp(self) -> str:
        return f"+{self.now():5.1f} s"

    def relative(self, moment: datetime | str | None) -> str:
        """An absolute moment (or an ISO text from a log record) as ``+12.3 s``."""
        if moment is None:
            return "never"
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        return f"{(moment - self.started).total_seconds():+.1f} s"

    def relative_text(self, text: str) -> str:
        """Every ISO moment in `text` (a decision's reason) as ``+12.3 s``."""
        return _ISO_MOMENT.sub(lambda match: self.relative(match.group(0)), text)
