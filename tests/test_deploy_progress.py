"""Progress output: a bar with rate and ETA on a terminal, status lines otherwise, a summary."""

from __future__ import annotations

import io

from nbdboot.console.progress import Progress, summary
from nbdboot.disk.store import StoreStats


def test_tty_bar_has_percent_rate_and_eta():
    out = io.StringIO()
    p = Progress(out, tty=True)
    stats = StoreStats(copied_bytes=50 << 20, zero_bytes=10 << 20)
    p.update(60 << 20, 120 << 20, stats, force=True)
    p.finish()
    text = out.getvalue()
    assert text.startswith("\r[")
    assert " 50.0% 60.0 MiB/120.0 MiB" in text and "/s ETA " in text
    assert text.endswith("\n")


def test_headless_prints_whole_lines_at_most_every_interval():
    out = io.StringIO()
    p = Progress(out, tty=False, interval=3600)
    stats = StoreStats(copied_bytes=1 << 20)
    p.update(1 << 20, 4 << 20, stats)   # first update prints
    p.update(2 << 20, 4 << 20, stats)   # within the interval: silent
    p.update(4 << 20, 4 << 20, stats, force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert lines[0].startswith("nbdboot:  25.0% 1.0 MiB of 4.0 MiB local, 1.0 MiB copied")
    assert lines[1].startswith("nbdboot: 100.0%")


def test_quiet_prints_nothing_and_summary_counts_everything():
    out = io.StringIO()
    Progress(out, tty=True, quiet=True).update(1, 2, StoreStats(), force=True)
    assert out.getvalue() == ""
    s = summary(StoreStats(copied_bytes=3 << 20, zero_bytes=5 << 30, guest_bytes=4096,
                           skipped_bytes=1 << 20), 1.5)
    assert "copied 3.0 MiB (3145728 bytes) in 1.50s" in s
    assert "skipped 5.0 GiB as holes/zeroes" in s and "4.0 KiB written by the guest" in s
    assert "1.0 MiB already local" in s
