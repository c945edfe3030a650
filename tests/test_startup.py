"""Start-up: what the real CLI imports for --help, --version, completion and `disk list --json`,
and shell completion sourced into a real bash. Counts modules, never times (deterministic)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import Static

import core
from core.api import Blockvault, UserError
from tests.support.cli import CLI
from tui.console.app import BlockvaultApp

ROOT = Path(__file__).resolve().parent.parent

# Runs `blockvault ARGS...` as the console script does, then writes the modules it imported.
WRAPPER = """
import sys
from tui.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
import json, os
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""

#: never needed to print help, a version or a completion script
HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "alembic", "boto3", "botocore", "textual", "rich")
#: nor the engine below the façade
HEAVY_CORE = ("core.facade", "core.ops", "core.catalog", "core.jobs", "core.engine", "core.repo")


def run_cli(tmp_path: Path, *argv: str) -> tuple[int, set[str], str]:
    """`blockvault ARGV` in a fresh interpreter: its exit code, the modules it imported, stdout."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "MODULES_OUT": str(out), "BLOCKVAULT_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert out.exists(), done.stderr
    result = json.loads(out.read_text())
    return result["code"] or 0, set(result["modules"]), done.stdout


def loaded(modules: set[str], names: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == n or m.startswith(n + ".") for n in names)}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["disk", "--help"],
        ["backup", "create", "--help"],
        ["backup", "mount", "--help"],
        ["vault", "add", "--help"],
        ["web", "--help"],
        ["completion", "bash"],
        ["completion", "zsh"],
        ["completion", "fish"],
    ],
    ids=" ".join,
)
def test_help_version_and_completion_import_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    code, modules, out = run_cli(tmp_path, *argv)
    assert code == 0 and out
    assert not loaded(modules, HEAVY + HEAVY_CORE)
    assert not (tmp_path / "home").exists()  # nor open (or make) a catalog


def test_help_builds_only_the_noun_it_shows(tmp_path: Path) -> None:
    _, modules, out = run_cli(tmp_path, "disk", "--help")
    assert "register" in out and "undo" in out
    assert "tui.cli.disks" in modules and "tui.cli.backups" not in modules


def test_version_is_the_installed_one(tmp_path: Path) -> None:
    code, _, out = run_cli(tmp_path, "--version")
    assert code == 0 and out == f"blockvault {core.__version__}\n"
    try:
        installed = importlib.metadata.version("blockvault")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("blockvault is not installed: no metadata to compare with")
    assert installed == core.__version__


@pytest.mark.slow  # the catalog made in-process, then listed in a fresh interpreter: 1.5 s
def test_disk_list_json_loads_no_s3_console_or_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI(tmp_path / "home", capsys)
    cli.ok("disk", "create", "web1-data", "--size", "1M")  # made and migrated here
    code, modules, out = run_cli(tmp_path, "disk", "list", "--json")
    assert code == 0 and [d["name"] for d in json.loads(out)] == ["web1-data"]
    assert not loaded(modules, ("boto3", "botocore", "textual", "alembic", "rich"))


# --- bash completion ----------------------------------------------------------------------------


@pytest.fixture
def complete(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`complete("blockvault", "disk", "show", "")`: what TAB offers after those words, from
    the script `blockvault completion bash` sourced into bash (words[-1] is being typed)."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    cli = CLI(tmp_path / "home", capsys)
    cli.ok("server", "create", "web1")
    cli.ok("disk", "create", "web1-data", "--size", "1M", "--server", "web1")
    cli.ok("disk", "create", "db1-root", "--size", "1M")

    def offered(*words: str, env: dict[str, str] | None = None) -> list[str]:
        script = "\n".join(
            [
                'blockvault() { "$PYTHON" -m tui.cli "$@"; }',
                'eval "$(blockvault completion bash)"',
                f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})",
                f"COMP_CWORD={len(words) - 1}",
                "_blockvault",
                "printf '%s\\n' \"${COMPREPLY[@]}\"",
            ]
        )
        done = subprocess.run(
            ["bash", "--norc", "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHON": sys.executable, **(env or {})},
            check=True,
        )
        assert done.stderr == ""
        return done.stdout.split()

    offered.home = cli.home  # type: ignore[attr-defined]
    return offered


def test_bash_completes_nouns_verbs_and_options(complete) -> None:  # type: ignore[no-untyped-def]
    assert complete("blockvault", "di") == ["disk"]
    assert complete("blockvault", "disk", "de") == ["delete", "detach"]
    assert complete("blockvault", "disk", "list", "--j") == ["--json"]
    assert complete("blockvault", "disk", "attach", "x", "--role", "") == ["system", "data"]
    assert complete("blockvault", "completion", "") == ["bash", "zsh", "fish"]


@pytest.mark.slow
def test_bash_completes_disk_names_from_the_catalog(complete) -> None:  # type: ignore[no-untyped-def]
    at_home = {"BLOCKVAULT_HOME": str(complete.home)}
    assert complete("blockvault", "disk", "show", "", env=at_home) == ["db1-root", "web1-data"]


@pytest.mark.slow  # two catalog reads: 2 s on a busy machine
def test_bash_completes_names_of_the_catalog_on_the_line(complete) -> None:  # type: ignore[no-untyped-def]
    home = str(complete.home)
    # --home on the line names the catalog; the names of two kinds, and an option's value
    words = ("blockvault", "--home", home, "policy", "apply", "nightly", "w")
    assert complete(*words) == ["web1-data", "web1"]
    assert complete("blockvault", "--home", home, "disk", "attach", "db1-root", "--server", "") == [
        "web1"
    ]


@pytest.mark.slow
def test_bash_offers_no_names_without_a_catalog(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nowhere = tmp_path / "nowhere"
    assert complete("blockvault", "--home", str(nowhere), "disk", "show", "") == []
    assert not nowhere.exists()  # read-only: completion never makes a catalog


# zsh runs the bash function through bashcompinit (called here as its compgen -F does, with
# 0-based arrays; zsh itself filters the words by what is typed); fish has its own script.
ZSH = """
blockvault() { "$PYTHON" -m tui.cli "$@"; }
source <(blockvault completion zsh)
setopt ksharrays
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_blockvault
print -l -r -- "${COMPREPLY[@]}"
"""
FISH = """
function blockvault; $PYTHON -m tui.cli $argv; end
blockvault completion fish | source
complete -C "$argv"
"""


@pytest.mark.parametrize("shell", ["zsh", "fish"])
@pytest.mark.slow
def test_zsh_and_fish_complete_names_and_choices(complete, shell: str) -> None:  # type: ignore[no-untyped-def]
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")

    def offered(*words: str) -> list[str]:
        argv = (
            ["zsh", "-f", "-c", ZSH, "zsh", *words]
            if shell == "zsh"
            else ["fish", "--no-config", "-c", FISH, " ".join(words)]
        )
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHON": sys.executable, "BLOCKVAULT_HOME": str(complete.home)},
            check=True,
        )
        assert done.stderr == ""
        return sorted(done.stdout.split())

    if shell == "zsh":
        assert offered("blockvault", "disk", "show", "") == ["db1-root", "web1-data"]
        assert offered("blockvault", "disk", "attach", "x", "--role", "") == ["data", "system"]
    else:
        assert offered("blockvault", "disk", "show", "") == ["db1-root", "web1-data"]
        assert offered("blockvault", "di") == ["disk"]
        assert offered("blockvault", "disk", "attach", "x", "--role", "") == ["data", "system"]


# --- the console paints, then opens the catalog --------------------------------------------------


async def wait_for(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_console_paints_before_the_catalog_is_open(tmp_path: Path) -> None:
    release = threading.Event()

    def opener() -> Blockvault:  # what run_console hands the app: slow on purpose here
        assert release.wait(20)
        return Blockvault.open(home=tmp_path / "home")

    app = BlockvaultApp(None, opener=opener)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        shown = str(app.screen.query_one(Static).render())
        assert "opening the catalog" in shown and app.main is None
        release.set()
        await wait_for(lambda: app.main is not None and app.screen is app.main)
        await pilot.press("q")
    assert app.error is None
    assert app.bv is not None
    app.bv.close()


@pytest.mark.asyncio
async def test_console_that_cannot_open_the_catalog_ends_with_the_error() -> None:
    def opener() -> Blockvault:
        raise UserError("no catalog here")

    app = BlockvaultApp(None, opener=opener)
    async with app.run_test(size=(100, 30)):
        await wait_for(lambda: app.error is not None)
    assert str(app.error) == "no catalog here" and app.return_code == 2  # usage (README)


# The console on HOME in a fresh interpreter, until its panes are loaded: the modules imported.
CONSOLE = """
import asyncio, json, sys, time
from core.api import Blockvault
from tui.console.app import BlockvaultApp

async def main():
    app = BlockvaultApp(None, opener=lambda: Blockvault.open(home=sys.argv[1]))
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 60
        while app.main is None or any(w.is_running for w in app.workers):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await pilot.pause()
    print(json.dumps(sorted(sys.modules)))

asyncio.run(main())
"""


@pytest.mark.slow  # a console in a fresh interpreter: 3 s
def test_console_start_imports_no_s3_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI(tmp_path / "home", capsys)
    cli.ok("disk", "create", "web1-data", "--size", "1M")
    cli.ok("vault", "add", "here", "--path", str(tmp_path / "vault"))
    done = subprocess.run(
        [sys.executable, "-c", CONSOLE, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    assert "tui.console.main_screen" in modules
    assert not loaded(modules, ("boto3", "botocore", "alembic"))
