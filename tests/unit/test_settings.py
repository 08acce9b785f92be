from pathlib import Path

import pytest

from miaoxiang.settings import SettingsError, load_settings


def test_defaults_are_sane() -> None:
    s = load_settings()
    assert s.tenant == "default"
    assert s.gb26875_port == 9026
    assert s.topic("evt", "smoke", "1") == "mx/v1/default/evt/smoke/1"


def test_environment_overrides_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "mx.toml"
    cfg.write_text('tenant = "jiangxi"\nhttp_port = 9000\n')
    monkeypatch.setenv("MIAOXIANG_HTTP_PORT", "9100")
    s = load_settings(cfg)
    assert s.tenant == "jiangxi"
    assert s.http_port == 9100


def test_bad_value_names_the_setting_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIAOXIANG_HTTP_PORT", "eighty")
    with pytest.raises(SettingsError) as e:
        load_settings()
    msg = str(e.value)
    assert "MIAOXIANG_HTTP_PORT" in msg and "eighty" in msg
    assert msg.count("\n") == 0


def test_secret_urls_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIAOXIANG_DATABASE_URL", "mysql://root:hunter2@db/x")
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert "hunter2" not in str(e.value)
    assert "MIAOXIANG_DATABASE_URL" in str(e.value)


def test_unknown_key_in_config_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "mx.toml"
    cfg.write_text('tennant = "typo"\n')
    with pytest.raises(SettingsError, match="TENNANT"):
        load_settings(cfg)


def test_missing_and_broken_config_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("tenant = ")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad)


def test_cli_prints_one_sentence_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from miaoxiang.cli import main

    monkeypatch.setenv("MIAOXIANG_LOG_LEVEL", "LOUD")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert "MIAOXIANG_LOG_LEVEL" in err and err.count("\n") == 1
