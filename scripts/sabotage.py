"""Sabotage: each invariant and lifecycle rule broken on purpose, and the suite must notice.

A sabotage is a small patch that breaks exactly one rule, plus the tests that claim that
rule. For each one this script copies the repository's tracked files into a fresh temporary
directory, applies the patch there (every old text must occur exactly once, else the
sabotage is stale), and runs its tests in the copy with this interpreter. The tests must
fail (CAUGHT); a sabotage whose tests pass (SURVIVED) is a hole in the suite, and a stale
one is a sabotage that no longer applies (its code moved). Either makes the script exit
non-zero, and so does a control run of the same tests on the unsabotaged copy that fails (a
catch means something only when the tests pass on the real code).

    python scripts/sabotage.py            # all of them (a few minutes on 2 cores)
    python scripts/sabotage.py --list     # their names and what each breaks
    python scripts/sabotage.py --only NAME [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 600  # seconds for one sabotage's tests; running past it counts as caught


@dataclass(frozen=True)
class Patch:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Sabotage:
    name: str
    breaks: str
    patches: tuple[Patch, ...]
    tests: tuple[str, ...]  # pytest node ids or files; "-k", EXPRESSION also works


BR = "tests/test_backup_reliability.py"
OT = "tests/test_one_truth.py"
HV = "tests/test_hostile_vault.py"
LC = "tests/test_lifecycle.py"
RO = "tests/test_read_only.py"
GAPS = "tests/test_sabotage_gaps.py"
PO = "tests/test_policies.py"
OL = "tests/test_object_lock.py"

SABOTAGES: tuple[Sabotage, ...] = (
    Sabotage(
        "gc-grace-ignored",
        "GC deletes condemned chunks before the grace period has passed",
        (
            Patch(
                "core/repo/gc.py",
                "        if live or now - info.mtime < grace_seconds:\n"
                "            stats.deferred_chunks += len(ids)\n"
                "            continue\n"
                "        for chunk_id in ids:\n",
                "        if live:\n"
                "            stats.deferred_chunks += len(ids)\n"
                "            continue\n"
                "        for chunk_id in ids:\n",
            ),
        ),
        (
            f"{GAPS}::test_gc_keeps_condemned_chunks_within_the_grace_period",
            f"{OT}::test_gc_dry_run_says_what_the_run_deletes_and_what_it_only_condemns",
        ),
    ),
    Sabotage(
        "writer-rescue-off",
        "a backup reuses a condemned chunk without rescuing it (storing it again)",
        (
            Patch(
                "core/engine/pipeline.py",
                "condemned = chunk_id in session.condemned",
                "condemned = False",
            ),
        ),
        (
            f"{BR}::test_a_writer_rescues_condemned_chunks_and_gc_keeps_them",
            f"{GAPS}::test_a_rescued_chunk_outlives_the_list_that_condemned_it",
        ),
    ),
    Sabotage(
        "gc-ignores-rescues",
        "GC deletes a condemned chunk a writer stored again after it was condemned",
        (
            Patch(
                "core/repo/gc.py",
                "if stamp is None or digest in referenced or found.mtime >= stamp:\n"
                "                continue  # not condemned long enough",
                "if stamp is None or digest in referenced:\n"
                "                continue  # not condemned long enough",
            ),
        ),
        (
            f"{BR}::test_a_writer_rescues_condemned_chunks_and_gc_keeps_them",
            f"{GAPS}::test_a_rescued_chunk_outlives_the_list_that_condemned_it",
        ),
    ),
    Sabotage(
        "gc-lease-unchecked",
        "GC deletes on after its lock's lease lapsed or another GC took the lock",
        (
            Patch(
                "core/repo/gc.py",
                '        """Self-fencing: a holder whose lease may have lapsed deletes nothing more."""\n',
                '        """Self-fencing: a holder whose lease may have lapsed deletes nothing more."""\n'
                "        return\n",
            ),
        ),
        (f"{BR}::test_a_gc_whose_lease_lapsed_fences_itself_and_another_takes_over",),
    ),
    Sabotage(
        "manifest-overwrite",
        "committing a manifest over an existing one with other content is not refused",
        (
            Patch(
                "core/repo/repository.py",
                "            if existing.digest != manifest.digest:\n"
                "                raise IntegrityError(",
                "            if False:\n                raise IntegrityError(",
            ),
        ),
        (f"{GAPS}::test_a_manifest_is_created_once_never_overwritten",),
    ),
    Sabotage(
        "freed-ignores-dedup",
        "the bytes a delete frees count chunks other backups still reference",
        (
            Patch(
                "core/repo/repository.py",
                "            unique[manifest_id] = (found.referenced() if found else set()) - kept - seen\n",
                "            unique[manifest_id] = (found.referenced() if found else set()) - seen\n",
            ),
        ),
        (
            "tests/test_backups_cli.py::test_backup_delete_then_gc_frees_only_unreferenced_chunks",
            f"{GAPS}::test_deleting_a_backup_frees_only_chunks_no_other_backup_needs",
        ),
    ),
    Sabotage(
        "disk-delete-ignores-jobs",
        "a disk is deleted while a running job uses it or reads its snapshots",
        (
            Patch(
                "core/rules/lifecycle.py",
                "        refusal=disk_busy(disk, facts.owner, facts.here)\n"
                '        or _readers_refusal(f"a snapshot of disk {disk.name}", readers),\n',
                "        refusal=None,\n",
            ),
        ),
        (f"{LC}::test_deleting_a_disk_used_by_a_running_job_is_refused_naming_job_and_host",),
    ),
    Sabotage(
        "disk-delete-ignores-readers",
        "a disk is deleted while a running job reads one of its snapshots",
        (
            Patch(
                "core/rules/lifecycle.py",
                "        refusal=disk_busy(disk, facts.owner, facts.here)\n"
                '        or _readers_refusal(f"a snapshot of disk {disk.name}", readers),\n',
                "        refusal=disk_busy(disk, facts.owner, facts.here),\n",
            ),
        ),
        (
            f"{GAPS}::test_deleting_a_disk_whose_snapshot_a_job_reads_is_refused",
            f"{OT}::test_what_a_job_reads_or_an_undo_needs_cannot_be_deleted",
        ),
    ),
    Sabotage(
        "backup-row-loses-server-and-role",
        "a backup no longer records its disk's server and role",
        (
            Patch(
                "core/ops/backups.py",
                '            server_name=meta["server"],\n            role=disk.role,\n',
                '            server_name="",\n            role="",\n',
            ),
        ),
        (f"{GAPS}::test_a_backup_records_its_disks_server_and_role",),
    ),
    Sabotage(
        "claim-without-compare-and-set",
        "two transactions can both claim one disk (no version check, no claim lock)",
        (
            Patch(
                "core/jobs/claims.py",
                ".where(model.id == row.id, model.version == row.version, model.status == row.status)",
                ".where(model.id == row.id)",
            ),
            Patch(
                "core/catalog/db.py",
                "            session.execute(\n"
                "                sa.update(models.Meta)\n"
                "                .where(models.Meta.key == CLAIM_LOCK_KEY)\n"
                "                .values(value=models.Meta.value)\n"
                "            )\n",
                "",
            ),
        ),
        (f"{GAPS}::test_a_claim_on_a_row_changed_since_it_was_read_is_refused",),
    ),
    Sabotage(
        "executor-trusts-stale-plan",
        "the executor runs a plan that differs from the one the user confirmed",
        (
            Patch(
                "core/ops/facts.py",
                "if shown is not None and not shown.same_as(now):",
                "if False:",
            ),
        ),
        (f"{OT}::test_a_plan_that_changed_since_it_was_shown_is_refused_with_the_new_plan",),
    ),
    Sabotage(
        "quarantine-off",
        "a chunk found damaged is reused by the next backup instead of stored again",
        (Patch("core/engine/pipeline.py", "        known -= sick\n", ""),),
        (
            f"{HV}::test_a_damaged_chunk_is_stored_again_by_the_next_backup",
            f"{GAPS}::test_a_chunk_found_damaged_is_not_reused_from_the_parent",
        ),
    ),
    Sabotage(
        "symlinks-followed",
        "a local vault follows a planted directory symlink out of the vault",
        (
            Patch(
                "core/stores/local.py",
                "_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW\n",
                "_DIR_FLAGS = _ROOT_FLAGS\n",
            ),
        ),
        (
            f"{HV}::test_gc_never_follows_a_symlink_out_of_the_vault",
            f"{HV}::test_a_backup_never_writes_through_a_planted_symlink",
        ),
    ),
    Sabotage(
        "escaping-off",
        "names read from a vault reach the terminal with their control characters",
        (
            Patch(
                "core/base/text.py",
                "    if not newlines:\n        return _UNSAFE.sub(_escape, str(text))\n",
                "    return str(text)\n",
            ),
        ),
        (f"{HV}::test_a_name_from_a_vault_cannot_drive_the_terminal",),
    ),
    Sabotage(
        "read-only-writable",
        "--read-only opens the catalog writable",
        (
            Patch(
                "core/catalog/db.py",
                "self.engine = make_read_only_engine(url) if read_only else make_engine(url)",
                "self.engine = make_engine(url)",
            ),
        ),
        (f"{GAPS}::test_a_read_only_catalog_refuses_a_write_at_the_database_itself", RO),
    ),
    Sabotage(
        "read-only-engine-writable",
        "the read-only engine opens SQLite writable (no mode=ro, no query_only)",
        (
            Patch("core/catalog/db.py", "?mode=ro&uri=true", "?uri=true"),
            Patch(
                "core/catalog/db.py",
                '            dbapi_connection.execute("PRAGMA query_only=ON")\n',
                "",
            ),
        ),
        (f"{GAPS}::test_a_read_only_catalog_refuses_a_write_at_the_database_itself", RO),
    ),
    Sabotage(
        "gc-uses-host-clock",
        "I4: gc judges writer sessions and condemned lists by its own host's wall clock",
        (
            Patch(
                "core/repo/gc.py",
                "    now = vault.store_clock()  # ages by the store's clock, not this host's\n",
                "    now = time.time()\n",
            ),
        ),
        ("tests/test_clock_skew.py::test_a_skewed_gc_spares_the_chunks_of_a_running_backup",),
    ),
    Sabotage(
        "writer-ignores-holders-lease",
        "I9: a writer waits only its own host's lease, not the gc lock holder's",
        (
            Patch(
                "core/repo/repository.py",
                "            lease = max(self.vault.gc_lease, self.vault.gc_lock_lease())\n",
                "            lease = self.vault.gc_lease\n",
            ),
        ),
        (
            "tests/test_two_hosts.py::"
            "test_a_writer_with_a_shorter_lease_loses_nothing_to_a_gc_still_deleting",
        ),
    ),
    Sabotage(
        "slot-claimed-twice",
        "L30: a policy slot another runner already claimed is run again",
        (
            Patch(
                "core/ops/policies.py",
                "        if session.get(PolicySlot, (policy.id, stamp, kind)) is not None:\n"
                "            return False\n",
                "        if session.get(PolicySlot, (policy.id, stamp, kind)) is not None:\n"
                "            return True\n",
            ),
        ),
        (f"{PO}::test_two_runners_that_both_saw_a_slot_due_run_it_once",),
    ),
    Sabotage(
        "retention-ignores-pins",
        "L31: retention expires pinned backups",
        (
            Patch(
                "core/ops/policies.py",
                "        protected = {b.id for b in good if b.pinned}\n",
                "        protected = set()\n",
            ),
        ),
        (f"{PO}::test_pinned_and_manual_backups_never_expire",),
    ),
    Sabotage(
        "retention-expires-manual-backups",
        "L31: retention expires backups its policy did not make",
        (
            Patch(
                "core/ops/policies.py",
                "        mine = [b for b in good if b.policy_id == policy.id]\n",
                "        mine = list(good)\n",
            ),
        ),
        (f"{PO}::test_pinned_and_manual_backups_never_expire",),
    ),
    Sabotage(
        "lock-ignored-by-plan",
        "issue 12: the delete plan of a locked backup is not refused",
        (
            Patch(
                "core/rules/lifecycle.py",
                "    until = locked_until(backup, now)\n    refusal = None\n",
                "    until = None\n    refusal = None\n",
            ),
        ),
        (f"{OL}::test_a_local_vault_records_the_lock_and_refuses",),
    ),
    Sabotage(
        "lock-ignored-by-vault",
        "issue 12, I7: a host whose catalog does not know a backup's lock deletes it",
        (
            Patch(
                "core/repo/repository.py",
                "        until = self.locked_until(manifest_id)\n        if until is not None:\n",
                "        until = self.locked_until(manifest_id)\n        if False:\n",
            ),
        ),
        (f"{OL}::test_a_local_vault_records_the_lock_and_refuses",),
    ),
)


def tracked_files() -> list[str]:
    """The repository's files: tracked ones, and new ones not yet added (not ignored ones)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def copy_tree(files: list[str], dest: Path) -> None:
    for name in files:
        source = ROOT / name
        if not source.is_file():  # deleted in the work tree but still tracked
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def apply(sabotage: Sabotage, dest: Path) -> str | None:
    """Apply every patch; the reason it is stale, or None."""
    texts: dict[str, str] = {}
    for patch in sabotage.patches:
        path = dest / patch.path
        if patch.path not in texts:
            if not path.is_file():
                return f"{patch.path} does not exist"
            texts[patch.path] = path.read_text()
        count = texts[patch.path].count(patch.old)
        if count != 1:
            first = patch.old.strip().splitlines()[0] if patch.old.strip() else patch.old
            return f"{patch.path}: old text found {count} times: {first!r}"
        texts[patch.path] = texts[patch.path].replace(patch.old, patch.new)
    for name, text in texts.items():
        (dest / name).write_text(text)
    return None


def run_one(sabotage: Sabotage, files: list[str], verbose: bool) -> tuple[str, float, str]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"sabotage-{sabotage.name}-") as scratch:
        dest = Path(scratch)
        copy_tree(files, dest)
        stale = apply(sabotage, dest)
        if stale:
            return "STALE", time.monotonic() - started, stale
        env = dict(os.environ, PYTHONPATH=str(dest), PYTHONDONTWRITEBYTECODE="1")
        # a sabotaged run loses data on purpose: its fault ledger stays in the scratch copy
        env["BLOCKVAULT_LEDGER_DIR"] = str(dest / ".reliability")
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
        command += sabotage.tests
        try:
            result = subprocess.run(
                command,
                cwd=dest,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return "CAUGHT", time.monotonic() - started, f"timed out after {RUN_TIMEOUT} s"
        tail = (result.stdout + result.stderr).strip().splitlines()
        summary = tail[-1] if tail else ""
        if verbose:
            print(result.stdout + result.stderr)
        if result.returncode == 0:
            return "SURVIVED", time.monotonic() - started, summary
        if result.returncode in (4, 5):  # usage error / no tests collected: not a real catch
            return (
                "STALE",
                time.monotonic() - started,
                f"pytest exit {result.returncode}: {summary}",
            )
        return "CAUGHT", time.monotonic() - started, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run just this one")
    parser.add_argument("--list", action="store_true", help="list the sabotages and exit")
    parser.add_argument(
        "--no-control", action="store_true", help="skip the run of the same tests unsabotaged"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's output")
    args = parser.parse_args(argv)
    if args.list:
        for sabotage in SABOTAGES:
            print(f"{sabotage.name:36} {sabotage.breaks}")
        return 0
    chosen = list(SABOTAGES)
    if args.only:
        known = {s.name for s in SABOTAGES}
        unknown = [name for name in args.only if name not in known]
        if unknown:
            parser.error(f"no sabotage named {', '.join(unknown)} (see --list)")
        chosen = [s for s in SABOTAGES if s.name in args.only]
    files = tracked_files()
    started = time.monotonic()
    rows = []
    if not args.no_control:  # the same tests must pass on the real code, or a catch means nothing
        plain = [s.tests for s in chosen if "-k" not in s.tests]
        selections = [tuple(dict.fromkeys(t for tests in plain for t in tests))] if plain else []
        selections += [s.tests for s in chosen if "-k" in s.tests]  # one run per expression
        for tests in selections:
            control = Sabotage("control", "nothing: the real code", (), tests)
            outcome, seconds, detail = run_one(control, files, args.verbose)
            outcome = {"SURVIVED": "PASSED", "CAUGHT": "FAILED"}.get(outcome, outcome)
            rows.append(("(control: no sabotage)", outcome, seconds, detail))
            print(f"{'(control: no sabotage)':36} {outcome:8} {seconds:6.1f} s  {detail}")
    for sabotage in chosen:
        outcome, seconds, detail = run_one(sabotage, files, args.verbose)
        rows.append((sabotage.name, outcome, seconds, detail))
        print(f"{sabotage.name:36} {outcome:8} {seconds:6.1f} s  {detail}", flush=True)
    total = time.monotonic() - started
    print()
    print("| sabotage | outcome | seconds |")
    print("|---|---|---|")
    for name, outcome, seconds, _ in rows:
        print(f"| {name} | {outcome} | {seconds:.1f} |")
    print(f"\n{len(chosen)} sabotages in {total:.0f} s", end="")
    bad = [row for row in rows if row[1] not in ("CAUGHT", "PASSED")]
    if bad:
        print(f"; not caught: {', '.join(name for name, *_ in bad)}")
        return 1
    print("; every one caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
