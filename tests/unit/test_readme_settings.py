"""README's configuration table names every setting with its default and meaning, so a newcomer
reading it sees what the service actually takes (a setting added without a row fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from miaoxiang.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_readme_row_with_its_description() -> None:
    readme = README.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `MIAOXIANG_([A-Z0-9_]+)` \| `[^`]*` \| (.+) \|$", readme, re.M))
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert rows.get(name.upper()) == field.description, f"README row of MIAOXIANG_{name.upper()}"
    assert set(rows) == {n.upper() for n in Settings.model_fields}
