"""The console's layout rules without a terminal: columns fitted to a width, names shortened
in the middle, panes sharing the width, paths shown as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.api import ProgressEvent
from tui.console.columns import Column, fit, share
from tui.console.details import shown_path
from tui.console.fmt import middle
from tui.console.jobs_strip import detail_line, transfer_line

MiB = 1 << 20


def test_paths_are_shown_as_they_are(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A pool under BLOCKVAULT_HOME (a demo's is under /tmp) shows its real path; `~` only
    for a path that is under the user's home directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "alice"))
    assert shown_path("/tmp/blockvault-demo-x/pool/disk-1/disk.img") == (
        "/tmp/blockvault-demo-x/pool/disk-1/disk.img"
    )
    inside = str(tmp_path / "alice" / ".local/share/blockvault/pool/disk.img")
    assert shown_path(inside) == "~/.local/share/blockvault/pool/disk.img"
    assert shown_path(str(tmp_path / "alice2" / "x")) == str(tmp_path / "alice2" / "x")


def test_columns_fit_names_first_then_what_is_needed() -> None:
    columns = (
        Column("Name", 8, grows=True),
        Column("Age", 7, drop=1),
        Column("Size", 7, drop=2),
    )
    # room for everything: the name whole
    assert fit(columns, [20, 7, 7], 60) == [20, 7, 7]
    # a little less: the optional Size goes before the name is cut
    assert fit(columns, [20, 7, 7], 32) == [20, 7, None]
    # narrow: the essential Age stays, the name shrinks (to no less than its minimum)
    assert fit(columns, [20, 7, 7], 24) == [13, 7, None]
    assert fit(columns, [20, 7, 7], 10) == [8, None, None]
    assert middle("web1-data-20261124-140512", 20) == "web1-data-20…-140512"


def test_panes_share_the_width_by_what_they_hold() -> None:
    assert share(200, [90, 70], [30, 30]) == [112, 88]  # all fits: in proportion
    assert share(80, [90, 70], [30, 30]) == [45, 35]
    assert share(80, [150, 10], [30, 40]) == [40, 40]  # never under the least


def test_the_strip_says_how_far_how_fast_and_what_holds_a_job_back() -> None:
    event = ProgressEvent(
        "job-1",
        "backing up",
        11 * MiB,
        32 * MiB,
        bytes_new=8 * MiB,
        bytes_reused=3 * MiB,
        rate=3 * MiB,
        eta=7.0,
        bottleneck="writing",
        limit_upload=20 * MiB,
    )
    assert transfer_line(event) == "11 MiB / 32 MiB"
    assert detail_line(event) == (
        "3.0 MiB/s · ETA 7s · 8 MiB new, 3 MiB reused · bottleneck writing · " + event.limited
    )
    assert "limited to" in event.limited
    assert detail_line(ProgressEvent("job-1", "scanning", 0, 32 * MiB)) == "- · ETA -"
