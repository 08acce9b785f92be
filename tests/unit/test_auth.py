from devices.auth import Principal, hash_token, new_token


def test_region_scope_matches_whole_path_segments() -> None:
    p = Principal("grid", "operator", ("江西省/赣州市",))
    assert p.sees_region("江西省/赣州市")
    assert p.sees_region("江西省/赣州市/章贡区")
    assert not p.sees_region("江西省/赣州市辖区")
    assert not p.sees_region("江西省")
    assert not p.sees_region(None)
    assert Principal("all", "viewer").sees_region(None)


def test_roles_are_ordered() -> None:
    assert Principal("a", "admin").may("operator")
    assert Principal("o", "operator").may("viewer")
    assert not Principal("v", "viewer").may("operator")


def test_tokens_are_random_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) > 40
    assert hash_token(a) != a and len(hash_token(a)) == 64
