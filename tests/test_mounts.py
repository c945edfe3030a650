"""One file back without restoring the disk: `backup mount|unmount|files|extract` through the
real CLI in child processes, real FUSE (/dev/fuse, libfuse3), real ext4 and XFS images made
by mkfs, real loop mounts. Skipped with the reason when not root or FUSE is missing.

What a user checks: the files read through the mount are the source's bytes; `files` and
`extract` work and leave no mount and no process; `unmount` leaves nothing in /proc/mounts
and stops the server; a damaged chunk is an I/O error (never other bytes); an image without
a filesystem shows its raw bytes only, with one clear line; nothing can be written.
"""

from __future__ import annotations

import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.engine.backup_view import BackupView
from core.repo.repository import Repository, chunk_key
from core.stores.local import LocalStore
from tests.support.cli import CLI, REPO
from tests.test_backup_reliability import run_job

CHUNK = 256 << 10
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\n"


def _fuse_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (FUSE mount and loop mount)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if ctypes.util.find_library("fuse3") is None:
        return "libfuse3 is not installed (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy is not importable: {exc}"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed (e2fsprogs)"
    return None


needs_fuse = pytest.mark.skipif(_fuse_unavailable() is not None, reason=str(_fuse_unavailable()))


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def bv(cli: CLI, *argv: str) -> subprocess.CompletedProcess:
    """`blockvault --home HOME ARGV` as its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--home", str(cli.home), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def mounts_under(path: Path) -> list[str]:
    with open("/proc/mounts") as handle:
        return [line for line in handle if str(path) in line.split()[1].replace("\\040", " ")]


def servers() -> list[int]:
    """Pids of running mount servers."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if b"core.engine.fuse_image" in cmdline and state != b"Z":
                found.append(int(entry))
    return found


@pytest.fixture
def cleanup(cli: CLI, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Whatever a failing test left mounted is taken down (then lazily, as a last resort)."""
    yield
    records = cli.home / "mounts"
    for record in records.glob("*.json") if records.is_dir() else []:
        bv(cli, "backup", "unmount", json.loads(record.read_text())["mountpoint"])
    for line in reversed(mounts_under(tmp_path)):
        subprocess.run(["umount", "-l", line.split()[1]], capture_output=True)


def backup_of_tree(cli: CLI, tmp_path: Path, tree: dict[str, bytes], *, name: str = "d1") -> dict:
    """A pool disk holding an ext4 filesystem made by `mkfs.ext4 -d` from `tree`, backed up."""
    source = tmp_path / "tree"
    for relative, data in tree.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(data)
    (source / "escape").symlink_to("/etc/passwd")
    disk = cli.ok("disk", "create", name, "--size", "16M")
    subprocess.run(
        ["mkfs.ext4", "-F", "-q", "-b", "4096", "-d", str(source), disk["path"]], check=True
    )
    return {**run_job(cli, "backup", "create", name), "disk_path": disk["path"]}


TREE = {
    "big.bin": os.urandom(3 << 20),
    "etc/hostname": b"web1\n",
    "etc/app/settings.conf": b"level = 3\n" * 100,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the view alone (no FUSE) ----------------------------------------------------------------


def test_the_view_fetches_only_chunks_read_holes_never_and_keeps_its_cache_bounded(
    tmp_path: Path,
) -> None:
    vault = Repository.init(LocalStore(tmp_path / "vault"), chunk_size=65536)
    image = tmp_path / "disk.img"
    with open(image, "wb") as handle:
        handle.truncate(1 << 20)  # 16 chunks, holes but for three
        for index in (1, 5, 9):
            handle.seek(index * 65536)
            handle.write(os.urandom(65536))
    from core.engine.pipeline import backup_device

    manifest = backup_device(image, vault, manifest_id="backup-view1", disk_meta={})
    view = BackupView(manifest, vault, cache_bytes=2 * 65536)
    data = image.read_bytes()
    assert view.read(0, 65536) == bytes(65536) and view.fetches == 0  # a hole: no fetch
    assert view.read(5 * 65536 + 100, 1000) == data[5 * 65536 + 100 : 5 * 65536 + 1100]
    assert view.fetches == 1
    assert view.read(5 * 65536, 10) == data[5 * 65536 : 5 * 65536 + 10]
    assert view.fetches == 1  # cached
    assert view.read(0, len(data) + 999) == data  # whole disk, cut at its end
    assert view.fetches == 3 and view._cached <= 2 * 65536  # LRU bounded in bytes
    assert view.read(65536, 1) == data[65536:65537] and view.fetches == 4  # 1 was dropped
    assert view.read(len(data), 10) == b""


# --- mount, read, unmount --------------------------------------------------------------------


@needs_fuse
@pytest.mark.slow
@pytest.mark.root
def test_mount_shows_the_backups_files_byte_for_byte_and_unmount_leaves_nothing(
    cli: CLI, tmp_path: Path, cleanup: None
) -> None:
    backup = backup_of_tree(cli, tmp_path, TREE)
    where = tmp_path / "look"
    done = bv(cli, "backup", "mount", backup["name"], str(where))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"files of backup {backup['name']} (ext4) at {where / 'files'}")
    # the command has exited; its detached server serves on
    (pid,) = servers()
    files = where / "files"
    for relative, data in TREE.items():
        assert sha((files / relative).read_bytes()) == sha(data), relative
    assert (where / "disk.img").read_bytes() == Path(backup["disk_path"]).read_bytes()
    assert os.readlink(files / "escape") == "/etc/passwd"  # a link of the backup, as it is
    # read-only, both the image and the filesystem in it
    with pytest.raises(OSError) as raised:
        open(where / "disk.img", "r+b")  # noqa: SIM115
    assert raised.value.errno in (errno.EROFS, errno.EACCES)
    with pytest.raises(OSError) as raised:
        (files / "new.txt").write_text("x")
    assert raised.value.errno == errno.EROFS
    assert "already a mount of backup" in cli.fails("backup", "mount", backup["name"], str(where))

    with open(files / "big.bin", "rb"):  # a program still reading there: refused, kept
        assert "is in use" in cli.fails("backup", "unmount", str(where))
    assert len(mounts_under(where)) == 2 and servers() == [pid]

    done = bv(cli, "backup", "unmount", str(where))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"unmounted {where}"
    assert mounts_under(tmp_path) == []
    assert servers() == []
    for _ in range(50):  # a zombie for a moment, until its new parent (init) reaps it
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert not where.exists()  # made by the mount, removed by the unmount
    assert "not mounted" in cli.fails("backup", "unmount", backup["name"])


@needs_fuse
@pytest.mark.slow
@pytest.mark.root
def test_files_and_extract_read_through_a_mount_they_take_down(
    cli: CLI, tmp_path: Path, cleanup: None
) -> None:
    backup = backup_of_tree(cli, tmp_path, TREE)
    top = {e["name"]: e for e in cli.ok("backup", "files", backup["name"])}
    assert set(top) == {"big.bin", "etc", "escape", "lost+found"}  # the backup's root, not ours
    assert top["big.bin"]["size"] == 3 << 20 and top["etc"]["type"] == "dir"
    assert top["escape"] == {**top["escape"], "type": "link", "target": "/etc/passwd"}
    text = cli("backup", "files", backup["name"], "//etc/")
    assert text.code == 0 and "hostname" in text.out and "app" in text.out
    assert "symbolic link" in cli.fails("backup", "files", backup["name"], "/escape/x")
    assert "'..'" in cli.fails("backup", "files", backup["name"], "/etc/../../")

    out = tmp_path / "out"
    done = cli("backup", "extract", backup["name"], "/etc", "--to", str(out))
    assert done.code == 0, done.err
    assert done.out.startswith(f"extracted /etc to {out / 'etc'}: 2 files")
    assert (out / "etc/app/settings.conf").read_bytes() == TREE["etc/app/settings.conf"]
    assert cli.ok("backup", "extract", backup["name"], "/big.bin", "--to", str(out))["bytes"] == (
        3 << 20
    )
    assert sha((out / "big.bin").read_bytes()) == sha(TREE["big.bin"])
    assert "exists already" in cli.fails(
        "backup", "extract", backup["name"], "/big.bin", "--to", str(out)
    )
    assert mounts_under(tmp_path) == [] and mounts_under(cli.home) == []
    assert servers() == []
    assert list((cli.home / "mnt").iterdir()) == []


@needs_fuse
@pytest.mark.slow
@pytest.mark.root
def test_a_damaged_chunk_reads_as_an_io_error_never_as_other_bytes(
    cli: CLI, tmp_path: Path, cleanup: None
) -> None:
    backup = backup_of_tree(cli, tmp_path, TREE)
    mapped = subprocess.run(
        ["debugfs", "-R", "bmap /big.bin 0", backup["disk_path"]],
        capture_output=True,
        text=True,
        check=True,
    )
    index = int(mapped.stdout.split()[-1]) * 4096 // CHUNK  # the chunk of big.bin's first block
    vault = Repository.open(LocalStore(cli.home / "vault"))
    chunk_id = vault.read_manifest(backup["id"]).chunks[index]
    stored = cli.home / "vault" / chunk_key(chunk_id)
    blob = bytearray(stored.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    stored.write_bytes(bytes(blob))

    where = tmp_path / "look"
    assert bv(cli, "backup", "mount", backup["name"], str(where)).returncode == 0
    with pytest.raises(OSError) as raised:
        (where / "files" / "big.bin").read_bytes()
    assert raised.value.errno == errno.EIO
    # the rest of the backup still reads, exactly
    assert (where / "files/etc/hostname").read_bytes() == b"web1\n"
    assert cli("backup", "unmount", backup["name"]).code == 0

    out = tmp_path / "out"
    line = cli.fails("backup", "extract", backup["name"], "/big.bin", "--to", str(out))
    assert "I/O error" in line and f"chunk {index}" in line and "damaged" in line
    assert list(out.iterdir()) == []  # nothing partial
    assert mounts_under(tmp_path) == [] and servers() == []


@needs_fuse
@pytest.mark.slow
@pytest.mark.root
def test_an_image_without_a_filesystem_shows_its_raw_bytes_only_and_says_so(
    cli: CLI, tmp_path: Path, cleanup: None
) -> None:
    disk = cli.ok("disk", "create", "raw1", "--size", "2M")
    payload = os.urandom(1 << 20)
    with open(disk["path"], "r+b") as handle:
        handle.write(payload)
    backup = run_job(cli, "backup", "create", "raw1")
    where = tmp_path / "look"
    where.mkdir()
    (where / "stray").write_text("x")
    assert "not empty" in cli.fails("backup", "mount", backup["name"], str(where))
    (where / "stray").unlink()

    done = cli("backup", "mount", backup["name"], str(where))
    assert done.code == 0, done.err
    assert done.out.strip() == (
        f"raw disk image of backup {backup['name']} at {where / 'disk.img'}; no files shown: "
        "no filesystem found at its start (not ext4 or XFS)"
    )
    assert sorted(os.listdir(where)) == ["disk.img"]
    assert (where / "disk.img").read_bytes() == payload + bytes(1 << 20)
    with pytest.raises(OSError):
        (where / "new").write_text("x")
    line = cli.fails("backup", "files", backup["name"])
    assert line.startswith(f"blockvault: error: cannot list the files of backup {backup['name']}")
    assert cli("backup", "unmount", str(where)).code == 0
    assert where.is_dir() and mounts_under(tmp_path) == [] and servers() == []


@needs_fuse
@pytest.mark.slow
@pytest.mark.root
def test_an_encrypted_vault_without_its_passphrase_is_one_line(
    cli: CLI, tmp_path: Path, cleanup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "correct horse")
    cli.ok("vault", "add", "sealed", "--path", str(tmp_path / "sealed"), "--encrypt")
    cli.ok("disk", "create", "s1", "--size", "1M")
    backup = run_job(cli, "backup", "create", "s1", "--vault", "sealed")
    monkeypatch.delenv("BLOCKVAULT_PASSPHRASE")
    line = cli.fails("backup", "mount", backup["name"], str(tmp_path / "m"))
    assert "vault sealed is encrypted: set BLOCKVAULT_PASSPHRASE" in line
    assert not (tmp_path / "m").exists()
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE_SEALED", "correct horse")  # its own variable
    done = cli("backup", "mount", backup["name"], str(tmp_path / "m"))
    assert done.code == 0 and "raw disk image" in done.out, done.err
    assert (tmp_path / "m/disk.img").read_bytes() == bytes(1 << 20)
    assert cli("backup", "unmount", str(tmp_path / "m")).code == 0
    assert mounts_under(tmp_path) == [] and servers() == []


@needs_fuse
@pytest.mark.slow
@pytest.mark.root
def test_an_xfs_backup_mounts_its_files(cli: CLI, tmp_path: Path, cleanup: None) -> None:
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("mkfs.xfs is not installed (xfsprogs)")
    disk = cli.ok("disk", "create", "x1", "--size", "320M")  # mkfs.xfs's smallest
    subprocess.run(["mkfs.xfs", "-q", "-f", disk["path"]], check=True)
    writable = tmp_path / "rw"
    writable.mkdir()
    subprocess.run(["mount", "-o", "loop", disk["path"], str(writable)], check=True)
    try:
        (writable / "notes.txt").write_bytes(b"xfs says hello\n" * 1000)
    finally:
        subprocess.run(["umount", str(writable)], check=True)
    backup = run_job(cli, "backup", "create", "x1")
    where = tmp_path / "look"
    done = cli("backup", "mount", backup["name"], str(where))
    assert done.code == 0 and "(xfs)" in done.out, done.err
    assert (where / "files/notes.txt").read_bytes() == b"xfs says hello\n" * 1000
    assert cli("backup", "unmount", str(where)).code == 0
    assert mounts_under(tmp_path) == [] and servers() == []


def test_unmount_of_something_never_mounted_is_one_line(cli: CLI) -> None:
    cli.ok("disk", "create", "d1", "--size", "1M")
    line = cli.fails("backup", "unmount", "/nowhere/at/all")
    assert "neither a blockvault mount nor a backup" in line


# --- the console -----------------------------------------------------------------------------


@needs_fuse
@pytest.mark.slow
@pytest.mark.root
@pytest.mark.asyncio
async def test_m_on_a_backup_in_the_console_mounts_it_and_shows_where(tmp_path: Path) -> None:
    from tests.support.console import demo_copy, make_app, settle, wait_for

    service = demo_copy(tmp_path / "home")
    try:
        app = make_app(service)
        async with app.run_test(notifications=True) as pilot:
            await settle(app, pilot)
            app.main.table("backups").focus()
            await pilot.pause()
            backup = app.main.focused_object()
            assert backup["kind_of"] == "backup"
            await pilot.press("m")
            await wait_for(pilot, lambda: any("unmount" in n.message for n in app._notifications))
            (shown,) = [n.message for n in app._notifications if "unmount" in n.message]
            (mount,) = service.list_mounts()
            assert mount["backup_id"] == backup["id"] and mount["alive"]
            assert mount["image"] in shown and Path(mount["image"]).stat().st_size > 0
            await pilot.press("m")  # again: where it is, not a second mount
            await wait_for(
                pilot, lambda: any("is mounted at" in n.message for n in app._notifications)
            )
            assert len(service.list_mounts()) == 1
        service.unmount_backup(backup["id"])
        assert mounts_under(tmp_path) == [] and servers() == []
    finally:
        for mount in service.list_mounts():
            service.unmount_backup(mount["mountpoint"])
        service.close()
