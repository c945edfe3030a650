"""A vault is a folder other people can write (RELIABILITY I12): nothing planted in it makes
blockvault read, write or delete outside it, hang, or leave files readable by others.

Each test plants what the issue "Hostile vaults and bad input" found, runs the real CLI, and
checks the files outside the vault byte for byte, the exit code and the one-line error.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from tests.support.cli import CLI
from tests.support.ledger import Ledger
from tests.test_backup_reliability import (
    CONFIG,
    MiB,
    fill,
    finished,
    job_result,
    kept,
    refused,
    run_job,
    said,
    sha,
    stored_backups,
    tree,
)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def bait(folder: Path) -> dict[Path, bytes]:
    """Old files outside the vault that a confused gc or backup would delete or overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("config.txt", "ab" * 32, "notes"):
        path = folder / name
        path.write_bytes(os.urandom(64))
        old = time.time() - 30 * 24 * 3600
        os.utime(path, (old, old))
        files[path] = path.read_bytes()
    return files


def untouched(files: dict[Path, bytes], folder: Path) -> None:
    assert {p: p.read_bytes() for p in files} == files
    assert sorted(folder.iterdir()) == sorted(files), "nothing was written outside the vault"


def is_untouched(files: dict[Path, bytes], folder: Path) -> bool:
    """`untouched` as a value, for the fault ledger (a deleted file is not an error here)."""
    return (
        all(p.is_file() and p.read_bytes() == data for p, data in files.items())
        and folder.is_dir()
        and sorted(folder.iterdir()) == sorted(files)
    )


def backed_up(cli: CLI) -> dict:
    disk = cli.ok("disk", "create", "d", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=1)
    backup = run_job(cli, "backup", "create", "d")
    cli.ok("backup", "delete", backup["id"], "--yes")  # its chunks become garbage
    return backup


@pytest.mark.parametrize("planted", ["trash", "condemned", "chunks/ab", "sessions"])
@pytest.mark.slow
def test_gc_never_follows_a_symlink_out_of_the_vault(
    cli: CLI, tmp_path: Path, planted: str, fault_ledger: Ledger
) -> None:
    backed_up(cli)
    outside = tmp_path / "outside"
    files = bait(outside)
    link = cli.home / "vault" / planted
    if link.exists():
        os.rename(link, link.with_name(link.name + ".moved"))
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    result = cli("vault", "gc", "--grace", "0")
    fault_ledger.record(
        "hostile",
        detected=said(result, "symlink"),
        data_intact=is_untouched(files, outside),
        note=f"vault/{planted} a symlink out of the vault, then gc"
        + ("" if result.code else " (gc succeeded without a word)"),
    )
    assert "Traceback" not in result.err
    if result.code != 0:
        assert "symlink" in result.err
    untouched(files, outside)


@pytest.mark.parametrize("planted", ["chunks", "sessions", "manifests"])
@pytest.mark.slow
def test_a_backup_never_writes_through_a_planted_symlink(
    cli: CLI, tmp_path: Path, planted: str, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=2)
    run_job(cli, "backup", "create", "d")  # the vault exists
    outside = tmp_path / "outside"
    files = bait(outside)
    vault = cli.home / "vault"
    if planted == "chunks":  # every chunks/XX folder a new chunk could land in
        for prefix in (f"{i:02x}" for i in range(256)):
            link = vault / "chunks" / prefix
            if link.exists():
                os.rename(link, vault / f"moved-{prefix}")
            link.symlink_to(outside)
    else:
        link = vault / planted
        os.rename(link, vault / f"moved-{planted}")
        link.symlink_to(outside)
    fill(disk["path"], 2 * MiB, seed=3)  # new chunks to store
    result = cli("backup", "create", "d")
    listed = cli.ok("backup", "list", "--all")
    fault_ledger.record(
        "hostile",
        detected=said(result, "symlink"),
        data_intact=is_untouched(files, outside),
        partial_visible=result.code != 0 and len(listed) != 1,
        note=f"vault/{planted} a symlink out of the vault, then a backup",
    )
    assert "symlink" in refused(result)
    untouched(files, outside)


def test_a_planted_config_link_or_fifo_is_refused_not_read(
    cli: CLI, tmp_path: Path, fault_ledger: Ledger
) -> None:
    vault = tmp_path / "v1"
    vault.mkdir()
    (vault / "config").symlink_to("/dev/zero")
    linked = cli("vault", "add", "v1", "--path", str(vault))
    fault_ledger.record(
        "hostile",
        detected=said(linked, "symlink"),
        # nothing written into the planted vault, nor through its link
        data_intact=sorted(vault.iterdir()) == [vault / "config"]
        and os.readlink(vault / "config") == "/dev/zero",
        note="vault config a symlink to /dev/zero",
    )
    assert "symlink" in refused(linked)
    fifo = tmp_path / "v2"
    fifo.mkdir()
    os.mkfifo(fifo / "config")
    started = time.monotonic()
    piped = cli("vault", "add", "v2", "--path", str(fifo))
    seconds = time.monotonic() - started
    fault_ledger.record(
        "hostile",
        detected=said(piped, "not a regular file") and seconds < 5,
        data_intact=sorted(fifo.iterdir()) == [fifo / "config"]
        and stat.S_ISFIFO((fifo / "config").lstat().st_mode),
        note=f"vault config a FIFO (answered in {seconds:.1f} s)",
    )
    assert "not a regular file" in refused(piped)
    assert seconds < 5


def test_a_local_vault_is_readable_by_its_owner_only(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=3)
    run_job(cli, "backup", "create", "d")
    vault = cli.home / "vault"
    for path in [vault, *vault.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


# --- authenticated settings ----------------------------------------------------------------

PASSPHRASE = "correct horse battery staple 42"
MARKER = b"PLAINTEXT-MARKER-blockvault-hostile"


def edit_config(vault: Path, **changes: object) -> None:
    config = json.loads((vault / "config").read_bytes())
    config.update(changes)
    (vault / "config").write_text(json.dumps(config))


def test_a_changed_config_is_refused_naming_what_changed(cli: CLI, fault_ledger: Ledger) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=4)
    run_job(cli, "backup", "create", "d")
    before = stored_backups(cli.home / "vault")
    edit_config(cli.home / "vault", chunk_size=524288)
    result = cli("backup", "create", "d")
    fault_ledger.record(
        "hostile",
        detected=said(result, "config changed since it was added", "chunk_size was 262144"),
        data_intact=kept(before, stored_backups(cli.home / "vault")),
        note="vault config edited (chunk_size) after the vault was added",
    )
    line = refused(result)
    assert "config changed since it was added" in line
    assert "chunk_size was 262144, now 524288" in line


def test_encryption_cannot_be_switched_off_from_outside(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger
) -> None:
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", PASSPHRASE)
    sealed = tmp_path / "sealed"
    cli.ok("vault", "add", "sealed", "--path", str(sealed), "--encrypt")
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    with open(disk["path"], "r+b") as handle:
        handle.write(MARKER * 1000)
    run_job(cli, "backup", "create", "d", "--vault", "sealed")
    before = stored_backups(sealed)
    edit_config(sealed, encryption=None)
    with open(disk["path"], "r+b") as handle:
        handle.write(MARKER[::-1] * 2000)  # new data the backup would have to store
    result = cli("backup", "create", "d", "--vault", "sealed")
    files = [p for p in sealed.rglob("*") if p.is_file()]
    plain = [p for p in files if MARKER in p.read_bytes() or MARKER[::-1] in p.read_bytes()]
    fault_ledger.secrets(scanned=len(files), hits=len(plain))
    fault_ledger.record(
        "hostile",
        detected=said(result, "refusing to write plaintext"),
        data_intact=kept(before, stored_backups(sealed)),
        note="encryption removed from an encrypted vault's config",
    )
    line = refused(result)
    assert "refusing to write plaintext" in line
    for path in sealed.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert MARKER not in data and MARKER[::-1] not in data


def test_an_encrypted_config_edited_without_the_key_fails_authentication(
    cli: CLI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fault_ledger: Ledger,
) -> None:
    """Even a host that never saw the vault (a fresh catalog) refuses edited settings."""
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", PASSPHRASE)
    sealed = tmp_path / "sealed"
    cli.ok("vault", "add", "sealed", "--path", str(sealed), "--encrypt")
    edit_config(sealed, compression=19)
    before = tree(sealed)
    other = CLI(tmp_path / "other-host", capsys)
    result = other("vault", "add", "x", "--path", str(sealed))
    fault_ledger.record(
        "hostile",
        detected=said(result, "fail authentication"),
        data_intact=tree(sealed) == before,  # nothing in the vault rewritten
        note="encrypted vault config edited without the key, added on a new host",
    )
    assert "fail authentication" in refused(result)


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"chunk_size": 0}, "chunk size"),
        ({"chunk_size": -4096}, "chunk size"),
        ({"chunk_size": 4096}, "chunk size"),
        ({"chunk_size": 1 << 40}, "chunk size"),
        ({"chunk_size": "big"}, "chunk size"),
        ({"compression": "lz4"}, "unknown compression"),
        ({"chunk_hash": "md5"}, "unknown chunk hash"),
        ({"encryption": [1, 2]}, "encryption entry"),
        ({"version": 99}, "unsupported vault version"),
    ],
)
@pytest.mark.slow
def test_a_damaged_config_is_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict,
    says: str,
    fault_ledger: Ledger,
) -> None:
    vault = tmp_path / "v"
    first = CLI(tmp_path / "a", capsys)
    first.ok("vault", "add", "v", "--path", str(vault))
    edit_config(vault, **changes)
    before = tree(vault)
    result = CLI(tmp_path / "b", capsys)("vault", "add", "v", "--path", str(vault))
    fault_ledger.record(
        "hostile",
        detected=said(result, says),
        data_intact=tree(vault) == before,
        note=f"vault config edited to {changes}",
    )
    assert says in refused(result)


def test_hostile_key_parameters_and_huge_configs_are_refused_cheaply(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fault_ledger: Ledger,
) -> None:
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", PASSPHRASE)
    vault = tmp_path / "v"
    CLI(tmp_path / "a", capsys).ok("vault", "add", "v", "--path", str(vault), "--encrypt")
    config = json.loads((vault / "config").read_bytes())
    config["encryption"].update(n=1 << 20, r=32, p=4)  # 16 GiB of scrypt memory
    (vault / "config").write_text(json.dumps(config))
    before = tree(vault)
    started = time.monotonic()
    result = CLI(tmp_path / "b", capsys)("vault", "add", "v", "--path", str(vault))
    seconds = time.monotonic() - started
    fault_ledger.record(
        "hostile",
        detected=(said(result, "unsafe parameters") or said(result, "memory")) and seconds < 5,
        data_intact=tree(vault) == before,
        note=f"scrypt parameters asking 16 GiB (refused in {seconds:.1f} s)",
    )
    line = refused(result)
    assert "unsafe parameters" in line or "memory" in line
    assert seconds < 5
    (vault / "config").write_bytes(b" " * (1 << 20) + b"{}")
    before = tree(vault)
    result = CLI(tmp_path / "c", capsys)("vault", "add", "w", "--path", str(vault))
    fault_ledger.record(
        "hostile",
        detected=said(result, "more than"),
        data_intact=tree(vault) == before,
        note="a 1 MiB vault config",
    )
    assert "more than" in refused(result)


# --- names from a vault reach a terminal escaped ------------------------------------------


def test_a_name_from_a_vault_cannot_drive_the_terminal(
    cli: CLI, tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=5)
    backup = run_job(cli, "backup", "create", "d")
    path = cli.home / "vault" / "manifests" / backup["id"]
    blob = path.read_bytes()
    assert blob[0] == 1, "a zstd envelope (flag 1) in an unencrypted vault"
    body = json.loads(zstandard.ZstdDecompressor().decompress(blob[1:]))
    evil = "\x1b[2J\x1b[H[bold]root\u202e-ok\r\nforged"
    body["name"] = evil
    body["disk"]["name"] = evil
    os.chmod(path, 0o600)
    path.write_bytes(b"\x00" + json.dumps(body).encode())  # a raw envelope, as anyone can
    other = CLI(tmp_path / "other", capsys)
    other.ok("vault", "add", "found", "--path", str(cli.home / "vault"))
    imported = other.ok("vault", "import", "found")
    outputs = [
        other(*argv) for argv in (("backup", "list", "--all"), ("backup", "show", backup["id"]))
    ]
    escaped = "\\x1b[2J\\x1b[H[bold]root\\u202e-ok\\x0d\\x0aforged"
    raw = [r for r in outputs if any(c in r.out + r.err for c in ("\x1b", "\u202e", "\r"))]
    fault_ledger.record(
        "hostile",
        detected=not raw and escaped in outputs[-1].out,
        data_intact=[row["id"] for row in imported] == [backup["id"]],
        note="backup and disk names with ESC, bidi and CR/LF in a manifest",
    )
    for shown in outputs:
        assert shown.code == 0, shown.err
        text = shown.out + shown.err
        assert "\x1b" not in text and "\u202e" not in text and "\r" not in text
    assert escaped in shown.out  # shown, not sent


# --- locks that end ------------------------------------------------------------------------


def plant_gc_lock(vault: Path, owner: str, *, mtime: float) -> None:
    lock = vault / "locks" / "gc"
    lock.parent.mkdir(exist_ok=True)
    lock.write_text(json.dumps({"owner": owner, "at": mtime}))
    os.utime(lock, (mtime, mtime))


def test_a_gc_lock_whose_holder_died_on_this_host_is_taken_over_at_once(
    cli: CLI, fault_ledger: Ledger
) -> None:
    backed_up(cli)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    host = os.uname().nodename
    plant_gc_lock(cli.home / "vault", f"{host}:{dead}:cafe", mtime=time.time())
    started = time.monotonic()
    gc = cli("vault", "gc", "--grace", "0", "--json")
    plant_gc_lock(cli.home / "vault", f"{host}:{dead}:beef", mtime=time.time())
    disk = cli.ok("disk", "show", "d")
    fill(disk["path"], MiB, seed=6)
    backup = cli("backup", "create", "d", "--json")
    seconds = time.monotonic() - started
    made = finished(backup)
    verified = bool(made) and cli("backup", "verify", made["id"]).code == 0
    for result, note in ((gc, "then gc"), (backup, "then a backup")):
        fault_ledger.record(
            "kill",
            detected=result.code == 0 and seconds < 20,  # taken over, not waited out
            data_intact=verified,  # the backup made after it reads back whole
            note=f"a gc lock left by a dead process on this host, {note}",
        )
    job_result(gc)
    job_result(backup)
    assert seconds < 20


@pytest.mark.slow
def test_a_gc_lock_from_the_future_costs_one_lease_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_ledger: Ledger
) -> None:
    cli = CLI.with_config(tmp_path / "home", capsys, CONFIG + "gc_lock_lease_seconds = 6\n")
    backed_up(cli)
    future = time.time() + 365 * 24 * 3600
    plant_gc_lock(cli.home / "vault", "elsewhere:1:f00d", mtime=future)
    disk = cli.ok("disk", "show", "d")
    fill(disk["path"], MiB, seed=7)
    started = time.monotonic()
    result = cli("backup", "create", "d", "--json")
    seconds = time.monotonic() - started
    gc = cli("vault", "gc", "--grace", "0", "--json")
    made = finished(result)
    verified = bool(made) and cli("backup", "verify", made["id"]).code == 0
    fault_ledger.record(
        "hostile",
        detected="waiting for a garbage collection (elsewhere:1:f00d)" in result.out
        and seconds < 15
        and gc.code == 0,
        data_intact=verified,
        note=f"a gc lock dated a year ahead (the backup waited {seconds:.1f} s)",
    )
    assert result.code == 0, result.err
    assert seconds < 15, "bounded by one lease, not by the lock's date"
    assert "waiting for a garbage collection (elsewhere:1:f00d)" in result.out
    job_result(gc)  # a lock dated a year ahead has lapsed


def test_a_live_gc_lock_refuses_a_second_gc_naming_its_holder(
    cli: CLI, fault_ledger: Ledger
) -> None:
    backed_up(cli)
    plant_gc_lock(cli.home / "vault", "other-host:4242:abcd", mtime=time.time())
    before = stored_backups(cli.home / "vault")
    result = cli("vault", "gc", "--grace", "0")
    fault_ledger.record(
        "concurrency",
        detected=said(result, "other-host:4242:abcd holds this vault's lock", "lapses after"),
        data_intact=kept(before, stored_backups(cli.home / "vault")),  # it deleted nothing
        note="gc while another host's gc holds the vault's lock",
    )
    line = refused(result)
    assert "other-host:4242:abcd holds this vault's lock" in line and "lapses after" in line


# --- bounded resources, and one bad manifest affects only its own backup -------------------

RSS_LIMIT_KIB = 300 * 1024


def run_measured(home: Path, *argv: str) -> tuple[int, str, int, str]:
    """The CLI in a child process: exit code, stderr, its peak memory (KiB) and stdout."""
    script = (
        "import re, sys\n"
        "from tui.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "status = open('/proc/self/status').read()\n"  # VmHWM: this program's peak, not the parent's
        "sys.stdout.write('\\nMAXRSS ' + re.search(r'VmHWM:\\s+(\\d+)', status)[1] + '\\n')\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "--home", str(home), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    out, peak = done.stdout.rsplit("MAXRSS ", 1)
    return done.returncode, done.stderr, int(peak), out


def plant_manifest(vault: Path, manifest_id: str, envelope: bytes) -> None:
    path = vault / "manifests" / manifest_id
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(envelope)


def zeros_frame(size: int) -> bytes:
    """A zstd frame of `size` zeros, made a MiB at a time (the test itself stays small)."""
    writer = zstandard.ZstdCompressor(level=3).compressobj(size=size)
    block = bytes(1 << 20)
    frame = b"".join(writer.compress(block) for _ in range(size >> 20))
    return frame + writer.flush()


@pytest.mark.slow
def test_manifest_bombs_cost_a_clear_line_not_gigabytes(
    cli: CLI, tmp_path: Path, fault_ledger: Ledger
) -> None:
    backed_up(cli)
    vault = cli.home / "vault"
    plant_manifest(vault, "bk-b0b0b0", b"\x01" + zeros_frame(4 << 30))  # 4 GiB of zeros
    nulls = zstandard.ZstdCompressor().compressobj()  # a JSON list of 50 M chunks, undeclared
    body = nulls.compress(b'{"format":"blockvault-manifest","chunks":[')
    body += b"".join(nulls.compress(b"null," * 1_000_000) for _ in range(50))
    body += nulls.compress(b"null]}") + nulls.flush()
    assert len(body) < 1 << 20
    plant_manifest(vault, "bk-c0c0c0", b"\x01" + body)
    other = tmp_path / "other"
    code, err, _, _ = run_measured(other, "vault", "add", "found", "--path", str(vault))
    assert code == 0, err
    code, err, peak, out = run_measured(other, "vault", "import", "found", "--json")
    rows = json.loads(out) if code == 0 else []
    statuses = {r["id"]: r["status"] for r in rows if isinstance(r, dict)}
    for bomb, note in (("bk-b0b0b0", "4 GiB of zeros"), ("bk-c0c0c0", "50 M undeclared nulls")):
        fault_ledger.record(
            "hostile",
            detected=code == 0 and statuses.get(bomb, "not imported") != "available",
            # nothing to lose here but the importing host: it stayed within its memory
            data_intact=peak < RSS_LIMIT_KIB,
            note=f"manifest bomb ({note}); import peaked at {peak // 1024} MiB, "
            f"bomb {statuses.get(bomb, 'not imported')}",
        )
    assert code == 0 and "Traceback" not in err, err
    assert peak < RSS_LIMIT_KIB, f"vault import peaked at {peak // 1024} MiB"


@pytest.mark.slow
def test_one_damaged_manifest_affects_only_its_own_backup(
    cli: CLI, tmp_path: Path, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=8)
    good_bytes = sha(disk["path"])
    good = run_job(cli, "backup", "create", "d")
    fill(disk["path"], MiB, seed=9)
    bad = run_job(cli, "backup", "create", "d")
    path = cli.home / "vault" / "manifests" / bad["id"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    assert cli.ok("backup", "show", good["id"])["id"] == good["id"]
    shown = cli.ok("vault", "show")
    gc = cli("vault", "gc", "--grace", "0")
    imported = CLI(tmp_path / "other", cli.capsys)
    imported.ok("vault", "add", "found", "--path", str(cli.home / "vault"))
    rows = imported.ok("vault", "import", "found")
    statuses = {r["id"]: r["status"] for r in rows}
    fault_ledger.rebuild(ok=statuses == {good["id"]: "available", bad["id"]: "damaged"})
    cli.ok("backup", "delete", bad["id"], "--yes")  # the damaged backup can be deleted
    gc_after = cli("vault", "gc", "--grace", "0", "--json")
    restore = cli("backup", "restore", good["id"], "--to-new", "copy", "--json")
    made = finished(restore)
    right_bytes = bool(made) and sha(made["path"]) == good_bytes
    fault_ledger.record(
        "corrupt",
        detected=shown["damaged_manifests"] == [bad["id"]]
        and said(gc, bad["id"], "stopped before deleting anything")
        and statuses.get(bad["id"]) == "damaged",
        data_intact=right_bytes,  # the other backup restores byte for byte
        silent_corruption=restore.code == 0 and not right_bytes,
        note="one bit flipped in one of two manifests",
    )
    assert shown["damaged_manifests"] == [bad["id"]]
    line = refused(gc)
    assert bad["id"] in line and "stopped before deleting anything" in line
    assert statuses == {good["id"]: "available", bad["id"]: "damaged"}
    job_result(gc_after)  # and then gc goes on
    restored = job_result(restore)
    assert restored["status"] == "available"
    assert right_bytes


def test_a_catalog_row_whose_manifest_is_missing_can_be_deleted(
    cli: CLI, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=10)
    backup = run_job(cli, "backup", "create", "d")
    (cli.home / "vault" / "manifests" / backup["id"]).unlink()
    verify = cli("backup", "verify", backup["id"])
    fault_ledger.record(
        "corrupt",
        detected=said(verify, "missing", backup["id"]),
        data_intact=verify.code != 0,  # not reported good without its manifest
        silent_corruption=verify.code == 0,
        note="a backup's manifest removed from the vault",
    )
    assert "missing" in refused(verify)
    plan = cli.ok("backup", "delete", backup["id"], "--dry-run")
    assert plan["allowed"]
    cli.ok("backup", "delete", backup["id"], "--yes")
    assert cli.ok("backup", "list", "--all") == []


# --- one line, never a traceback ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, says",
    [
        (("disk", "create", "x", "--size", "9999999P"), "at most 1P"),
        (("policy", "create", "p", "--keep-last", "99999999999999999999"), "--keep-last"),
        (("events", "--limit", "99999999999999999999"), "--limit"),
        (("disk", "register", "x", "--path", "/proc/self/mem"), "cannot open /proc/self/mem"),
    ],
)
def test_bad_input_is_one_line(
    cli: CLI, argv: tuple[str, ...], says: str, fault_ledger: Ledger
) -> None:
    result = cli(*argv)
    left = list((cli.home / "pool").glob("*"))
    fault_ledger.record(
        "hostile",
        detected=said(result, says),
        data_intact=not left,  # nothing half-made left behind
        note=" ".join(argv),
    )
    assert says in refused(result)
    assert not left, "nothing is left behind"


@pytest.mark.parametrize(
    "setting, says",
    [
        ('chunk_size = "big"', "chunk_size"),
        ('safety_snapshot_hours = "x"', "safety_snapshot_hours"),
        ("workers = 0", "workers must be between"),
        ("chunk_size = 70000", "multiple of 4096"),
        ("chunk_size = 4096", "between 65536 and 67108864"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setting: str,
    says: str,
    fault_ledger: Ledger,
) -> None:
    cli = CLI.with_config(tmp_path / "home", capsys, f"[blockvault]\n{setting}\n")
    result = cli("disk", "list")
    fault_ledger.record(
        "hostile",
        detected=said(result, says),
        # the admin's file is left as written
        data_intact=(cli.home / "config.toml").read_text() == f"[blockvault]\n{setting}\n",
        note=f"config.toml: {setting}",
    )
    assert says in refused(result)


def test_a_damaged_or_empty_catalog_says_so_and_how_to_recover(
    cli: CLI, fault_ledger: Ledger
) -> None:
    cli.ok("disk", "create", "d", "--size", "1M")
    catalog = cli.home / "catalog.sqlite"
    for leftover in cli.home.glob("catalog.sqlite-*"):
        leftover.unlink()
    garbage = b"this is not a database at all" * 100
    catalog.write_bytes(garbage)
    result = cli("disk", "list")
    fault_ledger.record(
        "hostile",
        detected=said(result, "catalog", "damaged", "vault import"),
        data_intact=catalog.read_bytes() == garbage,  # left for recovery, not replaced
        note="catalog.sqlite overwritten with text",
    )
    line = refused(result)
    assert "catalog" in line and "damaged" in line and "vault import" in line
    catalog.write_bytes(b"")
    result = cli("disk", "list")
    size = catalog.stat().st_size
    fault_ledger.record(
        "hostile",
        detected=said(result, "is empty (0 bytes)", "vault import"),
        data_intact=size == 0,  # not silently turned into an empty catalog
        note="catalog.sqlite truncated to 0 bytes",
    )
    line = refused(result)
    assert "is empty (0 bytes)" in line and "vault import" in line
    assert size == 0, "it was not silently turned into an empty catalog"


def test_credentials_in_an_endpoint_url_are_refused_and_never_echoed(
    cli: CLI, fault_ledger: Ledger
) -> None:
    result = cli(
        "vault", "add", "s3v", "--s3", "s3://bucket/p",
        "--endpoint-url", "http://AKIDSENTINEL:SECRETSENTINEL@127.0.0.1:9",
    )  # fmt: skip
    vaults = cli.ok("vault", "list")
    catalogs = [p.read_bytes().decode("latin-1") for p in cli.home.glob("catalog.sqlite*")]
    outputs = [result.out + result.err, json.dumps(vaults), *catalogs]
    fault_ledger.secrets(
        scanned=len(outputs),
        hits=sum("SECRETSENTINEL" in text or "AKIDSENTINEL" in text for text in outputs),
    )
    fault_ledger.record(
        "hostile",
        detected=said(result, "AWS chain"),
        data_intact="s3v" not in {v["name"] for v in vaults},  # nothing half-added
        note="credentials written into an S3 endpoint URL",
    )
    line = refused(result)
    assert "AWS chain" in line and "SECRETSENTINEL" not in line and "AKIDSENTINEL" not in line
    assert "SECRETSENTINEL" not in json.dumps(vaults)


# --- damage heals (I13) ---------------------------------------------------------------------


def flip_a_chunk(vault: Path) -> Path:
    victim = next(p for p in sorted((vault / "chunks").rglob("*")) if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    return victim


def test_a_damaged_chunk_is_stored_again_by_the_next_backup(cli: CLI, fault_ledger: Ledger) -> None:
    """The issue's finding: flip a byte, verify names it, delete that backup, back up the
    intact disk again: it was 'reused 100%' and still damaged; now the chunk heals."""
    disk = cli.ok("disk", "create", "d", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=11)
    first = run_job(cli, "backup", "create", "d")
    victim = flip_a_chunk(cli.home / "vault")
    verify = cli("backup", "verify", first["id"])
    cli.ok("backup", "delete", first["id"], "--yes")
    again = run_job(cli, "backup", "create", "d")
    healed = cli("backup", "verify", again["id"], "--json")
    whole = finished(healed).get("ok") is True and finished(healed)["damaged"] == []
    fault_ledger.record(
        "corrupt",
        detected=said(verify, "is damaged"),
        data_intact=whole,  # the next backup of the same disk reads back whole
        silent_corruption=verify.code == 0,
        note="one bit of a chunk flipped; the next backup reuses nothing damaged",
    )
    assert "is damaged" in refused(verify)
    assert again["bytes_new"] > 0, "the damaged chunk was stored again, not reused"
    verified = job_result(healed)
    assert verified["ok"] and verified["damaged"] == []
    assert victim.exists() and victim.read_bytes() != b""
    checked = run_job(cli, "vault", "check", "--read-data", "1")
    assert checked["ok"] and checked["repaired_chunks"] == 1


def test_vault_check_reports_what_is_lost_by_backup_and_a_backup_heals_it(
    cli: CLI, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=12)
    backup = run_job(cli, "backup", "create", "d")
    assert run_job(cli, "vault", "check")["ok"]  # structure only
    flip_a_chunk(cli.home / "vault")
    check = cli("vault", "check", "--read-data", "1")
    healed = run_job(cli, "backup", "create", "d")  # the disk still holds the data
    recheck = cli("vault", "check", "--read-data", "1", "--json")
    fault_ledger.record(
        "corrupt",
        detected=said(check, "1 damaged", f"{backup['id']} (1 chunks)"),
        data_intact=finished(recheck).get("ok") is True,
        silent_corruption=check.code == 0,
        note="one bit of a chunk flipped; vault check --read-data, then a backup heals it",
    )
    line = refused(check)
    assert "1 damaged" in line and f"{backup['id']} (1 chunks)" in line
    assert "vault check" in line or "quarantined" in line
    assert healed["bytes_new"] > 0
    assert job_result(recheck)["ok"]


def test_the_catalog_is_readable_by_its_owner_only(cli: CLI) -> None:
    cli.ok("disk", "create", "d", "--size", "1M")
    for path in cli.home.glob("catalog.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (
            f"{path.name} is group/other readable"
        )
