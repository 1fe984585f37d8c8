"""The HTML tables: the model beside doing nothing, their ratio, and the ranking of compare."""

from __future__ import annotations

import math

from fxdist.evaluate import compare_table_html, metrics_table_html

METRICS = {"esr": 0.01, "baseline_esr": 0.2, "esr_ratio": 0.05, "snr_db": 20.0, "esr_pre": 0.02,
           "mrstft": 0.5, "baseline_mrstft": 2.0, "mrstft_ratio": 0.25, "log_mel": 1.5, "lufs_diff": -0.3}


def test_metrics_table_puts_each_measure_beside_doing_nothing():
    page = metrics_table_html(METRICS)
    assert page.count("<tr>") == 7  # header + six measures
    esr_row = next(r for r in page.split("<tr>") if r.startswith("<td>Error-to-signal ratio"))
    assert "<b>0.01</b>" in esr_row and ">0.2<" in esr_row and ">0.05<" in esr_row
    # the SNR of doing nothing is derived from its ESR: -10 log10(0.2) = 6.99 dB
    snr_row = next(r for r in page.split("<tr>") if r.startswith("<td>Signal-to-error ratio"))
    assert f"{-10 * math.log10(0.2):.3g} dB" in snr_row
    assert "—" in metrics_table_html({"esr": 0.1})  # unknown values shown as a dash


def test_compare_table_ranks_rows_with_their_verdict_words():
    rows = [{"rank": 1, "model": "1-a", "family": "lstm", "params": 1234, "verdict_level": "good", **METRICS},
            {"rank": 2, "model": "2-<b>", "family": "tcn", "params": 99, "verdict_level": "bad", **METRICS}]
    page = compare_table_html(rows)
    assert page.index("1-a") < page.index("2-&lt;b&gt;")  # names are escaped, order kept
    assert "1,234" in page and "✔ yes" in page and "✘ no" in page
