"""A browser that starts but whose page cannot be opened leaves no process and no profile behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psutil
import pytest

from pipeline.products.webmap.browser import BrowserError, Chromium

#: Stands in for a Chromium that starts, writes its DevTools port file and then never answers on
#: that port (port 1: nothing listens there). It records its pid and profile for the test.
FAKE = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in --user-data-dir=*) profile="${arg#--user-data-dir=}";; esac
done
echo "$$ $profile" > "$RECORD"
printf '1\\n/devtools/browser/none\\n' > "$profile/DevToolsActivePort"
exec sleep 300
"""


def test_a_page_that_fails_to_open_leaves_no_browser_or_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = tmp_path / "chromium"
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record"
    monkeypatch.setenv("RECORD", str(record))
    with pytest.raises(BrowserError, match="did not answer"), Chromium(str(exe)):
        pass
    pid, profile = record.read_text().split()
    assert not Path(profile).exists()
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    assert os.path.basename(profile).startswith("landslide-chromium-")
