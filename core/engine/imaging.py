"""Writing a whole image file onto a disk (OS reinstall), keeping holes as holes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from core.base.errors import Cancelled, DeviceError, UserError
from core.base.progress import ProgressReporter

STEP = 8 << 20


def copy_image(
    image: Path,
    target: Path,
    *,
    reporter: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Copy `image` over the start of `target` and zero the rest; returns bytes copied.

    copy_file_range lets the kernel move the data (and share extents where it can).
    """
    try:
        return _copy(image, target, reporter, cancel)
    except OSError as exc:
        raise DeviceError(f"writing {image} onto {target} failed: {exc.strerror or exc}") from None


def _copy(
    image: Path,
    target: Path,
    reporter: ProgressReporter | None,
    cancel: threading.Event | None,
) -> int:
    size = image.stat().st_size
    with open(image, "rb") as source, open(target, "r+b") as sink:
        target_size = os.lseek(sink.fileno(), 0, os.SEEK_END)
        if size > target_size:
            raise UserError(f"image {image} is larger than the disk {target}")
        copied = 0
        while copied < size:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            n = os.copy_file_range(
                source.fileno(), sink.fileno(), min(STEP, size - copied), copied, copied
            )
            if n == 0:
                break
            copied += n
            if reporter:
                reporter.add(done=n)
        if target_size > size and target.is_file():
            os.truncate(sink.fileno(), size)  # drop stale bytes beyond the image ...
            os.truncate(sink.fileno(), target_size)  # ... and give the disk back its size, sparse
        os.fsync(sink.fileno())
    return copied
