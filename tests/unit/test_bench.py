from pathlib import Path

from miaoxiang.bench import headlines, markdown, run_one


def test_run_one_collects_json_and_reports_failures(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text('import json; print("warming up"); print(json.dumps({"rate": 12}))')
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit('no broker')")
    ok = run_one(good, 30)
    assert ok["ok"] and ok["figures"] == {"rate": 12}
    failed = run_one(bad, 30)
    assert not failed["ok"] and "no broker" in failed["error"]
    md = markdown([ok, failed])
    assert "| rate | 12 |" in md and "FAILED" in md


def test_headlines_pick_figures_compute_scale_out_ratios_and_show_what_is_missing() -> None:
    results = [
        {"script": "ingest_throughput.py", "ok": True,
         "figures": {"ceiling_msgs_per_s": 40000, "naive_msgs_per_s": 1000, "pipeline_msgs_per_s": 20000}},
        {"script": "scale_out.py", "ok": True,
         "figures": {"workers": {"count": 2, "msgs_per_s": 30000}, "workers_vs_one": 1.5}},
        {"script": "fleet_api.py", "ok": False, "error": "no database"},
    ]
    table = {label: value for label, _, value in headlines(results)}
    assert table["N workers / ceiling"] == 0.75 and table["N workers / naive"] == 30.0
    assert table["N (workers)"] == 2 and table["ingest, whole service in one process"] == 20000
    assert table["service 1M: RSS"] is None
    md = markdown(results, {"cores": 2})
    assert "| N workers / naive | 30.0 | ratio |" in md
    assert "| service 1M: RSS | n/a | MB |" in md and "| cores | 2 |" in md
