"""The SASL PLAIN credentials of Huawei IoTDA and Alibaba Cloud IoT, against their documented forms."""

from __future__ import annotations

from ingest.subscriptions.amqp_auth import (
    aliyun_credentials,
    aliyun_password,
    aliyun_username,
    iotda_credentials,
    iotda_username,
)


def test_iotda_username_is_the_documented_form() -> None:
    # "accessKey=${accessKey}|timestamp=${timestamp}|instanceId=${instanceId}", 13-digit ms timestamp
    assert iotda_username("Ak1x", 1700000000123, "inst-9") == "accessKey=Ak1x|timestamp=1700000000123|instanceId=inst-9"


def test_iotda_username_without_an_instance_leaves_the_part_out() -> None:
    assert iotda_username("Ak1x", 1700000000123) == "accessKey=Ak1x|timestamp=1700000000123"


def test_iotda_password_is_the_access_code() -> None:
    user, password = iotda_credentials("Ak1x", "code/with+chars==", 5, "i")
    assert (user, password) == ("accessKey=Ak1x|timestamp=5|instanceId=i", "code/with+chars==")


def test_aliyun_username_is_the_documented_form() -> None:
    # ${clientId}|authMode=aksign,signMethod=hmacsha1,timestamp=..,authId=..,iotInstanceId=..,consumerGroupId=..|
    assert aliyun_username("00-F4-8D-6F-92-6F", "LTAIexampleKey", 1573489088171, "DEFAULT_GROUP", "") == (
        "00-F4-8D-6F-92-6F|authMode=aksign,signMethod=hmacsha1,timestamp=1573489088171,authId=LTAIexampleKey,"
        "iotInstanceId=,consumerGroupId=DEFAULT_GROUP|"
    )
    assert aliyun_username("c1", "k", 1, "g", "iot-06z00").endswith(",iotInstanceId=iot-06z00,consumerGroupId=g|")


def test_aliyun_password_is_base64_hmac_sha1_of_authid_and_timestamp() -> None:
    # computed independently: printf 'authId=LTAIexampleKey&timestamp=1573489088171' |
    #   openssl dgst -sha1 -hmac 'exampleSecret0123' -binary | base64
    assert aliyun_password("LTAIexampleKey", "exampleSecret0123", 1573489088171) == "GrUg65C6LjKgsbOK8JJob/psC6U="


def test_aliyun_credentials_sign_the_same_timestamp_as_the_username() -> None:
    user, password = aliyun_credentials("c1", "LTAIexampleKey", "exampleSecret0123", 1573489088171, "g")
    assert "timestamp=1573489088171," in user
    assert password == "GrUg65C6LjKgsbOK8JJob/psC6U="
    assert aliyun_credentials("c1", "LTAIexampleKey", "exampleSecret0123", 1573489088172, "g")[1] != password
