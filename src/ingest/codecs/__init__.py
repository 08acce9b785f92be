"""Pure payload codecs: bytes in, canonical readings out, `DecodeError` for anything else.

JSON reports and MX1 frames (CONTRACT §2), CTWing, OneNET and generic HTTP pushes (§3), the
device profiles that translate vendor object models, and `registry`, the one table that says
which decoder takes a payload.
"""

from .ctwing import decode_ctwing
from .errors import BatchItemError, DecodeError
from .generic import hmac_signature, verify_generic
from .json_report import decode_json_batch, decode_json_report, encode_json_report
from .mx1 import crc16_modbus, decode_mx1, encode_mx1
from .onenet import decode_onenet, onenet_signature, verify_onenet, verify_onenet_url
from .platform import PlatformNotice, PlatformResult
from .profiles import Profile, ProfileError, ProfileRegistry
from .registry import PLATFORM_NAMES, UnknownCodec, decode_report, push_platform, topic_codec

__all__ = [
    "PLATFORM_NAMES",
    "BatchItemError",
    "DecodeError",
    "PlatformNotice",
    "PlatformResult",
    "Profile",
    "ProfileError",
    "ProfileRegistry",
    "UnknownCodec",
    "crc16_modbus",
    "decode_ctwing",
    "decode_json_batch",
    "decode_json_report",
    "decode_mx1",
    "decode_onenet",
    "decode_report",
    "encode_json_report",
    "encode_mx1",
    "hmac_signature",
    "onenet_signature",
    "push_platform",
    "topic_codec",
    "verify_generic",
    "verify_onenet",
    "verify_onenet_url",
]
