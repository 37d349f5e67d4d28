"""Run an actor in its own thread under a script: pause it before its k-th AWS call, or kill it
right after that call.

    with scheduling():
        paused = Run("rollback", actor, Script(pause_before=3)).start()  # returns once paused
        Run("retirement", other, Script()).start().finish()              # runs to completion
        outcome = paused.finish()                                        # resumes, waits for the end

Every client an actor makes comes from boto3's default session, on which `scheduling` registers
one ``before-call`` and one ``after-call`` handler. Each handler looks up the script of the thread
it runs in, so two actors in two threads are scheduled independently, and the harness's own
clients (in a thread with no script) are never counted, paused or killed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support import on_aws_events

Actor = Callable[[], object]
# Longest a paused actor waits for the other one (and the harness for an actor): a hang is a bug
# in the harness or the product, reported rather than waited for.
WAIT_SECONDS = 120.0


class Killed(BaseException):
    """The process dies right after an AWS call (a Lambda timed out or crashed, an operator's
    terminal closed). A BaseException, so that no ``except Exception`` of the product runs the
    clean-up a dead process never runs."""


@dataclass
class Script:
    """What happens to one run of an actor: where it pauses or dies, and the calls it made."""

    pause_before: int | None = None  # pause before this call (1-based)
    kill_after: int | None = None  # die right after this call returned (1-based)
    calls: list[str] = field(default_factory=list)  # "iam.ListAccessKeys", ...
    stopped: threading.Event = field(default_factory=threading.Event)  # paused, or finished
    resume: threading.Event = field(default_factory=threading.Event)
    dead: bool = False

    def before_call(self, operation: str) -> None:
        if self.dead:
            raise Killed(f"dead since call {self.kill_after}; {operation} never sent")
        self.calls.append(operation)
        if len(self.calls) == self.pause_before:
            self.stopped.set()
            if not self.resume.wait(WAIT_SECONDS):
                raise Killed(f"never resumed before {operation}")

    def after_call(self) -> None:
        if not self.dead and len(self.calls) == self.kill_after:
            self.dead = True
            raise Killed(f"killed after call {self.kill_after} ({self.calls[-1]})")


_running = threading.local()


def _script() -> Script | None:
    script: Script | None = getattr(_running, "script", None)
    return script


def _before_call(event_name: str, **_: Any) -> None:
    script = _script()
    if script is not None:
        script.before_call(event_name.removeprefix("before-call."))


def _after_call(**_: Any) -> None:
    script = _script()
    if script is not None:
        script.after_call()


@contextmanager
def scheduling() -> Iterator[None]:
    """Schedule every client made inside the block (boto3's default session) by its thread's script."""
    with on_aws_events({"before-call": _before_call, "after-call": _after_call}):
        yield


@contextmanager
def unscheduled() -> Iterator[None]:
    """Calls inside the block are the harness's, not the actor's: not counted, paused or killed."""
    script = _script()
    _running.script = None
    try:
        yield
    finally:
        _running.script = script


@dataclass
class Outcome:
    """How one run of an actor ended."""

    name: str
    calls: list[str]
    error: BaseException | None

    @property
    def killed(self) -> bool:
        return isinstance(self.error, Killed)

    def describe(self) -> str:
        ended = "ok" if self.error is None else f"{type(self.error).__name__}: {_first_line(self.error)}"
        return f"{self.name}: {len(self.calls)} calls [{', '.join(short(c) for c in self.calls)}] -> {ended}"


class Run:
    """One run of an actor in its own thread."""

    def __init__(self, name: str, actor: Actor, script: Script | None = None) -> None:
        self.name = name
        self.script = script or Script()
        self._actor = actor
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"actor-{name}", daemon=True)

    def _main(self) -> None:
        _running.script = self.script
        try:
            self._actor()
        except BaseException as error:  # every ending (a refusal, a kill, a bug) is an outcome
            self._error = error
        finally:
            _running.script = None
            self.script.stopped.set()

    def start(self) -> Run:
        """Start the actor; return once it is paused or finished."""
        self._thread.start()
        if not self.script.stopped.wait(WAIT_SECONDS):
            raise TimeoutError(f"{self.name} neither paused nor finished within {WAIT_SECONDS} s")
        return self

    @property
    def paused(self) -> bool:
        return self._thread.is_alive()

    def finish(self) -> Outcome:
        """Resume the actor if it is paused, and wait for its end."""
        self.script.resume.set()
        self._thread.join(WAIT_SECONDS)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.name} did not finish within {WAIT_SECONDS} s")
        return Outcome(self.name, list(self.script.calls), self._error)


def run_to_end(name: str, actor: Actor, script: Script | None = None) -> Outcome:
    return Run(name, actor, script).start().finish()


def short(operation: str) -> str:
    """An operation without its service: iam.ListAccessKeys -> ListAccessKeys."""
    return operation.partition(".")[2] or operation


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
