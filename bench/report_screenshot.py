"""Render the weekly report mail of a sample store to docs/report-sample.png with headless Chromium.

    /work/venv/bin/python bench/report_screenshot.py [OUTPUT.png]

The store is bench/report.py's generator at 3,000 tickets.  The mail's HTML is
written to a temporary file with its cid: images replaced by data: URIs (for
the screenshot only; the mail itself keeps cid: parts), then Debian's
`chromium` takes the picture (`apt-get install -y chromium` if missing).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import NOW, build, settings_for  # noqa: E402

from inboxd.store.engine import open_store, reading  # noqa: E402
from inboxd.reports.metrics import compute_report, csat_trend, embed_images, render_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "report-sample.png"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("report_screenshot: chromium not found; apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = settings_for(tmp)
        engine = open_store(settings.store.url)
        build(tmp / "bench.db", 3_000, random.Random(7))
        until = NOW.replace(hour=0)
        with reading(engine) as conn:
            report = compute_report(conn, settings, since=until - timedelta(days=7), until=until, now=NOW,
                                    include_agents=True)
            trend = csat_trend(conn, settings, until=until)
        _, _, html, images = render_report(settings, report, trend)
        page = tmp / "report.html"
        page.write_text(embed_images(html, images), encoding="utf-8")
        output.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", f"--screenshot={output.absolute()}",
             "--window-size=800,2150", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
