"""docs/extending.md's list of files is all it takes to add a device kind: a throwaway `boiler` kind is
added to a copy of src/ by editing exactly those files, and a fresh interpreter decodes, registers,
describes and alarms on it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CATALOGUE_EDITS = [
    ("    charger = 6\n", "    charger = 6\n    boiler = 7\n"),
    ("    linkage_failed = 29\n", "    linkage_failed = 29\n    boiler_overheat = 30\n"),
    ('    "fault_code": MetricSpec(',
     '    "flue_temp_c": MetricSpec(float, "°C", _l("烟道温度", "flue temperature"), "scalar"),\n'
     '    "fault_code": MetricSpec('),
    ("\nEVENTS: dict[Event, Label] = {",
     '\nKINDS[Kind.boiler] = KindSpec(_l("锅炉", "Boiler"), 600, ("flue_temp_c",), (AlarmType.boiler_overheat,))\n'
     "\nEVENTS: dict[Event, Label] = {"),
    ("\ndel S, R\n",
     '\nALARM_TYPES[AlarmType.boiler_overheat] = AlarmSpec(_l("锅炉超温", "Boiler overheat"), S.major, R.verify,'
     ' metrics=("flue_temp_c",))\ndel S, R\n'),
    ("\n#: An earlier threshold name",
     '\nTHRESHOLDS["flue_temp_max_c"] = ThresholdSpec(250.0, "°C", _l("烟道温度上限", "flue temperature high"))'
     "\n#: An earlier threshold name"),
]
PROFILE = {
    "name": "ctwing-boiler",
    "description": "A throwaway boiler controller on CTWing for tests/unit/test_extending.py: flue = flue gas "
                   "temperature in 0.1 °C (flue_temp_c, scale 0.1); state = what happened "
                   "(0 report, 1 alarm, 2 clear).",
    "kind": "boiler",
    "platform": {"ctwing": {"product_ids": []}},
    "properties": {"flue": {"metric": "flue_temp_c", "scale": 0.1}},
    "events": [{"property": "state", "map": {"0": "report", "1": "alarm", "2": "alarm_clear"}}],
    "default_event": "report",
}
RULE_MODULE = '''"""Boilers: flue gas at or above flue_temp_max_c -> boiler_overheat."""

from __future__ import annotations

from alerting.core.rules import RULE, Hits, Readings
from devices.catalogue import AlarmType, Kind


def boiler(r: Readings) -> list[Hits]:
    rows = r.rows(int(Kind.boiler))
    hot = r.value("flue_temp_c")[rows] >= r.threshold("flue_temp_max_c", rows)
    return [Hits.of(rows[hot], AlarmType.boiler_overheat, rule=RULE["boiler.flue_temp"])]
'''
REFERENCE = '''

def boiler_reference(flue_temp_c: float, limit: float) -> bool:
    """Scalar reference of alerting.core.boiler: a boiler_overheat at or above the limit."""
    return flue_temp_c >= limit
'''
CHECK = r'''
import json
import numpy as np
from alerting.core import Correlator
from devices import catalogue
from devices.batch import ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Kind
from devices.registry import DeviceSpec
from ingest.codecs.ctwing import decode_ctwing
from ingest.codecs.profiles import ProfileRegistry
from tests.unit.reference_rules import boiler_reference

spec = DeviceSpec.parse({"device_id": "868000000000017", "kind": "boiler", "thresholds": {"flue_temp_max_c": 240}})
meta = catalogue.meta()
kind = next(k for k in meta["kinds"] if k["name"] == "boiler")
fleet = Fleet(capacity=4)
slot = fleet.upsert(spec.device_id, spec.kind, unit_id="u1")
fleet.set_thresholds(slot, spec.thresholds)
core, out = Correlator(), []
for i, (flue, state) in enumerate([(2300, 0), (2450, 0)]):
    body = {"messageType": "dataReport", "IMEI": spec.device_id, "deviceId": "d1", "productId": "1",
            "timestamp": 1795341600000 + i * 60000, "payload": {"serviceData": {"flue": flue, "state": state}}}
    result = decode_ctwing(json.dumps(body).encode(), received_ms=1795341700000 + i * 60000,
                           profiles=ProfileRegistry.load(), profile="ctwing-boiler")
    r = result.readings[0]
    batch = ReadingColumns.from_readings([r], np.array([slot]))
    raised = [d.type.name for d in core.evaluate(batch, fleet, r.ts_ms + 1000) if d.action == "raise"]
    fleet.apply(batch)
    out.append({"kind": r.kind.name, "flue": r.metrics["flue_temp_c"], "raised": raised,
                "reference": boiler_reference(r.metrics["flue_temp_c"], 240.0)})
print(json.dumps({"spec_kind": spec.kind.name, "label": kind["label"], "metrics": kind["metrics"],
                  "types": [t["name"] for t in meta["alarm_types"]], "readings": out}))
'''


def _listed_files() -> list[str]:
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    block = re.search(r"## The files a new kind touches.*?```text\n(.*?)```", text, re.S)
    assert block, "docs/extending.md lists the files in a ```text block"
    return block.group(1).split()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path.name}: {old!r} is not there exactly once"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_new_kind_needs_only_the_listed_files(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    for old, new in CATALOGUE_EDITS:
        _edit(tmp_path / "src/devices/catalogue.py", old, new)
    (tmp_path / "src/ingest/profiles/ctwing-boiler.json").write_text(json.dumps(PROFILE, ensure_ascii=False))
    with (tmp_path / "docs/profiles.md").open("a", encoding="utf-8") as f:
        f.write("\n### `ctwing-boiler`\n\nA throwaway boiler: `flue` (flue_temp_c x0.1), `state`.\n")
    (tmp_path / "src/alerting/core/boiler.py").write_text(RULE_MODULE)
    rules = tmp_path / "src/alerting/core/rules.py"
    _edit(rules, '    "charger.port_temp",', '    "boiler.flue_temp", "charger.port_temp",')
    _edit(tmp_path / "src/alerting/core/correlator.py", "ALARM_RULES = (", "ALARM_RULES = (boiler, ")
    _edit(tmp_path / "src/alerting/core/correlator.py", "from alerting.core import offline\n",
          "from alerting.core import offline\nfrom alerting.core.boiler import boiler\n")
    with (tmp_path / "tests/unit/reference_rules.py").open("a", encoding="utf-8") as f:
        f.write(REFERENCE)

    after = {p for p in tmp_path.rglob("*") if p.is_file() and before.get(p) != p.read_bytes()}
    assert sorted(str(p.relative_to(tmp_path)) for p in after) == sorted(_listed_files())

    run = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": f"{tmp_path / 'src'}:{tmp_path}", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["spec_kind"] == "boiler" and got["label"] == {"zh": "锅炉", "en": "Boiler"}
    assert "flue_temp_c" in got["metrics"] and "boiler_overheat" in got["types"]
    assert got["readings"] == [
        {"kind": "boiler", "flue": 230.0, "raised": [], "reference": False},
        {"kind": "boiler", "flue": 245.0, "raised": ["boiler_overheat"], "reference": True},
    ]
