"""Replication rules as pure functions: may a backup be copied into another vault, and where
does a restore read when a backup's own vault cannot be reached.

A copy is a backup of its own (its own row, name and manifest) whose `copy_of` names the
backup it was copied from; a backup and its copies, and their copies, form one family of
identical disks in several vaults.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.base.units import human_size
from core.catalog.models import Backup, VaultRecord
from core.rules.plans import Plan, PlanItem

MAX_NAME = 63


def copy_name(backup: Backup, vault: VaultRecord, taken: Iterable[str]) -> str:
    """`<backup name>-<vault name>` (shortened to a valid name), with a suffix when taken."""
    used = set(taken)
    base = f"{backup.name}-{vault.name}"[:MAX_NAME].rstrip("-.")
    name, suffix = base, 1
    while name in used:
        suffix += 1
        tail = f"-{suffix}"
        name = base[: MAX_NAME - len(tail)] + tail
    return name


def family(backup: Backup, rows: Iterable[Backup]) -> list[Backup]:
    """The backup, what it was copied from and every copy of any of them (transitively)."""
    by_id = {b.id: b for b in rows}
    by_id[backup.id] = backup
    links: dict[str, set[str]] = {}
    for row in by_id.values():
        if row.copy_of and row.copy_of in by_id:
            links.setdefault(row.id, set()).add(row.copy_of)
            links.setdefault(row.copy_of, set()).add(row.id)
    seen, todo = {backup.id}, [backup.id]
    while todo:
        for other in links.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return [by_id[i] for i in sorted(seen)]


def plan_copy(
    backup: Backup,
    *,
    source: VaultRecord,
    target: VaultRecord,
    relatives: Iterable[Backup],
    name: str,
) -> Plan:
    """Copy a backup into another vault (only chunks missing there are sent). Refused: a
    backup not available, the vault it is in, another chunk size, plaintext out of an
    encrypted vault, a vault already holding this backup (or a copy of it)."""
    already = next(
        (b for b in relatives if b.vault_id == target.id and b.status != "deleting"), None
    )
    refusal = None
    if backup.status != "available":
        refusal = f"backup {backup.name} is {backup.status}"
    elif target.id == source.id:
        refusal = f"backup {backup.name} is already in vault {target.name}; choose another vault"
    elif already is not None:
        which = "it" if already.id == backup.id else f"its copy {already.name}"
        which += ", being made" if already.status == "creating" else ""
        refusal = f"vault {target.name} already holds backup {backup.name} ({which})"
    elif target.chunk_size != source.chunk_size:
        refusal = (
            f"vault {target.name} stores {human_size(target.chunk_size)} chunks and vault "
            f"{source.name} {human_size(source.chunk_size)} chunks: a copy needs the same chunk "
            "size (add a vault with --chunk-size to match)"
        )
    elif source.encrypted and not target.encrypted:
        refusal = (
            f"vault {source.name} is encrypted and vault {target.name} is not: the copy would "
            "be stored in plaintext; copy into an encrypted vault"
        )
    elif target.status != "available":
        refusal = f"vault {target.name} is {target.status}"
    return Plan(
        "copy backup",
        f"{backup.name} -> vault {target.name}",
        (
            PlanItem(
                "create",
                "backup",
                "",
                name,
                backup.size,
                f"copy of {backup.name} in vault {target.name}",
            ),
            PlanItem(
                "keep", "backup", backup.id, backup.name, backup.size, f"in vault {source.name}"
            ),
        ),
        refusal=refusal,
        destructive=False,
        route=f"vault {source.name} -> vault {target.name}: only chunks missing there are sent",
    )


def read_route(
    backup: Backup, *, read: Backup, vault: VaultRecord, own_vault: VaultRecord, why: str
) -> str:
    """The plan's line when a restore reads a replica: which vault, and why not its own."""
    relation = (
        f"replica {read.name} of {backup.name}"
        if read.copy_of == backup.id
        else f"{read.name}, of which {backup.name} is a copy"
        if backup.copy_of == read.id
        else f"{read.name}, a copy of the same backup"
    )
    return f"reads vault {vault.name} ({relation}; vault {own_vault.name} unreachable: {why})"
