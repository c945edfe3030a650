"""Regenerate screenshots/web.png: the console in a browser, `python scripts/web_screenshot.py`.

Builds a small throwaway demo, serves it with `blockvault web` on a free loopback port, opens it
in Debian's headless Chromium (apt-get install chromium) and saves what the browser shows. Ages
("27s ago") are real, unlike the frozen SVG screenshots of scripts/export_screenshots.py.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.browser import browser, have_chromium, serving  # noqa: E402
from tests.support.console import small_demo  # noqa: E402

OUT = ROOT / "screenshots" / "web.png"


def main() -> int:
    if not have_chromium():
        sys.stderr.write("web_screenshot: chromium is not installed (apt-get install chromium)\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="blockvault-web-") as folder:
        home = Path(folder) / "home"
        small_demo(home).close()
        with serving(home) as (url, _server), browser(url, width=1200, height=760) as page:
            page.wait_for("db1-data-wednesday")
            page.page.focus(".xterm-helper-textarea")  # the app has the focus: its footer shows
            page.page.wait_for_timeout(1500)  # the last frames painted
            page.page.screenshot(path=str(OUT))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
