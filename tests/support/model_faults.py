"""Faults for the model-based test (tests/test_model_based.py).

`run_killed` runs a vault job (a backup, a gc) in a forked child and SIGKILLs it at a chosen
point: at its (n+1)-th store step (a put begun, a put's temp file written but not yet
published, a delete begun), or after a delay. The damage
helpers change a stored object the way a failing disk would (its mtime kept). `decode_stored`
is the model's own reading of an envelope (docs/vault-format.md), independent of the
Repository code under test: what a stored object really holds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

RAW, ZSTD = 0, 1
CHILD_TIMEOUT_SECONDS = 60.0


@dataclass
class ChildRun:
    """How a job run in a child ended."""

    killed: bool  # the SIGKILL landed before the job returned
    steps: int  # store steps the child was let through (when killed at a step)
    error: str | None = None  # the job raised (a traceback), when it was not killed


def run_killed(
    job: Callable[[], Any],
    store: Any,
    *,
    after_steps: int | None,
    delay: float = 0.0,
) -> ChildRun:
    """Run `job` in a forked child using `store` (the child's copy), then kill -9 it.

    `after_steps=n`: at each step of the child's store (a put or delete begun, and a put's
    temp file about to be published by link or rename) the child first asks the parent,
    which lets n steps through and kills the child when it asks for the next one (other
    threads of the child, if any, may be anywhere then). `after_steps=None`: killed after
    `delay` seconds, wherever it is. A job that returns first exits 0 (`killed` False).
    """
    notes_r, notes_w = os.pipe()
    acks_r, acks_w = os.pipe()
    errors_r, errors_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(notes_r)
            os.close(acks_w)
            os.close(errors_r)
            if after_steps is not None:
                gate = threading.Lock()

                def gated(method: Callable[..., Any]) -> Callable[..., Any]:
                    def ask_first(*args: Any, **kwargs: Any) -> Any:
                        with gate:
                            os.write(notes_w, b"w")
                            if os.read(acks_r, 1) != b"a":
                                os._exit(3)
                        return method(*args, **kwargs)

                    return ask_first

                store.put = gated(store.put)
                store.delete = gated(store.delete)
                os.link = gated(os.link)  # publishing a written temp file (this child only)
                os.replace = gated(os.replace)
            job()
        except BaseException:
            code = 1
            with contextlib.suppress(OSError):
                os.write(errors_w, traceback.format_exc()[-16000:].encode())
        finally:
            os._exit(code)
    os.close(notes_w)
    os.close(acks_r)
    os.close(errors_w)
    steps = 0
    try:
        if after_steps is None:
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)  # a child that already exited is a zombie: no-op
        else:
            while True:
                ready, _, _ = select.select([notes_r], [], [], CHILD_TIMEOUT_SECONDS)
                if not ready:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise AssertionError(f"the child job hung after {steps} store steps")
                if not os.read(notes_r, 1):
                    break  # the job ended on its own
                if steps >= after_steps:
                    os.kill(pid, signal.SIGKILL)
                    break
                steps += 1
                os.write(acks_w, b"a")
        _, status = os.waitpid(pid, 0)  # reaped: its pid is gone from this host now
        error = b""
        while chunk := os.read(errors_r, 65536):
            error += chunk
    finally:
        for fd in (notes_r, acks_w, errors_r):
            os.close(fd)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if not killed and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 1)):
        raise AssertionError(f"the child job ended oddly: status {status}")
    return ChildRun(killed=killed, steps=steps, error=error.decode() or None)


# --- damage -------------------------------------------------------------------------------


def _rewrite(path: Path, data: bytes) -> None:
    """Change a file's bytes in place, keeping its mtime (bit rot does not touch it; gc reads
    mtimes)."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate(len(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def flip_byte(path: Path, position: int, xor: int) -> int:
    """XOR one byte (position taken modulo the size); returns the offset changed."""
    data = bytearray(path.read_bytes())
    offset = position % len(data)
    data[offset] ^= xor
    _rewrite(path, bytes(data))
    return offset


def truncate(path: Path, position: int) -> int:
    """Cut the file to fewer bytes than it has; returns the length kept."""
    data = path.read_bytes()
    keep = position % len(data)
    _rewrite(path, data[:keep])
    return keep


def decode_stored(blob: bytes, limit: int) -> bytes | None:
    """The payload of a plaintext envelope, or None when it does not decode."""
    if not blob:
        return None
    flag, body = blob[0], blob[1:]
    if flag == RAW:
        return bytes(body)
    if flag == ZSTD:
        try:
            if zstandard.frame_content_size(body) > limit:  # a damaged size: no allocation
                return None
            return zstandard.ZstdDecompressor().decompress(body, max_output_size=limit)
        except (zstandard.ZstdError, MemoryError):
            return None
    return None
