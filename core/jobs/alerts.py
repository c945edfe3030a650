"""Alerts: an event in the catalog (so `events` and `events --follow` show it) and, where
config.toml sets `notify_command`, that command run with the event as one JSON object on
stdin. A notifier that fails or hangs never fails the work that raised the alert."""

from __future__ import annotations

import json
import shlex
import subprocess
from typing import Any

from core.catalog.context import Context, record
from core.catalog.models import iso, utcnow

NOTIFY_TIMEOUT_SECONDS = 30
#: the actions that are alerts (other events are the audit log)
ALERTS = ("job.failed", "disk.overdue", "disk.failing", "drill.failed", "vault.threshold")


def notify(ctx: Context, event: dict[str, Any]) -> str | None:
    """Run the notify command with `event` on stdin; the reason it failed, or None."""
    command = ctx.settings.notify_command.strip()
    if not command:
        return None
    try:
        done = subprocess.run(
            shlex.split(command),
            input=json.dumps(event, default=str),
            capture_output=True,
            text=True,
            timeout=NOTIFY_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, ValueError) as exc:
        return f"notify_command could not run: {exc}"
    except subprocess.TimeoutExpired:
        return f"notify_command ran over {NOTIFY_TIMEOUT_SECONDS} s and was stopped"
    if done.returncode != 0:
        return f"notify_command exited {done.returncode}: {done.stderr.strip()[:200]}"
    return None


def alert(
    ctx: Context,
    action: str,
    *,
    kind: str,
    object_id: str,
    name: str = "",
    detail: str = "",
    data: dict[str, Any] | None = None,
    recorded: bool = False,
) -> dict[str, Any]:
    """Record the alert (unless the caller's transaction already did: `recorded`) and notify.
    Returns the event as the notifier received it."""
    event = {
        "type": "alert",
        "action": action,
        "at": iso(utcnow()),
        "host": ctx.host,
        "actor": ctx.actor,
        "object_kind": kind,
        "object_id": object_id,
        "object_name": name,
        "detail": detail,
        **(data or {}),
    }
    if not recorded:
        with ctx.catalog.session() as session:
            record(session, ctx, action, kind=kind, object_id=object_id, name=name, detail=detail)
            session.commit()
    failure = notify(ctx, event)
    if failure:
        with ctx.catalog.session() as session:
            record(session, ctx, "notify.failed", kind=kind, object_id=object_id, detail=failure)
            session.commit()
    return event
