"""The seeded panel model of the UITD simulator: deterministic, and always encodable."""

from __future__ import annotations

from datetime import datetime

from ingest.codecs.gb26875_appdata import AppData, ComponentStatus, decode_app_data, encode_app_data
from simulators.uitd import FAULT, FIRE, NORMAL, PanelModel, clip_description

AT = datetime(2024, 5, 1, 12, 0, 0)


def test_same_seed_same_panel_and_other_seeds_differ() -> None:
    assert PanelModel(5).components == PanelModel(5).components
    assert PanelModel(5).components != PanelModel(6).components


def test_every_seeded_component_encodes_and_decodes() -> None:
    for seed in range(300):
        panel = PanelModel(seed, components=22)
        assert len({c.id for c in panel.components}) == 22
        data = encode_app_data(AppData(2, tuple(panel.component_status(c, AT) for c in panel.components)))
        assert len(data) == 2 + 22 * 46 <= 1024
        decoded = decode_app_data(data).objects
        described = [o.description for o in decoded if isinstance(o, ComponentStatus)]
        assert described == [c.description for c in panel.components]


def test_clip_description_cuts_at_a_character_boundary() -> None:
    clipped = clip_description("地下车库" * 5)  # 40 bytes in GB 18030
    assert clipped == "地下车库" * 3 + "地下车" and len(clipped.encode("gb18030")) == 30


def test_status_changes_and_the_panel_summary() -> None:
    panel = PanelModel(1)
    panel.change(0, AT, set_bits=FIRE)
    panel.change(1, AT, set_bits=FAULT)
    assert panel.system_status(AT).status == NORMAL | FIRE | FAULT
    [obj] = panel.change(0, AT, clear_bits=FIRE).objects
    assert isinstance(obj, ComponentStatus) and obj.status == NORMAL
