"""A throwaway demo environment, built only through the façade (`blockvault --demo`).

Two servers with a system and a data disk each, holding real content (seeded random data,
written zeros and holes), several snapshots and backups in the embedded local vault, one
retained backup of a deleted disk, and two policies: `web-weekly` covers web1's disks and has
run once; `nightly` covers db1-data and has not run yet (so, on a clock a few days on, as in
the screenshots, db1-data is overdue) and replicates to a second vault, `offsite`, which holds
a copy of the deleted disk's backup and is past its quota's alert threshold; web1-data's first
backup is locked; db1-root stays unprotected. Small disks and a small chunk size keep it to a
few seconds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from core.api import Blockvault
from core.jobs.runner import JobHandle

MiB = 1 << 20
DEMO_CHUNK_SIZE = 256 << 10

# (server, disk, role, size in MiB at scale 1)
LAYOUT = (
    ("web1", "web1-root", "system", 16),
    ("web1", "web1-data", "data", 24),
    ("db1", "db1-root", "system", 16),
    ("db1", "db1-data", "data", 32),
)
DELETED = ("db1", "db1-scratch", "data", 8)
LOCKED_UNTIL = "2027-01-01"  # a date, not a duration: the screenshots stay the same


def _finish(handle: JobHandle) -> dict:
    handle.run()
    if handle.error is not None:
        raise handle.error
    return handle.result


def _write_content(path: str, size: int, rng: random.Random, *, fill: float) -> None:
    """Random data over `fill` of the disk in 1 MiB extents, explicit zeros in some, holes elsewhere."""
    with open(path, "r+b") as handle:
        for offset in range(0, size, MiB):
            pick = rng.random()
            if pick < fill:
                handle.seek(offset)
                handle.write(rng.randbytes(min(MiB, size - offset)))
            elif pick < fill + 0.1:
                handle.seek(offset)
                handle.write(bytes(min(MiB, size - offset)))
        handle.flush()
        os.fsync(handle.fileno())


def _change(path: str, rng: random.Random, *, at: int, length: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(at)
        handle.write(rng.randbytes(length))


def build_demo(
    home: Path, *, scale: float = 1.0, actor: str | None = None, seed: int = 7
) -> Blockvault:
    """Fill `home` (an empty BLOCKVAULT_HOME) and return the open façade on it.

    `scale` shrinks or grows every disk (tests use 0.125: 2-4 MiB disks).
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    if not config.exists():
        config.write_text(f"[blockvault]\nchunk_size = {DEMO_CHUNK_SIZE}\n")
    bv = Blockvault.open(home=home, actor=actor)
    rng = random.Random(seed)
    for server in sorted({row[0] for row in LAYOUT}):
        bv.create_server(server)
    disks = {}
    for server, name, role, mib in (*LAYOUT, DELETED):
        size = max(1, int(mib * scale)) * MiB
        disk = bv.create_disk(name, size, server=server, role=role)
        _write_content(disk["path"], size, rng, fill=0.5 if role == "system" else 0.6)
        disks[name] = disk
    for _server, name, role, _mib in LAYOUT:
        disk = disks[name]
        _finish(bv.start_snapshot(name, name=f"{name}-installed"))
        _finish(bv.start_backup(name, name=f"{name}-monday"))
        _change(disk["path"], rng, at=disk["size"] // 4, length=min(disk["size"] // 8, 2 * MiB))
        _finish(bv.start_backup(name, name=f"{name}-tuesday"))
        if role == "data":
            _finish(bv.start_snapshot(name, name=f"{name}-before-upgrade"))
            _change(disk["path"], rng, at=disk["size"] // 2, length=min(disk["size"] // 8, 2 * MiB))
            _finish(bv.start_backup(name, name=f"{name}-wednesday"))
    scratch = DELETED[1]
    _finish(bv.start_backup(scratch, name=f"{scratch}-final"))
    bv.delete_disk(scratch)
    bv.create_policy(
        "web-weekly",
        schedule=bv.schedule_text(weekly="sat@01:00"),
        keep={"keep_last": 4, "keep_weekly": 8},
        disks=["web1"],
    )
    bv.run_policies(policy="web-weekly", force=True)  # its first run: one backup of each disk
    bv.add_vault("offsite", path=str(home / "offsite-vault"))
    bv.create_policy(
        "nightly",
        schedule=bv.schedule_text(daily_at="02:00"),
        keep={"keep_daily": 7, "keep_weekly": 4},
        disks=["db1-data"],
        replicate_to="offsite",
    )
    _vaults(bv)
    return bv


def _vaults(bv: Blockvault) -> None:
    """`offsite` holds a copy of the deleted disk's last backup (and receives the nightly
    policy's copies) and is past its quota's alert threshold (the console header's badge);
    the embedded `local` vault is under its own and holds a locked backup. Quotas follow the
    measured usage, so every scale shows the same shares."""
    _finish(bv.start_copy(f"{DELETED[1]}-final", to_vault="offsite"))
    bv.lock_backup("web1-data-monday", until=LOCKED_UNTIL)
    for vault, share, alert_at in (("local", 0.62, "80%"), ("offsite", 0.86, "80%")):
        usage = bv.get_vault(vault, deep=False)["usage_bytes"]
        bv.set_vault(vault, quota=str(int(usage / share)), alert_at=alert_at)
