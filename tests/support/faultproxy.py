"""A fault-injecting HTTP/1.1 proxy on loopback, between boto3 and the S3 server.

It understands just enough HTTP to find request and response boundaries, so a fault hits
one whole request: reset the connection, stall, answer with an S3 error without forwarding,
forward but drop the response (a lost acknowledgement), or flip one byte of a response body
(never the headers). Faults are queued as rules; the first rule matching a request's method
and path is used and its count decremented. Anything not faulted passes through untouched.

    with FaultProxy(("127.0.0.1", 8333)) as proxy:
        proxy.error(count=2)                     # next 2 requests get 503 SlowDown
        proxy.drop_response(method="PUT")        # next PUT is stored, its reply lost
        store = S3Store(..., endpoint_url=proxy.endpoint_url)

One thread per client connection, each with its own upstream connection; requests are fully
buffered (an `Expect: 100-continue` is answered by the proxy and not forwarded; botocore does
not sign that header).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Literal

Kind = Literal["reset", "stall", "error", "drop_response", "corrupt_response"]
RESPONSE_KINDS = ("drop_response", "corrupt_response")


@dataclass
class Rule:
    """A fault for the next `count` matching requests (count None: until cleared)."""

    kind: Kind
    count: int | None = 1
    method: str | None = None
    path: str | None = None
    status: int = 503
    code: str = "SlowDown"
    seconds: float = 5.0
    #: fault only every n-th matching request (1: each one); the others pass untouched
    every: int = 1
    #: skip requests whose path contains this (e.g. "list-type=" to spare listings)
    exclude: str | None = None
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path is None or self.path in path)
            and (self.exclude is None or self.exclude not in path)
        )


class _Closed(Exception):
    """The peer closed the connection (cleanly between requests, or midway)."""


class _Reader:
    """Buffered reads from a socket: lines, exact byte counts, until-EOF."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def until(self, marker: bytes, *, limit: int = 1 << 20) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > limit or not self._fill():
                raise _Closed
        end = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise _Closed
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def _read_body(reader: _Reader, fields: dict[str, str]) -> tuple[bytes, int, int] | None:
    """Raw body bytes plus (start, end) of its first data span; None if delimited by EOF."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        raw = b""
        first: tuple[int, int] | None = None
        while True:
            size_line = reader.until(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            raw += size_line
            if size == 0:
                while True:  # trailers, then the empty line
                    line = reader.until(b"\r\n")
                    raw += line
                    if line == b"\r\n":
                        break
                break
            if first is None:
                first = (len(raw), len(raw) + size)
            raw += reader.exactly(size + 2)
        start, end = first or (0, 0)
        return raw, start, end
    if "content-length" in fields:
        n = int(fields["content-length"])
        return reader.exactly(n), 0, n
    return None


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: the client sees 'connection reset by peer'."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _error_response(rule: Rule, method: str) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{rule.code}</Code><Message>injected by FaultProxy</Message>"
        "<RequestId>faultproxy</RequestId></Error>"
    ).encode()
    reason = {500: "Internal Server Error", 503: "Service Unavailable", 403: "Forbidden"}
    head = (
        f"HTTP/1.1 {rule.status} {reason.get(rule.status, 'Error')}\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        "x-amz-request-id: faultproxy\r\n"
        "\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


class FaultProxy:
    """TCP proxy on 127.0.0.1 (random port) to `upstream`, injecting queued faults."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._sockets: set[socket.socket] = set()
        self._closing = threading.Event()
        #: requests seen, and faults actually injected by kind
        self.requests = 0
        self.injected: Counter[str] = Counter()
        #: the last requests as (method, path, status or fault kind), for debugging tests
        self.log: deque[tuple[str, str, str]] = deque(maxlen=2000)
        self._thread = threading.Thread(target=self._accept, name="faultproxy", daemon=True)
        self._thread.start()

    # -- commands ------------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def reset(self, count: int | None = 1, *, method: str | None = None) -> Rule:
        """Reset the connection when the next request arrives (nothing is forwarded)."""
        return self.add(Rule("reset", count, method))

    def stall(self, seconds: float, count: int | None = 1, *, method: str | None = None) -> Rule:
        """Hold the request for `seconds`, then forward it (the client may have given up)."""
        return self.add(Rule("stall", count, method, seconds=seconds))

    def error(
        self,
        status: int = 503,
        code: str = "SlowDown",
        count: int | None = 1,
        *,
        method: str | None = None,
    ) -> Rule:
        """Answer with an S3 error document instead of forwarding (count None: forever)."""
        return self.add(Rule("error", count, method, status=status, code=code))

    def drop_response(self, count: int | None = 1, *, method: str | None = None) -> Rule:
        """Forward the request, let the server complete it, then reset instead of replying."""
        return self.add(Rule("drop_response", count, method))

    def corrupt_response(self, count: int | None = 1, *, method: str | None = "GET") -> Rule:
        """Flip one byte in the middle of the next non-empty response body."""
        return self.add(Rule("corrupt_response", count, method))

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._rules.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self._rules)

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        for sock in socks:
            _reset(sock)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- machinery -----------------------------------------------------------------------

    def _take(
        self, method: str, path: str, *, response: bool, has_body: bool = False
    ) -> Rule | None:
        """Use up one count of the first rule for this request and stage (request faults
        before forwarding, response faults after); a corruption waits for a non-empty body.
        """
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path) or (rule.kind in RESPONSE_KINDS) != response:
                    continue
                if rule.kind == "corrupt_response" and not has_body:
                    continue
                rule.seen += 1
                if rule.seen % rule.every:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                self.injected[rule.kind] += 1
                return rule
        return None

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, *socks: socket.socket | None) -> None:
        with self._lock:
            for sock in socks:
                if sock is not None:
                    self._sockets.discard(sock)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            reader = _Reader(client)
            up_reader: _Reader | None = None
            while not self._closing.is_set():
                try:
                    head = reader.until(b"\r\n\r\n")
                except _Closed:
                    return
                request_line, fields = _headers(head)
                method, path = request_line.split(" ")[:2]
                if fields.get("expect", "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = b"\r\n".join(
                        line
                        for line in head.split(b"\r\n")
                        if not line.lower().startswith(b"expect:")
                    )
                body = _read_body(reader, fields)
                request = head + (body[0] if body else b"")
                with self._lock:
                    self.requests += 1

                rule = self._take(method, path, response=False)
                if rule is not None:
                    self.log.append((method, path, rule.kind))
                if rule is not None and rule.kind == "reset":
                    _reset(client)
                    return
                if rule is not None and rule.kind == "error":
                    client.sendall(_error_response(rule, method))
                    continue
                stalled = rule is not None and rule.kind == "stall"
                if stalled and self._closing.wait(rule.seconds):
                    return  # proxy shutting down

                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=60)
                    self._track(upstream)
                    up_reader = _Reader(upstream)
                assert up_reader is not None
                upstream.sendall(request)
                response, keep_alive = self._read_response(up_reader, method)

                rule = self._take(method, path, response=True, has_body=bool(response[1]))
                status = response[0].split(b" ", 2)[1].decode("latin-1")
                self.log.append((method, path, rule.kind if rule else status))
                if rule is not None and rule.kind == "drop_response":
                    _reset(client)
                    return
                raw, (start, end) = response[0], response[1] or (0, 0)
                if rule is not None and rule.kind == "corrupt_response":
                    middle = (start + end) // 2
                    raw = raw[:middle] + bytes([raw[middle] ^ 0x01]) + raw[middle + 1 :]
                client.sendall(raw)
                if not keep_alive:
                    return
        except (OSError, _Closed, ValueError):
            return
        finally:
            self._untrack(client, upstream)
            client.close()
            if upstream is not None:
                upstream.close()

    @staticmethod
    def _read_response(
        reader: _Reader, method: str
    ) -> tuple[tuple[bytes, tuple[int, int] | None], bool]:
        """((raw response, body data span or None), keep_alive) for one upstream response."""
        while True:
            head = reader.until(b"\r\n\r\n")
            status_line, fields = _headers(head)
            status = int(status_line.split(" ")[1])
            if not 100 <= status < 200:
                break
        keep_alive = fields.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304):
            return (head, None), keep_alive
        body = _read_body(reader, fields)
        if body is None:
            data = reader.rest()
            return (head + data, (len(head), len(head) + len(data)) if data else None), False
        raw, start, end = body
        span = (len(head) + start, len(head) + end) if end > start else None
        return (head + raw, span), keep_alive
