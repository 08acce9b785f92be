"""Scale-out settings: roles that fit the partition count, and session ids that never collide."""

from __future__ import annotations

import pytest

from miaoxiang.settings import SettingsError, load_settings


@pytest.mark.parametrize(("overrides", "says"), [
    ({"partitions": 2, "mqtt_url": "mqtt://b:1883"}, "each process is a `worker` or the `api`"),
    ({"partitions": 2, "role": "api"}, "needs a real broker"),
    ({"role": "worker"}, "role must be `all` when partitions is 1"),
    ({"partitions": 2, "role": "worker", "mqtt_share_group": "g", "partition_index": 2, "mqtt_url": "mqtt://b:1883"},
     "partition_index must be below"),
    ({"partitions": 2, "role": "worker", "mqtt_url": "mqtt://b:1883"}, "workers must share the uplink"),
])
def test_inconsistent_scale_out_settings_are_one_sentence_without_values(overrides: dict, says: str) -> None:
    with pytest.raises(SettingsError) as e:
        load_settings(admin_token="s3cret-token", **overrides)
    assert says in str(e.value) and "s3cret" not in str(e.value)


def test_each_role_has_its_own_session_ids_and_one_process_keeps_todays() -> None:
    assert load_settings().session_id() == "miaoxiang-default"
    url = "mqtt://broker:1883"
    ids = {
        load_settings(partitions=3, role="worker", partition_index=i, mqtt_share_group="g", mqtt_url=url).session_id()
        for i in range(3)
    }
    ids.add(load_settings(partitions=3, role="api", mqtt_url=url).session_id())
    assert len(ids) == 4
