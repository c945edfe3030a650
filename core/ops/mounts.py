"""One file back without restoring the disk: `backup mount`, `unmount`, `files`, `extract`.

`mount` starts the FUSE server (`core.engine.fuse_image`) as a detached process that serves
the backup as `DIR/disk.img`, waits until the kernel has the mount, and, when the image holds
ext2/3/4 or XFS, loop-mounts it read-only on `DIR/files` (ext: `ro,noload`, no journal replay;
XFS: `ro,norecovery,nouuid`). Chunks are fetched and verified only when read. A record in
`<data>/mounts/` (pid, mountpoint, what is mounted) lets `unmount` take both mounts down and
stop the server from any later process; a record whose server died is cleaned up by the next
mount of that directory or by `unmount`.

`files` and `extract` read through the same view: an existing mount of the backup, or one
made for the call under `<data>/mnt/` and taken down afterwards. Paths inside the backup are
walked without following symbolic links (a link in the backup never leads into the host's
own files); `extract` copies into a temporary name and renames it, so an I/O error (a
damaged chunk is EIO) leaves nothing partial behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import core
from core.base.errors import BlockvaultError, Conflict, DeviceError, NotFound, UserError
from core.base.text import printable
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, VaultRecord
from core.engine.backup_view import DEFAULT_CACHE_BYTES, SHOWN_FILESYSTEMS
from core.engine.fuse_image import FILES, IMAGE, MODULE
from core.ops.replication import choose_source
from core.ops.vaults import store_spec, vault_passphrase

READY_TIMEOUT = 60.0  # opening an S3 vault and unwrapping a key, then the kernel's mount
STOP_TIMEOUT = 10.0
LOG_TAIL_BYTES = 4096
MOUNT_OPTIONS = {"xfs": ("xfs", "ro,norecovery,nouuid")}  # ext2/3/4: the ext4 driver
EXT_OPTIONS = ("ext4", "ro,noload")


# --- records ---------------------------------------------------------------------------------


def _records_dir(ctx: Context) -> Path:
    return ctx.locations.data_dir / "mounts"


def _key(mountpoint: Path) -> str:
    return hashlib.sha256(str(mountpoint).encode()).hexdigest()[:16]


def _record_path(ctx: Context, mountpoint: Path) -> Path:
    return _records_dir(ctx) / f"{_key(mountpoint)}.json"


def _records(ctx: Context) -> list[dict[str, Any]]:
    found = []
    folder = _records_dir(ctx)
    if not folder.is_dir():
        return []
    for path in sorted(folder.glob("*.json")):
        try:
            body = json.loads(path.read_text()[:65536])
        except (OSError, ValueError):
            continue
        if isinstance(body, dict) and isinstance(body.get("mountpoint"), str):
            found.append(body)
    return found


def _write_record(ctx: Context, body: dict[str, Any]) -> None:
    path = _record_path(ctx, Path(body["mountpoint"]))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(body, indent=1))
    os.replace(partial, path)


# --- processes and kernel mounts -------------------------------------------------------------


def _unescape(field: str) -> str:
    """A /proc mountinfo path: spaces and such are octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounted_paths() -> set[str]:
    """Every mount point this process sees."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        return {_unescape(line.split(" ")[4]) for line in handle if line.count(" ") > 4}


def server_alive(pid: int) -> bool:
    """True while `pid` is a running (not zombie) mount server of ours: a reused pid that
    runs something else is not it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except (OSError, IndexError):
        return False
    if state == b"Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # ours (a console that mounted): reap it
        return False
    return MODULE.encode() in cmdline


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        timeout=120,
        check=False,
    )


def _umount(path: Path, *, fuse: bool) -> None:
    """Take one mount down; one that is in use is a clear refusal."""
    tool = shutil.which("fusermount3") if fuse else None
    done = _run([tool, "-u", str(path)] if tool else ["umount", str(path)])
    if done.returncode == 0 or str(path) not in mounted_paths():
        return
    said = printable(done.stderr.strip())[:200]
    if "busy" in said:
        raise Conflict(
            f"{path} is in use (a shell or a program has files open there); close them, "
            "then unmount again"
        )
    raise DeviceError(f"unmounting {path} failed: {said or done.returncode}")


def _log_tail(record: dict[str, Any]) -> str:
    """The last line the server logged (why a read failed), or ""."""
    try:
        with open(record["log"], "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except (OSError, KeyError, TypeError):
        return ""
    return printable(lines[-1].removeprefix("blockvault mount: "))[:300] if lines else ""


# --- mount -----------------------------------------------------------------------------------


def _backup_and_vault(ctx: Context, ref: str) -> tuple[Backup, Backup, VaultRecord]:
    """The backup asked for, the one read (a replica when its own vault is unreachable, as
    a restore chooses) and that one's vault."""
    read = choose_source(ctx, ref)
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, ref, kind="backup")
        if backup.status != "available":
            raise Conflict(f"backup {backup.name} is {backup.status}")
        if read is not None:
            return backup, read.backup, read.vault
        vault = session.get(VaultRecord, backup.vault_id)
        if vault is None:
            raise NotFound(f"the vault of backup {backup.name} is not in the catalog")
        return backup, backup, vault


def _prepare(ctx: Context, mountpoint: Path) -> bool:
    """Refuse a directory that is mounted or not empty; clean a dead server's leftovers;
    make the directory when missing (True: made here, removed by unmount)."""
    stale = _record_path(ctx, mountpoint)
    if stale.exists():
        body = next((r for r in _records(ctx) if r["mountpoint"] == str(mountpoint)), None)
        if body is not None and server_alive(int(body.get("pid") or 0)):
            raise Conflict(
                f"{mountpoint} is already a mount of backup {body.get('backup_name')}; "
                f"`blockvault backup unmount {mountpoint}` first"
            )
        if body is not None:
            _teardown(ctx, body)
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    if str(mountpoint) in mounted_paths():
        raise Conflict(f"{mountpoint} is already a mount point")
    if mountpoint.exists():
        if not mountpoint.is_dir():
            raise UserError(f"{mountpoint} is not a directory")
        if any(mountpoint.iterdir()):
            raise UserError(f"{mountpoint} is not empty: mount into an empty directory")
        return False
    if not mountpoint.parent.is_dir():
        raise UserError(f"{mountpoint.parent} does not exist")
    mountpoint.mkdir(mode=0o700)
    return True


def _start_server(request: dict[str, Any], log: Path) -> tuple[subprocess.Popen[bytes], dict]:
    """Start the detached server and wait for its one line (ready, or why not)."""
    package_root = str(Path(core.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd="/",
            env=env,
            start_new_session=True,  # Ctrl-C in the starting shell does not stop it
        )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps(request).encode())
        process.stdin.close()
    except BrokenPipeError:
        pass
    deadline = time.monotonic() + READY_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            process.kill()
            process.wait()
            raise DeviceError(f"the mount server did not get ready in {READY_TIMEOUT:.0f} s")
        piece = os.read(process.stdout.fileno(), 65536)
        if not piece:
            break
        line += piece
    process.stdout.close()
    try:
        answer = json.loads(line[:65536] or b"{}")
    except ValueError:
        answer = {}
    if not isinstance(answer, dict) or not answer.get("ready"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
        why = answer.get("error") if isinstance(answer, dict) else None
        if not why:
            why = f"the mount server stopped: {_log_tail({'log': str(log)}) or 'no message'}"
        raise BlockvaultError(printable(why)[:400])
    return process, answer


def _loop_mount(image: Path, target: Path, filesystem: str) -> str | None:
    """Loop-mount the filesystem in `image` read-only on `target`; why not, or None."""
    kind, options = MOUNT_OPTIONS.get(filesystem, EXT_OPTIONS)
    done = _run(["mount", "-t", kind, "-o", f"loop,{options}", str(image), str(target)])
    if done.returncode == 0:
        return None
    said = printable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
    if os.geteuid() != 0:
        return f"loop-mounting its {filesystem} filesystem needs root ({said[:160]})"
    return f"its {filesystem} filesystem would not mount read-only: {said[:200] or done.returncode}"


def _note(result: dict[str, Any]) -> str:
    """The one line a person reads after a mount: where the files are, or why there are none."""
    name, image = result["backup_name"], result["image"]
    if result["files"]:
        return f"files of backup {name} ({result['filesystem']}) at {result['files']}"
    found = result["filesystem"]
    if result.get("files_error"):
        why = result["files_error"]
    elif found:
        why = f"it holds {found}, not an ext4 or XFS filesystem"
    else:
        why = "no filesystem found at its start (not ext4 or XFS)"
    return f"raw disk image of backup {name} at {image}; no files shown: {why}"


def mount_backup(
    ctx: Context,
    ref: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    passphrase: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> dict[str, Any]:
    """Mount backup `ref` read-only at `directory` (default `<data>/mnt/<backup id>`);
    returns the record: image, files (or None), filesystem, pid, and `note`, one line."""
    backup, source, vault = _backup_and_vault(ctx, ref)
    if directory is None:
        directory = ctx.locations.data_dir / "mnt" / backup.id
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mountpoint = Path(os.path.realpath(os.path.expanduser(directory)))
    request: dict[str, Any] = {
        "store": store_spec(vault),
        "backup_id": source.id,
        "mountpoint": str(mountpoint),
        "cache_bytes": int(cache_bytes),
    }
    if vault.encrypted:  # on the server's stdin: never in its arguments (I8)
        request["passphrase"] = vault_passphrase(vault, passphrase)
    created = _prepare(ctx, mountpoint)
    log = _records_dir(ctx) / f"{_key(mountpoint)}.log"
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log.write_bytes(b"")
    try:
        process, answer = _start_server(request, log)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                mountpoint.rmdir()
        raise
    result: dict[str, Any] = {
        "backup_id": backup.id,
        "backup_name": backup.name,
        "read_from": source.id,
        "vault": vault.name,
        "mountpoint": str(mountpoint),
        "image": str(mountpoint / IMAGE),
        "files": None,
        "filesystem": printable(str(answer.get("filesystem") or ""))[:80],
        "pid": process.pid,
        "log": str(log),
        "created_dir": created,
        "started_at": datetime.now(UTC).isoformat(),
    }
    _write_record(ctx, result)  # from here on, `unmount` can take it down
    if result["filesystem"] in SHOWN_FILESYSTEMS:
        why = _loop_mount(mountpoint / IMAGE, mountpoint / FILES, result["filesystem"])
        if why is None:
            result["files"] = str(mountpoint / FILES)
        else:
            result["files_error"] = why
        _write_record(ctx, result)
    _audit(ctx, "backup.mount", backup, f"at {mountpoint}")
    return {**result, "note": _note(result)}


def _audit(ctx: Context, action: str, backup: Backup | dict[str, Any], detail: str) -> None:
    if ctx.catalog.read_only:
        return
    backup_id = backup.id if isinstance(backup, Backup) else str(backup.get("backup_id"))
    name = backup.name if isinstance(backup, Backup) else str(backup.get("backup_name"))
    with ctx.catalog.writer() as session:
        record(session, ctx, action, kind="backup", object_id=backup_id, name=name, detail=detail)
        session.commit()


# --- unmount ---------------------------------------------------------------------------------


def _teardown(ctx: Context, body: dict[str, Any]) -> None:
    """Loop mount, then FUSE mount, then the server; then the record (and the directory
    when the mount made it)."""
    mountpoint = Path(body["mountpoint"])
    mounted = mounted_paths()
    if str(mountpoint / FILES) in mounted:
        _umount(mountpoint / FILES, fuse=False)
    if str(mountpoint) in mounted:
        _umount(mountpoint, fuse=True)
    pid = int(body.get("pid") or 0)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid and server_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    for sig in (signal.SIGTERM, signal.SIGKILL):  # unmounted but still running: stop it
        if pid and server_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT / 2
            while server_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        _record_path(ctx, mountpoint).unlink()
    with contextlib.suppress(OSError, KeyError, TypeError):
        Path(body["log"]).unlink()
    if body.get("created_dir"):
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def unmount(ctx: Context, target: str) -> list[dict[str, Any]]:
    """Unmount a mount by its directory, or every mount of a backup (id or name)."""
    records = _records(ctx)
    where = os.path.realpath(os.path.expanduser(target))
    chosen = [r for r in records if r["mountpoint"] == where]
    if not chosen:
        try:
            with ctx.catalog.session() as session:
                backup = resolve(session, Backup, target, kind="backup")
        except NotFound:
            raise NotFound(f"{target!r} is neither a blockvault mount nor a backup") from None
        chosen = [r for r in records if r.get("backup_id") == backup.id]
        if not chosen:
            raise NotFound(f"backup {backup.name} is not mounted")
    done = []
    for body in chosen:
        _teardown(ctx, body)
        _audit(ctx, "backup.unmount", body, f"at {body['mountpoint']}")
        done.append({"backup_id": body.get("backup_id"), "mountpoint": body["mountpoint"]})
    return done


def list_mounts(ctx: Context) -> list[dict[str, Any]]:
    """The recorded mounts, each with whether its server still runs."""
    return [{**body, "alive": server_alive(int(body.get("pid") or 0))} for body in _records(ctx)]


# --- files and extract -----------------------------------------------------------------------


@contextlib.contextmanager
def files_of(
    ctx: Context, ref: str, *, passphrase: str | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The root of the backup's files: a live mount of it, or one made now (under
    `<data>/mnt/`) and taken down when done. No files: a one-line refusal."""
    backup, _, _ = _backup_and_vault(ctx, ref)
    for body in _records(ctx):
        if (
            body.get("backup_id") == backup.id
            and body.get("files")
            and server_alive(int(body.get("pid") or 0))
        ):
            yield Path(body["files"]), body
            return
    scratch = ctx.locations.data_dir / "mnt"
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=".scratch-", dir=scratch))
    try:
        body = mount_backup(ctx, ref, holder / "m", passphrase=passphrase)
        try:
            if not body["files"]:
                raise UserError(
                    f"cannot list the files of backup {backup.name}: "
                    + body["note"].split("no files shown: ", 1)[-1]
                    + f"; `blockvault backup mount {backup.name} DIR` shows its raw image"
                )
            yield Path(body["files"]), body
        finally:
            _teardown(ctx, body)
    finally:
        with contextlib.suppress(OSError):
            holder.rmdir()


def _inside(root: Path, path: str) -> tuple[Path, str]:
    """`path` inside the backup's files, walked without following any symbolic link;
    returns the host path and the path as shown."""
    parts = [p for p in path.split("/") if p not in ("", ".")]  # "//x" is no root of its own
    if ".." in parts:
        raise UserError(f"{path}: '..' is not allowed in a path inside a backup")
    current = root
    shown = ""
    for index, part in enumerate(parts):
        current = current / part
        shown = f"{shown}/{part}"
        try:
            info = current.lstat()
        except FileNotFoundError:
            raise NotFound(f"no {shown} in the backup") from None
        except OSError as exc:
            raise _read_error(exc, shown) from None
        last = index == len(parts) - 1
        if stat.S_ISLNK(info.st_mode) and not last:
            link = printable(os.readlink(current))
            raise UserError(f"{shown} is a symbolic link (to {link}); give the path it points to")
        if not last and not stat.S_ISDIR(info.st_mode):
            raise NotFound(f"{shown} is not a directory in the backup")
    return current, shown or "/"


def _read_error(exc: OSError, shown: str, body: dict[str, Any] | None = None) -> BlockvaultError:
    if exc.errno == errno.EIO:
        why = _log_tail(body) if body else ""
        return DeviceError(
            f"reading {shown} from the backup failed: I/O error"
            + (f" ({why})" if why else " (a damaged chunk: `blockvault backup verify` says which)")
        )
    return DeviceError(f"reading {shown} from the backup failed: {exc.strerror or exc}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _entry(path: Path, name: str) -> dict[str, Any]:
    info = path.lstat()
    return {
        "name": name,
        "type": _kind(info.st_mode),
        "mode": stat.filemode(info.st_mode),
        "size": info.st_size,
        "modified": datetime.fromtimestamp(info.st_mtime, UTC).isoformat(timespec="seconds"),
        "target": os.readlink(path) if stat.S_ISLNK(info.st_mode) else None,
    }


def list_files(
    ctx: Context, ref: str, path: str = "/", *, passphrase: str | None = None
) -> list[dict[str, Any]]:
    """The entries of directory `path` in the backup (a file: itself), sorted by name."""
    with files_of(ctx, ref, passphrase=passphrase) as (root, body):
        where, shown = _inside(root, path)
        try:
            if where.is_symlink() or not where.is_dir():
                return [_entry(where, where.name)]
            return [_entry(where / n, n) for n in sorted(os.listdir(where))]
        except OSError as exc:
            raise _read_error(exc, shown, body) from None


def extract(
    ctx: Context, ref: str, path: str, to: str | os.PathLike[str], *, passphrase: str | None = None
) -> dict[str, Any]:
    """Copy `path` (a file or a directory tree) out of the backup into directory `to`,
    keeping modes and times; nothing partial is left when a read fails."""
    target_dir = Path(os.path.expanduser(to)).absolute()
    with files_of(ctx, ref, passphrase=passphrase) as (root, body):
        source, shown = _inside(root, path)
        name = source.name if source != root else f"{body['backup_name']}-files"
        destination = target_dir / name
        if os.path.lexists(destination):
            raise Conflict(f"{destination} exists already: extract into another directory")
        target_dir.mkdir(parents=True, exist_ok=True)
        partial = target_dir / f".{name}.blockvault-partial-{os.getpid()}"
        counts = {"files": 0, "bytes": 0, "skipped": 0}
        try:
            _copy(source, partial, counts)
            os.rename(partial, destination)
        except (OSError, shutil.Error) as exc:
            _remove(partial)
            first = exc.args[0][0] if isinstance(exc, shutil.Error) and exc.args[0] else None
            if isinstance(first, tuple) and len(first) == 3:  # (source, target, why)
                code = errno.EIO if "Input/output" in str(first[2]) else None
                exc = OSError(code, str(first[2]))
            assert isinstance(exc, OSError)
            raise _read_error(exc, shown, body) from None
        except BaseException:
            _remove(partial)
            raise
    return {"extracted": shown, "to": str(destination), **counts}


def _copy(source: Path, target: Path, counts: dict[str, int]) -> None:
    """A file, link or tree; devices, sockets and FIFOs are skipped (counted)."""

    def copy_file(src: str, dst: str) -> str:
        shutil.copy2(src, dst, follow_symlinks=False)
        counts["files"] += 1
        counts["bytes"] += os.lstat(src).st_size
        return dst

    def special(folder: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                skipped.add(name)
        counts["skipped"] += len(skipped)
        return skipped

    mode = source.lstat().st_mode
    if stat.S_ISDIR(mode):
        shutil.copytree(source, target, symlinks=True, ignore=special, copy_function=copy_file)
    elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        copy_file(str(source), str(target))
    else:
        raise UserError(f"{source.name} is a device, socket or FIFO: nothing to copy")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
