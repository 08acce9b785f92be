"""SASL PLAIN credentials of the AMQP 1.0 server-side subscriptions, built as each provider documents.

Both are rebuilt at every connection attempt: they carry a millisecond timestamp that the
provider checks against its clock (Huawei refuses one 5 minutes or more off).

- Huawei Cloud IoTDA, "AMQP客户端接入说明" (support.huaweicloud.com/usermanual-iothub/
  iot_01_00100_2.html): `username = "accessKey=${accessKey}|timestamp=${timestamp}|instanceId=
  ${instanceId}"` (timestamp: 13-digit epoch milliseconds; instanceId needed when a region has
  several standard instances), `password = "${accessCode}"`; `amqps://${server.address}:5671`,
  vhost `default`, SASL PLAIN, TLS 1.2.
- Alibaba Cloud IoT Platform, "Connect an AMQP client to IoT Platform" (alibabacloud.com/help/
  en/iot/developer-reference/connect-an-amqp-client-to-iot-platform, and its Python/Node.js
  samples): `userName = "${clientId}|authMode=aksign,signMethod=hmacsha1,timestamp=${ts},
  authId=${accessKey},iotInstanceId=${iotInstanceId},consumerGroupId=${consumerGroupId}|"`
  (iotInstanceId empty on the public instance), `password = Base64(HMAC-SHA1(accessSecret,
  "authId=${accessKey}&timestamp=${ts}"))`; `amqps://${uid}.iot-amqp.${region}.aliyuncs.com:5671`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def iotda_username(access_key: str, timestamp_ms: int, instance_id: str = "") -> str:
    """Huawei IoTDA's username; the `instanceId` part is left out when there is none."""
    parts = [f"accessKey={access_key}", f"timestamp={timestamp_ms}"]
    if instance_id:
        parts.append(f"instanceId={instance_id}")
    return "|".join(parts)


def iotda_credentials(access_key: str, access_code: str, timestamp_ms: int, instance_id: str = "") -> tuple[str, str]:
    """(username, password) for Huawei IoTDA: the password is the access code itself."""
    return iotda_username(access_key, timestamp_ms, instance_id), access_code


def aliyun_username(
    client_id: str, access_key: str, timestamp_ms: int, consumer_group_id: str, instance_id: str = ""
) -> str:
    """Alibaba Cloud IoT's signed username (the parameters in the order of the documented example)."""
    params = (
        f"authMode=aksign,signMethod=hmacsha1,timestamp={timestamp_ms},authId={access_key},"
        f"iotInstanceId={instance_id},consumerGroupId={consumer_group_id}"
    )
    return f"{client_id}|{params}|"


def aliyun_password(access_key: str, access_secret: str, timestamp_ms: int) -> str:
    """Base64(HMAC-SHA1(accessSecret, "authId=${accessKey}&timestamp=${ts}"))."""
    content = f"authId={access_key}&timestamp={timestamp_ms}".encode()
    return base64.b64encode(hmac.new(access_secret.encode(), content, hashlib.sha1).digest()).decode("ascii")


def aliyun_credentials(
    client_id: str,
    access_key: str,
    access_secret: str,
    timestamp_ms: int,
    consumer_group_id: str,
    instance_id: str = "",
) -> tuple[str, str]:
    """(username, password) for Alibaba Cloud IoT."""
    return (
        aliyun_username(client_id, access_key, timestamp_ms, consumer_group_id, instance_id),
        aliyun_password(access_key, access_secret, timestamp_ms),
    )
