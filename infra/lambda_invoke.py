"""Invoke a Lambda handler the way Lambda does: in its own long-lived worker process.

Like a warm Lambda container, the worker imports the module named by the template's ``Handler``
once (the INIT phase), then runs one event at a time with a context object, and its stdout and
stderr are the function's log (CloudWatch Logs, here a temporary file)::

    with LambdaWorker("lambda_function.handler.lambda_handler", env=env, timeout=60) as function:
        invocation = function.invoke({"Step": "createSecret", ...})
        if invocation.failed:
            print(invocation.error_type, invocation.error_message)

A handler that raises is reported the way Lambda's Invoke API does, as ``errorType`` and
``errorMessage``; the event is never echoed back or logged (a rotation event holds the
``RotationToken``). When an invocation outlives the function's timeout the worker is killed, as
Lambda kills the sandbox, and the next invocation starts a new one (a cold start).

Protocol (private to this module): the parent writes one JSON line per invocation to the
worker's stdin, ``{"requestId", "deadlineMs", "functionArn", "event"}``; the worker answers with
one JSON line on a separate pipe (``--result-fd``), so that whatever the handler prints stays in
the log.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
STOP_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class Invocation:
    """What one invocation returned: a result, or Lambda's errorType/errorMessage; and its log."""

    request_id: str
    seconds: float
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    log: str = ""

    @property
    def failed(self) -> bool:
        return self.error_type is not None


class LambdaWorker:
    """A warm "container" for one handler: a subprocess that runs one event at a time.

    `env` is the function's whole environment (nothing else is inherited); `timeout` is the
    function's timeout in seconds, which the context reports as remaining time.
    """

    def __init__(
        self,
        handler: str,
        *,
        env: Mapping[str, str],
        timeout: float,
        function_name: str = "ses-smtp-rotation-local",
        memory_mb: int = 256,
    ) -> None:
        self.handler = handler
        self.function_name = function_name
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.init_seconds: float | None = None  # of the current worker, once started
        self._env = dict(env)
        self._process: subprocess.Popen[bytes] | None = None
        self._results: int | None = None  # read end of the result pipe
        self._buffer = b""
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._busy = False  # an invocation is in flight

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and wait for INIT (importing the handler); raise if INIT fails."""
        if self._process is not None:
            return
        if self._log is None:
            self._log = tempfile.TemporaryFile(prefix="lambda-log-")  # noqa: SIM115 - closed by close()
        read_end, write_end = os.pipe()
        env = {
            **self._env,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "_HANDLER": self.handler,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), self._env.get("PYTHONPATH")])),
        }
        command = [sys.executable, "-m", "infra.lambda_invoke", self.handler, "--result-fd", str(write_end)]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO_ROOT,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        self._results, self._buffer = read_end, b""
        started = time.monotonic()
        reply = self._read_reply(started + max(self.timeout, 10.0))
        if reply is None or reply.get("status") != "ready":
            log = self.read_new_log()
            self.stop()
            problem = "no answer" if reply is None else f"{reply.get('errorType')}: {reply.get('errorMessage')}"
            raise RuntimeError(f"The function's INIT failed ({problem}).\n{log}".rstrip())
        self.init_seconds = time.monotonic() - started

    def stop(self) -> None:
        """End the worker: EOF on its stdin first, then terminate, then kill. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and self._busy:
            process.kill()  # mid-invocation (timeout, Ctrl-C): it would not read its stdin soon
        self._busy = False
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):  # a broken pipe: the worker is gone already
                    process.stdin.close()
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._results is not None:
            os.close(self._results)
            self._results = None

    def close(self) -> None:
        """Stop the worker and drop its log."""
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LambdaWorker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # -- invoking --------------------------------------------------------------------------------

    def invoke(self, event: Mapping[str, Any]) -> Invocation:
        """Run `event` through the handler, like ``lambda invoke`` (RequestResponse)."""
        self.start()
        assert self._process is not None and self._process.stdin is not None
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        request = {
            "requestId": request_id,
            "deadlineMs": int((time.time() + self.timeout) * 1000),
            "functionArn": self.function_arn,
            "event": event,
        }
        self._busy = True  # until a reply comes: stop() then kills rather than waits
        with contextlib.suppress(OSError):  # the worker died: reported below as Runtime.ExitError
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            self._process.stdin.flush()
        reply = self._read_reply(started + self.timeout)
        seconds = time.monotonic() - started
        if reply is None:
            crashed = self._process.poll() is not None
            self.stop()  # like Lambda after a timeout or crash: the next invocation starts afresh
            error = ("Runtime.ExitError", "The worker exited") if crashed else ("Sandbox.Timedout", "Task timed out")
            message = f"{error[1]} after {seconds:.2f} seconds"
            return Invocation(request_id, seconds, None, error[0], message, self.read_new_log())
        self._busy = False
        return Invocation(
            request_id,
            seconds,
            reply.get("result"),
            reply.get("errorType"),
            reply.get("errorMessage"),
            self.read_new_log(),
        )

    @property
    def function_arn(self) -> str:
        region = self._env.get("AWS_REGION", "us-east-1")
        return f"arn:aws:lambda:{region}:{DEFAULT_ACCOUNT_ID}:function:{self.function_name}"

    def read_new_log(self) -> str:
        """What the function logged since the last call (its stdout and stderr)."""
        if self._log is None:
            return ""
        chunk = os.pread(self._log.fileno(), 1 << 24, self._log_offset)
        self._log_offset += len(chunk)
        return chunk.decode("utf-8", "replace")

    def _read_reply(self, deadline: float) -> dict[str, Any] | None:
        """The worker's next reply line, or None at the deadline or when the worker is gone."""
        assert self._results is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._results], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._results, 65536)
            if not chunk:
                return None  # EOF: the worker exited
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply = json.loads(line)
        return reply if isinstance(reply, dict) else None


# -- inside the worker process -------------------------------------------------------------------


class LocalContext:
    """The context object Lambda passes to a Python handler (the attributes Powertools reads).

    Also for calling a handler in-process: ``handler(event, LocalContext.with_timeout(300))``.
    """

    @classmethod
    def with_timeout(cls, seconds: float, function_arn: str = "") -> LocalContext:
        deadline_ms = int((time.time() + seconds) * 1000)
        arn = function_arn or f"arn:aws:lambda:us-east-1:{DEFAULT_ACCOUNT_ID}:function:local"
        return cls(str(uuid.uuid4()), deadline_ms, arn)

    def __init__(self, request_id: str, deadline_ms: int, function_arn: str) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = function_arn
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/[{self.function_version}]{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def load_handler(name: str) -> Callable[[Any, LocalContext], Any]:
    """Import ``package.module.function`` as Lambda resolves the template's Handler."""
    module_name, _, function_name = name.rpartition(".")
    if not module_name:
        raise ValueError(f"Handler {name!r} is not of the form module.function")
    handler = getattr(importlib.import_module(module_name.replace("/", ".")), function_name)
    if not callable(handler):
        raise TypeError(f"Handler {name!r} is not callable")
    return handler  # type: ignore[no-any-return]


def _reply(results: IO[str], reply: Mapping[str, Any]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    results.write(json.dumps(reply) + "\n")
    results.flush()


def _error(error_type: str, error: BaseException) -> dict[str, Any]:
    return {"status": "error", "errorType": error_type, "errorMessage": str(error)}


def serve(handler_name: str, results: IO[str]) -> int:
    """The worker's life: INIT, then one invocation per stdin line until EOF."""
    # Like Lambda's Python runtime: the root logger writes to the log at AWS_LAMBDA_LOG_LEVEL.
    logging.basicConfig(level=os.environ.get("AWS_LAMBDA_LOG_LEVEL", "WARNING").upper(), stream=sys.stdout)
    try:
        handler = load_handler(handler_name)
    except Exception as error:
        traceback.print_exc()
        _reply(results, _error("Runtime.ImportModuleError", error))
        return 1
    _reply(results, {"status": "ready"})
    for line in sys.stdin:
        request = json.loads(line)
        request_id = request["requestId"]
        context = LocalContext(request_id, request["deadlineMs"], request["functionArn"])
        print(f"START RequestId: {request_id} Version: {context.function_version}", flush=True)
        started = time.monotonic()
        reply: dict[str, Any]
        try:
            result = handler(request["event"], context)
        except Exception as error:
            # Lambda logs "[ERROR] Type: message" and the traceback; never the event.
            print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
            traceback.print_exc()
            reply = _error(type(error).__name__, error)
        else:
            try:
                reply = {"status": "ok", "result": json.loads(json.dumps(result))}
            except (TypeError, ValueError) as error:
                reply = _error("Runtime.MarshalError", error)
        elapsed_ms = (time.monotonic() - started) * 1000
        print(f"END RequestId: {request_id}", flush=True)
        print(f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms", flush=True)
        _reply(results, reply)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A Lambda-like worker (started by LambdaWorker).")
    parser.add_argument("handler", help="module.function, like the template's Handler")
    parser.add_argument("--result-fd", type=int, required=True, help="where replies go (not stdout: that is the log)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    with os.fdopen(args.result_fd, "w", encoding="utf-8") as results:
        try:
            return serve(args.handler, results)
        except KeyboardInterrupt:
            return 130  # Ctrl-C in the terminal reaches the worker too; the parent cleans up
        except BrokenPipeError:
            return 1  # the parent is gone


if __name__ == "__main__":
    sys.exit(main())
