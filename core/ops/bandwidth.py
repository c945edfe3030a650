"""A job's bandwidth limits: the command's `--limit-upload/--limit-download` over config.toml's
`limit_upload/limit_download`, in the directions the job moves data, applied to its vaults.

One `Throttle` per job, so every worker thread of the job draws on the same buckets; the
shared, cached repository of the process stays unlimited (another job in the same service
has limits of its own)."""

from __future__ import annotations

import copy

from core.base.config import Settings
from core.base.progress import ProgressReporter
from core.base.ratelimit import Bandwidth, Throttle
from core.jobs.runner import JobContext
from core.repo.repository import Repository
from core.stores.throttle import throttled


def chosen(settings: Settings, *, upload: int | None, download: int | None) -> Bandwidth:
    """config.toml's limits with the command's where it gave one (None: not given, 0: none)."""
    configured = Bandwidth.of(settings.limit_upload, settings.limit_download)
    return configured.given(upload=upload, download=download)


def for_job(
    settings: Settings,
    job: JobContext,
    *,
    limit_upload: int | None,
    limit_download: int | None,
    upload: bool,
    download: bool,
    reporter: ProgressReporter | None = None,
) -> Throttle:
    """The job's throttle in the directions it moves data (`upload`, `download`); its
    progress events say the limit."""
    bandwidth = chosen(settings, upload=limit_upload, download=limit_download).only(
        upload=upload, download=download
    )
    throttle = Throttle(bandwidth, cancel=job.cancel)
    if reporter is not None:
        show(reporter, throttle)
    return throttle


def show(reporter: ProgressReporter, throttle: Throttle) -> None:
    """The job's limits in each progress event it emits ('limited to 20.0 MiB/s')."""
    reporter.limit_upload = throttle.bandwidth.upload or None
    reporter.limit_download = throttle.bandwidth.download or None


def is_data(key: str) -> bool:
    """Chunks (`core.repo.repository.chunk_key`): the objects that carry a job's bytes and
    wait for the limit. Manifests, sessions, locks are counted without waiting."""
    return key.startswith("chunks/")


def limited(repo: Repository, throttle: Throttle) -> Repository:
    """`repo` whose transfers obey `throttle`; `repo` itself (cached, shared) is unchanged."""
    if not throttle:
        return repo
    twin = copy.copy(repo)
    twin.store = throttled(repo.store, throttle, paced=is_data)
    return twin
