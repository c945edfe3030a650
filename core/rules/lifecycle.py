"""Lifecycle rules as pure functions returning plans: what is created, overwritten, deleted, kept.

Every rule of the product lives here and nowhere else. The confirmation dialog and `--dry-run`
show the plan; the executor in `core.ops` computes the same plan again inside the transaction
that claims its objects and runs it only if it is the same (`Plan.same_as`). Functions take
plain catalog rows and facts (the job that owns a disk, writers, byte counts) and never touch
the database or the disks. docs/lifecycle.md maps each rule to the test that proves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.base.errors import Busy, NotFound, Refusal, Retained
from core.base.times import as_utc
from core.base.units import human_size
from core.catalog.models import Backup, Disk, Job, Policy, Server, Snapshot, VaultRecord
from core.repo.gc import GcStats
from core.rules.plans import Plan, PlanItem
from core.rules.states import DISK_BUSY_VERB

DEFAULT_RESTORE_RATE = 200 << 20  # bytes/s used for estimates before we have measured one
INCOMPLETE_STATUSES = ("error-restoring", "error-rolling-back")


@dataclass(frozen=True)
class DiskFacts:
    """What the rules need to know about a disk now, besides its row."""

    disk: Disk
    owner: Job | None = None  # the active job that holds the disk
    here: str = ""  # the host asking (its pool and devices are the ones it can touch)
    writers: Sequence[str] = ()  # other processes holding it open for writing
    snapshots: int = 0  # how many snapshots it has
    snapshot_limit: int = 256
    undo_hours: float = 24.0


def disk_elsewhere(disk: Disk, here: str) -> str | None:
    """A disk's data is on the host it lives on: another host sharing the catalog may list it
    but never read or write it (its path there is another file, or none)."""
    if here and disk.host and disk.host != here:
        return f"disk {disk.name} lives on host {disk.host}, not on {here}: run this on {disk.host}"
    return None


def disk_busy(disk: Disk, owner: Job | None, here: str = "") -> str | None:
    """A disk has one owner at a time: refused while a job holds it, naming the job and host,
    and on any host but its own."""
    elsewhere = disk_elsewhere(disk, here)
    if elsewhere:
        return elsewhere
    if owner is not None:
        return Refusal(
            f"disk {disk.name} is busy (job {owner.id} on host {owner.host}: {owner.kind})", Busy
        )
    if disk.status in DISK_BUSY_VERB:
        return Refusal(f"disk {disk.name} is busy: {DISK_BUSY_VERB[disk.status]}", Busy)
    return None


def _writers_refusal(disk: Disk, writers: Sequence[str], force: bool) -> str | None:
    if writers and not force:
        return (
            f"disk {disk.name} is held open for writing by {', '.join(writers)} "
            "(stop it first, or use --force)"
        )
    return None


def _readers_refusal(what: str, readers: Sequence[Job]) -> str | None:
    """`what` ("snapshot s1", "a snapshot of disk d") may not go while a job reads it."""
    if readers:
        job = readers[0]
        return f"{what} is being read by job {job.id} on host {job.host} ({job.kind})"
    return None


def safety_snapshot_item(facts: DiskFacts) -> PlanItem:
    return PlanItem(
        "create",
        "snapshot",
        "",
        "safety snapshot",
        0,
        f"for disk undo ({facts.undo_hours:g} h)",
    )


def _safety_refusal(facts: DiskFacts) -> str | None:
    """Every overwrite takes a safety snapshot first, so it needs room under the limit."""
    if facts.snapshots >= facts.snapshot_limit:
        return (
            f"disk {facts.disk.name} has reached its snapshot limit ({facts.snapshot_limit}); "
            "a safety snapshot is needed before an overwrite: delete a snapshot first"
        )
    return None


def _overwrite_refusal(facts: DiskFacts, *, source_size: int, force: bool) -> str | None:
    disk = facts.disk
    if source_size > disk.size:
        return (
            f"disk {disk.name} ({human_size(disk.size)}) is smaller than the source "
            f"({human_size(source_size)})"
        )
    return (
        disk_busy(disk, facts.owner, facts.here)
        or _writers_refusal(disk, facts.writers, force)
        or _safety_refusal(facts)
    )


def snapshot_item(snapshot: Snapshot, op: str, *, when: str = "now", freed: int = 0) -> PlanItem:
    return PlanItem(op, "snapshot", snapshot.id, snapshot.name, freed, when=when)


def backup_keep_item(backup: Backup) -> PlanItem:
    until = locked_until(backup)
    note = f"retained in vault, {lock_text(until)}" if until else "retained in vault"
    return PlanItem("keep", "backup", backup.id, backup.name, backup.size, note)


# --- inventory ---------------------------------------------------------------------------


def plan_disk_delete(
    facts: DiskFacts,
    *,
    freed: int,
    snapshots: Sequence[Snapshot],
    backups: Sequence[Backup],
    readers: Sequence[Job] = (),
) -> Plan:
    """Deleting a disk deletes its snapshots (they live with its data) and keeps its backups.

    `freed` is what the disk's pool folder really frees: its image and its snapshots, shared
    extents counted once. A pool disk with no available backup holds the only copy of its
    data: its name must be typed, as before an overwrite."""
    disk = facts.disk
    only_copy = disk.managed and not backups
    items = [
        PlanItem(
            "delete",
            "disk",
            disk.id,
            disk.name,
            freed,
            "with its snapshots" if disk.managed else "registered: the file itself stays",
        )
    ]
    items += [snapshot_item(s, "delete") for s in snapshots]
    items += [backup_keep_item(b) for b in backups]
    return Plan(
        action="delete disk",
        target=f"{disk.name} ({disk.id})",
        items=tuple(items),
        refusal=disk_busy(disk, facts.owner, facts.here)
        or _readers_refusal(f"a snapshot of disk {disk.name}", readers),
        warnings=(
            (f"disk {disk.name} has no backup: its data is gone for good",) if only_copy else ()
        ),
        confirm_text=disk.name if only_copy else None,
    )


def plan_server_delete(server: Server, *, disks: Sequence[Disk], detach_disks: bool) -> Plan:
    """A server with disks is only deleted with --detach-disks; its disks, snapshots and
    backups are then kept, unattached. Deleting a server never deletes data."""
    items = [PlanItem("delete", "server", server.id, server.name)]
    items += [PlanItem("detach", "disk", d.id, d.name, note=f"was {d.role}") for d in disks]
    refusal = None
    if disks and not detach_disks:
        names = ", ".join(d.name for d in disks)
        refusal = (
            f"server {server.name} still has disks ({names}); detach them or use --detach-disks"
        )
    return Plan("delete server", f"{server.name} ({server.id})", tuple(items), refusal=refusal)


def system_disk(disks: Sequence[Disk]) -> Disk | None:
    return next((d for d in disks if d.role == "system"), None)


def plan_os_reinstall(
    server: Server,
    *,
    disks: Sequence[Disk],
    snapshots_by_disk: dict[str, Sequence[Snapshot]],
    image_name: str | None,
    image_size: int | None,
    facts: DiskFacts | None = None,
    already_happened: bool = False,
    force: bool = False,
    readers: Sequence[Job] = (),
    freed: dict[str, int] | None = None,
) -> Plan:
    """An OS reinstall or change deletes the system disk's snapshots, only after it succeeded;
    data-disk snapshots stay usable; backups are retained. A reinstall through blockvault
    takes a safety snapshot of the system disk first: `disk undo` returns the old system for
    the undo window, and the snapshot is kept whatever happens to the reinstall."""
    system = system_disk(disks)
    action = "OS changed" if already_happened else "reinstall OS"
    if system is None:
        return Plan(action, server.name, refusal=f"server {server.name} has no system disk")
    facts = facts or DiskFacts(system)
    items: list[PlanItem] = []
    refusal = disk_elsewhere(system, facts.here)  # its snapshots' bytes are on its host
    when = "now" if already_happened else "after-success"
    if not already_happened:
        items.append(safety_snapshot_item(facts))
        items.append(
            PlanItem(
                "overwrite", "disk", system.id, system.name, image_size or 0, f"with {image_name}"
            )
        )
        if refusal is None and image_size is not None and image_size > system.size:
            refusal = (
                f"image {image_name} ({human_size(image_size)}) is larger than the system disk "
                f"{system.name} ({human_size(system.size)})"
            )
        refusal = refusal or _overwrite_refusal(facts, source_size=image_size or 0, force=force)
    refusal = refusal or _readers_refusal(f"a snapshot of disk {system.name}", readers)
    freed = freed or {}
    doomed = snapshots_by_disk.get(system.id, ())
    items += [snapshot_item(s, "delete", when=when, freed=freed.get(s.id, 0)) for s in doomed]
    warnings: tuple[str, ...] = ()
    if not already_happened and any(freed.get(s.id) for s in doomed):
        warnings = (
            "frees at most this: the safety snapshot taken first keeps whatever of these "
            "snapshots the disk still holds",
        )
    for disk in disks:
        if disk.role != "system":
            items += [snapshot_item(s, "keep") for s in snapshots_by_disk.get(disk.id, ())]
    return Plan(
        action,
        f"server {server.name} (system disk {system.name})",
        tuple(items),
        refusal=refusal,
        warnings=warnings,
        confirm_text=None if already_happened else system.name,
    )


# --- backups -----------------------------------------------------------------------------


def plan_backup(
    facts: DiskFacts,
    *,
    vault_name: str,
    parent: Backup | None,
    data_bytes: int | None = None,
    capacity: Capacity | None = None,
) -> Plan:
    """A backup never overwrites anything: full into an empty vault, then only changed chunks.

    Refused while another job owns the disk, and on a half-restored disk (its content is
    incomplete). `data_bytes` (allocated bytes) is what will be read; an incremental sends
    only the chunks the vault does not hold yet, which nobody knows before reading. With a
    `capacity`, refused when the vault's usage plus the backup's estimate passes its quota."""
    disk = facts.disk
    refusal = disk_busy(disk, facts.owner, facts.here)
    if refusal is None and (disk.status in INCOMPLETE_STATUSES or disk.restore_incomplete):
        refusal = (
            f"disk {disk.name} is {disk.status}: its content is incomplete; "
            "finish or repeat the restore first"
        )
    readable = disk.size if data_bytes is None else min(data_bytes, disk.size)
    if parent:
        route = f"incremental from {parent.name}: reads {human_size(readable)}, sends only changed chunks"
        item = PlanItem("create", "backup", "", "", 0, f"into vault {vault_name}, incremental")
    else:
        route = f"full: the first backup of this disk in this vault, reads {human_size(readable)}"
        item = PlanItem("create", "backup", "", "", readable, f"into vault {vault_name}")
    extra: dict = {}
    if capacity is not None:
        route = f"{route}; {capacity.line(vault_name)}"
        refusal = refusal or capacity.refusal(vault_name)
        extra = capacity.to_dict()
    return Plan(
        "backup",
        f"disk {disk.name}",
        (item,),
        refusal=refusal,
        destructive=False,
        route=route,
        extra=extra,
    )


@dataclass(frozen=True)
class Capacity:
    """A vault's room for one more write: its usage (bytes really stored, last measured), its
    quota (None: no limit) and the estimate of what the write adds, with how it was judged."""

    usage: int | None
    quota: int | None
    estimate: int
    basis: str = ""

    def line(self, vault_name: str) -> str:
        """'estimate 1.2 GiB (the bytes it reads): vault offsite would hold 498.0 GiB of its
        500.0 GiB quota'."""
        text = f"estimate {human_size(self.estimate)}" + (f" ({self.basis})" if self.basis else "")
        if self.quota is None:
            return text
        if self.usage is None:
            return f"{text}: vault {vault_name}'s usage is not measured yet (vault show)"
        after = self.usage + self.estimate
        return (
            f"{text}: vault {vault_name} would hold {human_size(after)} of its "
            f"{human_size(self.quota)} quota"
        )

    def refusal(self, vault_name: str) -> str | None:
        """Refused before anything is written when the estimate would pass the quota."""
        if self.quota is None or self.usage is None or self.usage + self.estimate <= self.quota:
            return None
        return (
            f"vault {vault_name} would pass its quota: it holds {human_size(self.usage)} of "
            f"{human_size(self.quota)} and this backup's estimate is {human_size(self.estimate)} "
            f"({self.basis}); free space (backup delete, vault gc) or raise the quota "
            f"(vault set {vault_name} --quota SIZE)"
        )

    def to_dict(self) -> dict:
        return {
            "estimate_bytes": self.estimate,
            "estimate_basis": self.basis,
            "usage_bytes": self.usage,
            "quota_bytes": self.quota,
        }


def locked_until(backup: Backup, now: datetime | None = None) -> datetime | None:
    """The date a locked backup (`backup lock`, a policy's --lock-for) is free, while it is
    still in the future; None for a backup that is not locked (any more)."""
    if backup.locked_until is None:
        return None
    until = as_utc(backup.locked_until)
    return until if until > (now or datetime.now(UTC)) else None


def lock_text(until: datetime) -> str:
    """'locked until 2027-01-01 00:00:00 UTC'."""
    return f"locked until {as_utc(until):%Y-%m-%d %H:%M:%S} UTC"


def plan_backup_delete(
    backup: Backup,
    *,
    unique_bytes: int,
    readers: Sequence[Job] = (),
    leaning: Sequence[Snapshot] = (),
    now: datetime | None = None,
) -> Plan:
    """The bytes freed are the ones only this backup references (after deduplication).
    Refused while it is still being made, while a job reads it, while a safety snapshot
    (the undo of a restore) reads unchanged chunks from it, and while it is locked (before
    its date nobody deletes it); a deletion cut short finishes."""
    until = locked_until(backup, now)
    refusal = None
    if until is not None:
        refusal = Refusal(
            f"backup {backup.name} is {lock_text(until)}; it cannot be deleted before then",
            Retained,
        )
    refusal = refusal or _readers_refusal(f"backup {backup.name}", readers)
    if refusal is None and backup.status == "creating":
        refusal = f"backup {backup.name} is still being created"
    if refusal is None and leaning:
        safety = leaning[0]
        refusal = (
            f"backup {backup.name} holds chunks the undo of disk {safety.disk_id} needs "
            f"(safety snapshot {safety.name}, until {safety.expires_at:%Y-%m-%d %H:%M}); "
            "delete that snapshot first or wait"
        )
    note = "freed by the next vault gc"
    if backup.status == "deleting":
        note = "finishes a deletion cut short"
    if until is not None:
        note = lock_text(until)
    return Plan(
        "delete backup",
        f"{backup.name} ({backup.id})",
        (
            PlanItem(
                "delete",
                "backup",
                backup.id,
                backup.name,
                unique_bytes,
                note,
            ),
        ),
        refusal=refusal,
    )


def plan_restore(
    backup: Backup,
    *,
    to_original: bool,
    target: DiskFacts | None,
    new_name: str | None = None,
    new_size: int | None = None,
    existing: Disk | None = None,
    force: bool = False,
    rate: float = DEFAULT_RESTORE_RATE,
) -> Plan:
    """Restore to the original disk (a safety snapshot first, only differing chunks written)
    or to a new, unattached pool disk of at least the backup's size. A new disk's name must be
    free, except to resume the interrupted restore of this same backup into it."""
    estimate = (backup.size - backup.bytes_zero) / rate
    if not to_original:
        size = max(new_size or 0, backup.size)
        refusal = None
        if new_size is not None and new_size < backup.size:
            refusal = (
                f"new disk size {human_size(new_size)} is smaller than the backup "
                f"({human_size(backup.size)})"
            )
        note = f"from backup {backup.name}"
        disk_id = ""
        if existing is not None:
            disk_id = existing.id
            if existing.origin == f"backup:{backup.id}" and existing.restore_incomplete:
                note = f"resume the interrupted restore of {backup.name}"
                refusal = refusal or disk_busy(
                    existing, target.owner if target else None, target.here if target else ""
                )
            else:
                refusal = f"a disk named {new_name!r} already exists; choose another name"
        return Plan(
            "restore backup to a new disk",
            f"{backup.name} -> new disk {new_name}",
            (PlanItem("create", "disk", disk_id, new_name or "", size, note),),
            refusal=refusal,
            destructive=False,
            route="full restore into a new sparse disk",
            estimate_seconds=estimate,
        )
    if target is None:
        return Plan(
            "restore backup onto its original disk",
            backup.name,
            refusal=f"the original disk {backup.disk_name} was deleted; use --to-new NAME",
        )
    disk = target.disk
    if disk.id != backup.disk_id:
        refusal: str | None = (
            f"backup {backup.name} was taken from disk {backup.disk_name}, not {disk.name}; "
            "restore it to a new disk instead"
        )
    else:
        refusal = _overwrite_refusal(target, source_size=backup.size, force=force)
    return Plan(
        "restore backup onto its original disk",
        f"{backup.name} -> disk {disk.name}",
        (
            safety_snapshot_item(target),
            PlanItem("overwrite", "disk", disk.id, disk.name, backup.size),
        ),
        refusal=refusal,
        confirm_text=disk.name,
        route="changed chunks only (blocks that already match are neither fetched nor written)",
        estimate_seconds=estimate,
    )


# --- snapshots ---------------------------------------------------------------------------


def plan_snapshot_create(facts: DiskFacts, *, strategy: str) -> Plan:
    """At most `snapshot_limit` snapshots per disk; one owner of a disk at a time."""
    disk = facts.disk
    refusal = disk_busy(disk, facts.owner, facts.here)
    if refusal is None and facts.snapshots >= facts.snapshot_limit:
        refusal = (
            f"disk {disk.name} already has {facts.snapshots} snapshots (limit "
            f"{facts.snapshot_limit}); delete some or raise max_snapshots_per_disk"
        )
    elif refusal is None and disk.status != "available":
        refusal = f"disk {disk.name} is {disk.status}"
    return Plan(
        "snapshot",
        f"disk {disk.name}",
        (PlanItem("create", "snapshot", "", "", 0, strategy),),
        refusal=refusal,
        destructive=False,
        route=strategy,
    )


def plan_snapshot_delete(
    snapshot: Snapshot,
    *,
    disk: Disk,
    owner: Job | None,
    readers: Sequence[Job],
    freed: int,
    here: str = "",
) -> Plan:
    """Deleting a snapshot never touches disks made from it; refused while a job reads it,
    while it is being made, and while its disk is being snapshotted, rolled back or undone
    (other writers of the store are safe: its writer sessions guard its chunks), and on any
    host but its disk's (its bytes live with the disk). `freed`: bytes no other snapshot of
    the disk shares."""
    refusal = disk_elsewhere(disk, here) or _readers_refusal(f"snapshot {snapshot.name}", readers)
    if refusal is None and snapshot.status == "creating":
        refusal = f"snapshot {snapshot.name} is still being created"
    if refusal is None and owner is not None and owner.kind in ("snapshot", "rollback", "undo"):
        refusal = disk_busy(disk, owner)
    return Plan(
        "delete snapshot",
        f"{snapshot.name} ({snapshot.id})",
        (snapshot_item(snapshot, "delete", freed=freed),),
        refusal=refusal,
    )


def plan_rollback(snapshot: Snapshot, *, facts: DiskFacts, force: bool = False) -> Plan:
    """Roll a disk back to one of its own snapshots, after a safety snapshot for undo."""
    disk = facts.disk
    refusal = None
    if snapshot.disk_id != disk.id:
        refusal = f"snapshot {snapshot.name} belongs to another disk"
    elif snapshot.status != "available":
        refusal = f"snapshot {snapshot.name} is {snapshot.status}"
    refusal = refusal or _overwrite_refusal(facts, source_size=snapshot.size, force=force)
    route = "reflink clone (constant time)" if snapshot.strategy == "reflink" else "changed chunks"
    return Plan(
        "roll back disk",
        f"disk {disk.name} to snapshot {snapshot.name}",
        (
            safety_snapshot_item(facts),
            PlanItem("overwrite", "disk", disk.id, disk.name, snapshot.size),
            PlanItem("keep", "snapshot", snapshot.id, snapshot.name, 0),
        ),
        refusal=refusal,
        confirm_text=disk.name,
        route=route,
    )


def plan_new_disk_from(
    source_kind: str,
    source_id: str,
    source_name: str,
    *,
    size: int,
    new_name: str,
    name_taken: bool = False,
    source_status: str = "available",
) -> Plan:
    """A new, unattached pool disk made from an available snapshot or backup; nothing is
    overwritten, and the name must be free."""
    refusal = None
    if source_status != "available":
        refusal = f"{source_kind} {source_name} is {source_status}"
    elif name_taken:
        refusal = f"a disk named {new_name!r} already exists; choose another name"
    return Plan(
        f"new disk from {source_kind}",
        f"{source_name} -> {new_name}",
        (PlanItem("create", "disk", "", new_name, size, f"from {source_kind} {source_name}"),),
        destructive=False,
        refusal=refusal,
    )


def plan_undo(
    facts: DiskFacts, *, safety: Snapshot | None, force: bool = False, freed: int = 0
) -> Plan:
    """Undo puts a disk back as it was before the last overwrite, within the safety window,
    in one step, also after an interrupted restore or rollback (and clears its mark)."""
    disk = facts.disk
    if safety is None:
        nothing = Refusal(f"nothing to undo on disk {disk.name}", NotFound)
        return Plan("undo", f"disk {disk.name}", refusal=nothing)
    note = "clears the incomplete mark" if disk.restore_incomplete else ""
    refusal = disk_busy(disk, facts.owner, facts.here) or _writers_refusal(
        disk, facts.writers, force
    )
    return Plan(
        "undo last overwrite",
        f"disk {disk.name} back to {safety.created_at:%Y-%m-%d %H:%M:%S}",
        (
            PlanItem("overwrite", "disk", disk.id, disk.name, safety.size, note),
            snapshot_item(safety, "delete", when="after-success", freed=freed),
        ),
        refusal=refusal,
        confirm_text=disk.name,
        route="roll back to the safety snapshot",
    )


# --- vaults and policies -----------------------------------------------------------------


def plan_vault_remove(
    vault: VaultRecord,
    *,
    backups: Sequence[Backup],
    force: bool,
    running: Sequence[Job] = (),
    policies: Sequence[str] = (),
    leaning: Sequence[Snapshot] = (),
) -> Plan:
    """Forgetting a vault never deletes its data; refused while backups reference it, unless
    --force forgets them too (a later `vault import` brings them back)."""
    items = [
        PlanItem("delete", "vault", vault.id, vault.name, note="catalog entry; data stays in store")
    ]
    items += [
        PlanItem("delete", "backup", b.id, b.name, note="catalog entry only") for b in backups
    ]
    refusal = None
    if backups and not force:
        refusal = (
            f"vault {vault.name} holds {len(backups)} backup(s); delete them or use --force "
            "(the data stays in the store and can be imported again)"
        )
    if policies:
        refusal = (
            f"vault {vault.name} is the target of policy {', '.join(policies)}; delete it first"
        )
    if leaning:
        refusal = (
            f"the undo of disk {leaning[0].disk_id} (safety snapshot {leaning[0].name}) reads "
            f"chunks from vault {vault.name}; delete that snapshot first or wait"
        )
    if any(b.status == "creating" for b in backups):
        refusal = f"a backup into vault {vault.name} is running"
    if running:
        refusal = f"vault {vault.name} is used by job {running[0].id} ({running[0].kind})"
    return Plan("remove vault", f"{vault.name} ({vault.location})", tuple(items), refusal=refusal)


def plan_policy_delete(policy: Policy, *, disks: Sequence[Disk]) -> Plan:
    """Deleting a policy stops its future backups; the backups it made are kept."""
    note = f"covers {', '.join(d.name for d in disks)}" if disks else "covers no disk"
    return Plan(
        "delete policy",
        policy.name,
        (PlanItem("delete", "policy", policy.id, policy.name, note=f"{note}; backups kept"),),
    )


def plan_gc(vault: VaultRecord, stats: GcStats, *, grace_seconds: float) -> Plan:
    """GC deletes chunks no manifest references only once they were condemned longer than the
    grace period ago (and no writer is live); the rest are condemned now and freed by a later
    run. `stats` is the dry run of exactly that (`collect_garbage(dry_run=True)`)."""
    items = []
    if stats.deleted_chunks:
        items.append(
            PlanItem(
                "delete",
                "chunks",
                "",
                f"{stats.deleted_chunks} unreferenced chunks",
                stats.deleted_bytes,
                "condemned longer than the grace period",
            )
        )
    if stats.condemned_chunks:
        when = "by this run" if grace_seconds <= 0 else f"by a gc after {grace_seconds:g} s"
        items.append(
            PlanItem(
                "keep",
                "chunks",
                "",
                f"{stats.condemned_chunks} newly unreferenced chunks",
                stats.condemned_bytes,
                f"condemned now, freed {when}",
            )
        )
    if stats.retained_chunks:
        items.append(
            PlanItem(
                "keep",
                "chunks",
                "",
                f"{stats.retained_chunks} unreferenced chunks retained by S3 Object Lock",
                stats.retained_bytes,
                f"retained until {stats.retained_free_at}: freed by a gc after then",
            )
        )
    if stats.locked_backups:
        items.append(
            PlanItem(
                "keep",
                "backups",
                "",
                f"{stats.locked_backups} locked backups",
                0,
                f"their chunks stay; the first lock passes at {stats.locked_until}",
            )
        )
    warnings = (
        (f"{stats.deferred_chunks} condemned chunks wait for the grace period or a live writer",)
        if stats.deferred_chunks
        else ()
    )
    return Plan("garbage-collect vault", vault.name, tuple(items), warnings=warnings)
