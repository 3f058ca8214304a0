"""The summary: alert levels and PGA bins."""

from __future__ import annotations

from pipeline.event.summary import alert_level, pga_bin_label


def test_alert_levels_and_pga_bins() -> None:
    assert [alert_level(a) for a in (0.0, 0.99, 1.0, 9.9, 10.0, 99.0, 100.0, 5e3)] == [
        "green", "green", "yellow", "yellow", "orange", "orange", "red", "red"]  # fmt: skip
    assert [pga_bin_label(g) for g in (0.05, 0.1, 0.15, 0.3, 0.5, 0.9, float("nan"))] == [
        "<0.1", "0.1-0.2", "0.1-0.2", "0.2-0.4", "0.4-0.8", ">=0.8", "unknown"]  # fmt: skip
