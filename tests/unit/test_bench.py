from pathlib import Path

from miaoxiang.bench import markdown, run_one


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
