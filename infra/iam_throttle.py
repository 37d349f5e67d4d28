"""IAM with a rate limit, locally: an HTTP proxy in front of moto that throttles like IAM.

IAM's API rate is shared by the whole account: a fleet of rotations running at once meets it
before anything else. This proxy forwards each request to moto and counts it by operation; with
a rate, a token bucket (``rate`` calls per second, bursts of up to ``burst``) decides, and a
request over the limit gets what IAM answers then, HTTP 400 with the query protocol's XML error
``Throttling`` / ``Rate exceeded``, so botocore's retry modes treat it as real throttling::

    with IamThrottle(moto.endpoint_url, rate=5.0) as iam_proxy:
        env["AWS_ENDPOINT_URL_IAM"] = iam_proxy.endpoint_url   # only IAM goes through it
        ...
        iam_proxy.accepted, iam_proxy.throttled                 # Counters by operation
"""

from __future__ import annotations

import collections
import http.client
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

THROTTLING_BODY = """<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
  <Error>
    <Type>Sender</Type>
    <Code>Throttling</Code>
    <Message>Rate exceeded</Message>
  </Error>
  <RequestId>{request_id}</RequestId>
</ErrorResponse>
"""
# Hop-by-hop headers are the proxy's own business, not the upstream's.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"})


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take()` never waits."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = self._clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class IamThrottle:
    """The proxy: ``endpoint_url`` once started; ``rate=None`` forwards everything (counting only)."""

    def __init__(self, upstream_url: str, rate: float | None = None, burst: float | None = None) -> None:
        upstream = urlsplit(upstream_url)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self.bucket = None if rate is None else TokenBucket(rate, burst or max(1.0, rate))
        self.accepted: collections.Counter[str] = collections.Counter()
        self.throttled: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = (parse_qs(body.decode("utf-8", "replace")).get("Action") or ["?"])[0]
                if proxy.bucket is not None and not proxy.bucket.take():
                    proxy._count(proxy.throttled, operation)
                    self._answer(400, [("Content-Type", "text/xml")], _throttling_body())
                    return
                proxy._count(proxy.accepted, operation)
                status, headers, answer = proxy._forward(self.command, self.path, dict(self.headers), body)
                self._answer(status, headers, answer)

            do_GET = do_POST

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per request otherwise

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="iam-throttle", daemon=True)
        self._thread.start()

    def _count(self, counter: collections.Counter[str], operation: str) -> None:
        with self._lock:
            counter[operation] += 1

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(method, path, body=body, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> IamThrottle:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the IAM throttle is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"


def _throttling_body() -> bytes:
    return THROTTLING_BODY.format(request_id=uuid.uuid4()).encode()
