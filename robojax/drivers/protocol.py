"""The robojax robot protocol: small, versioned, binary request/response messages.

Every message (request or reply) is one ZeroMQ frame: a fixed 52-byte header, then a payload.

Header (little-endian, `struct` format "<4sBBHQI32s"):

    offset size field
         0    4 magic        b"RJXP"
         4    1 version      PROTOCOL_VERSION (1); any other value is rejected
         5    1 type         MsgType: 1 STATE, 2 COMMAND, 3 RESET, 4 STOP, 5 GET_PARAMS,
                             6 SET_PARAMS, 7 INFO, 15 ERROR (replies only)
         6    2 flags        bit 0 REPLY, bit 1 ERROR, bit 2 AUTH; other bits must be 0
         8    8 request_id   chosen by the client, echoed by the reply (stale replies are dropped)
        16    4 payload_len  bytes after the header; must equal the frame's remaining length
                             and be <= MAX_PAYLOAD (1 MiB)
        20   32 mac          with a token: HMAC-SHA256(token, header[0:20] + payload), AUTH set;
                             without: 32 zero bytes, AUTH clear

The token itself never travels; the MAC authenticates and integrity-protects each message, and
it is compared with `hmac.compare_digest`. (It does not stop a replayed message: on an untrusted
network, tunnel the port through SSH or a VPN as well.)

Payload: a set of named arrays.

    u16 count (<= MAX_FIELDS), then per field:
        u8  name_len, name (ASCII, [a-z][a-z0-9_]*, <= 32 bytes, unique)
        u8  dtype: 1 float32, 2 float64, 3 int32, 4 int64, 5 bool (one byte, 0 or 1),
                   6 utf-8 text (ndim 1, dims[0] = byte length)
        u8  ndim (<= 4), then ndim x u32 dims
        data: prod(dims) * itemsize bytes, little-endian, C order, no padding

Scalars are 0-d arrays. No pickle, ever: decoding only builds numpy arrays and strings.
`decode` is strict: a short or long frame, wrong magic or version, unknown type or flag, a bad
MAC, a length that disagrees with the data, a bad name or dtype, or a duplicate field raises
`ProtocolError` with a message naming the problem. `check_request` adds the per-type schema
(required/allowed fields, dtypes, shapes, finiteness of commands).

Request and reply fields:

    STATE       request: [min_step i64]  -> reply: state fields (below). With min_step the
                server answers once the robot has completed that many control periods, with the
                state latched at that control-period boundary.
    COMMAND     request: action f32/f64 [action_dim], finite -> reply: state fields at receipt
    RESET       request: [seed i64 >= 0] -> reply: state fields of the new episode
    STOP        request: -               -> reply: state fields (stopped = 1)
    GET_PARAMS  request: -               -> reply: one scalar field per parameter
    SET_PARAMS  request: scalars         -> reply: all parameters after the update
    INFO        request: -               -> reply: info (utf-8 JSON text)
    ERROR       reply only: code (text: protocol | auth | robot | internal), message (text)

    state fields: obs f32 [obs_dim], reward f64, terminated bool, success bool, stopped bool,
                  time_s f64 (robot clock), step i64 (control periods since reset)
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import re
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAGIC = b"RJXP"
HEADER = struct.Struct("<4sBBHQI32s")
HEADER_SIZE = HEADER.size  # 52
MAC_SIZE = 32
MAX_PAYLOAD = 1 << 20
MAX_FIELDS = 64
MAX_NDIM = 4
MAX_NAME = 32

FLAG_REPLY = 1
FLAG_ERROR = 2
FLAG_AUTH = 4
_KNOWN_FLAGS = FLAG_REPLY | FLAG_ERROR | FLAG_AUTH

_NAME_RE = re.compile(rb"[a-z][a-z0-9_]*\Z")
_ZERO_MAC = bytes(MAC_SIZE)


class MsgType(enum.IntEnum):
    STATE = 1
    COMMAND = 2
    RESET = 3
    STOP = 4
    GET_PARAMS = 5
    SET_PARAMS = 6
    INFO = 7
    ERROR = 15


class ProtocolError(ValueError):
    """A malformed message, or one that breaks the request schema."""

    code = "protocol"


class AuthenticationError(ProtocolError):
    """A message without the expected token MAC, or with a wrong one."""

    code = "auth"


# dtype code -> numpy dtype (text is handled apart)
_DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("<i8"), 5: np.dtype("u1")}
_TEXT = 6
_CODES = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 4}


@dataclasses.dataclass
class Message:
    type: MsgType
    request_id: int
    fields: dict[str, Any]
    reply: bool = False
    error: bool = False


def token_bytes(token: str | bytes | None) -> bytes | None:
    """The shared secret as bytes (None or empty: no token)."""
    if token is None:
        return None
    if isinstance(token, str):
        token = token.encode("utf-8")
    if not isinstance(token, bytes):
        raise TypeError(f"token must be str or bytes, got {type(token).__name__}")
    return token or None


def _mac(token: bytes, head: bytes, payload: bytes) -> bytes:
    h = hmac.new(token, head, hashlib.sha256)
    h.update(payload)
    return h.digest()


# ---- encoding ------------------------------------------------------------------------------------
def _encode_field(name: str, value: Any, out: list[bytes]) -> None:
    raw_name = name.encode("ascii") if isinstance(name, str) and name.isascii() else b""
    if not _NAME_RE.match(raw_name) or len(raw_name) > MAX_NAME:
        raise ProtocolError(f"field name {name!r} must match [a-z][a-z0-9_]* and be <= {MAX_NAME} bytes")
    if isinstance(value, str):
        data = value.encode("utf-8")
        out += [struct.pack("<B", len(raw_name)), raw_name, struct.pack("<BBI", _TEXT, 1, len(data)), data]
        return
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        code, arr = 5, arr.astype(np.uint8)
    elif arr.dtype in _CODES:
        code = _CODES[arr.dtype]
    elif np.issubdtype(arr.dtype, np.integer):
        code, arr = 4, arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        code, arr = 2, arr.astype(np.float64)
    else:
        raise ProtocolError(f"field {name!r}: cannot encode dtype {arr.dtype} (numbers, bools and text only)")
    if arr.ndim > MAX_NDIM:
        raise ProtocolError(f"field {name!r} has {arr.ndim} dims, at most {MAX_NDIM} are allowed")
    arr = np.asarray(arr, dtype=_DTYPES[code], order="C")  # (ascontiguousarray would make 0-d 1-d)
    out += [
        struct.pack("<B", len(raw_name)),
        raw_name,
        struct.pack(f"<BB{arr.ndim}I", code, arr.ndim, *arr.shape),
        arr.tobytes(),
    ]


def encode_payload(fields: Mapping[str, Any]) -> bytes:
    if len(fields) > MAX_FIELDS:
        raise ProtocolError(f"{len(fields)} fields, at most {MAX_FIELDS} are allowed")
    out = [struct.pack("<H", len(fields))]
    for name, value in fields.items():
        _encode_field(name, value, out)
    payload = b"".join(out)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD ({MAX_PAYLOAD})")
    return payload


def encode(
    msg_type: MsgType | int,
    request_id: int,
    fields: Mapping[str, Any] | None = None,
    *,
    reply: bool = False,
    error: bool = False,
    token: str | bytes | None = None,
) -> bytes:
    """One wire frame: header + payload, MAC'd with `token` when given."""
    msg_type = MsgType(msg_type)
    if not 0 <= int(request_id) < 2**64:
        raise ProtocolError(f"request_id {request_id} does not fit in 64 bits")
    payload = encode_payload(fields or {})
    key = token_bytes(token)
    flags = (FLAG_REPLY if reply else 0) | (FLAG_ERROR if error else 0) | (FLAG_AUTH if key else 0)
    head = HEADER.pack(MAGIC, PROTOCOL_VERSION, int(msg_type), flags, int(request_id), len(payload), _ZERO_MAC)[:20]
    mac = _mac(key, head, payload) if key else _ZERO_MAC
    return head + mac + payload


# ---- decoding ------------------------------------------------------------------------------------
def peek_request_id(frame: bytes) -> int:
    """The request id of a frame whose header at least parses (0 otherwise), for error replies."""
    if len(frame) >= HEADER_SIZE and frame[:4] == MAGIC:
        return HEADER.unpack_from(frame)[4]
    return 0


def decode_header(frame: bytes) -> tuple[MsgType, int, int, int, bytes]:
    """(type, flags, request_id, payload_len, mac); raises ProtocolError on any header problem."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"a message must be bytes, got {type(frame).__name__}")
    frame = bytes(frame)
    if len(frame) < HEADER_SIZE:
        raise ProtocolError(f"message of {len(frame)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, mtype, flags, request_id, length, mac = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}, expected {MAGIC!r}: not a robojax robot message")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION});"
            " run the same robojax version on client and server"
        )
    try:
        mtype = MsgType(mtype)
    except ValueError:
        raise ProtocolError(f"unknown message type {mtype}") from None
    if flags & ~_KNOWN_FLAGS:
        raise ProtocolError(f"unknown flag bits {flags & ~_KNOWN_FLAGS:#x}")
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"payload_len {length} exceeds MAX_PAYLOAD ({MAX_PAYLOAD} bytes)")
    if len(frame) - HEADER_SIZE != length:
        raise ProtocolError(f"payload_len says {length} bytes but {len(frame) - HEADER_SIZE} follow the header")
    return mtype, flags, request_id, length, mac


def _decode_payload(payload: bytes) -> dict[str, Any]:
    n = len(payload)
    if n < 2:
        raise ProtocolError(f"payload of {n} bytes has no field count")
    (count,) = struct.unpack_from("<H", payload, 0)
    if count > MAX_FIELDS:
        raise ProtocolError(f"{count} fields, at most {MAX_FIELDS} are allowed")
    pos, fields = 2, {}
    for i in range(count):
        if pos + 1 > n:
            raise ProtocolError(f"field {i}: payload ends before its name length")
        name_len = payload[pos]
        pos += 1
        if name_len == 0 or name_len > MAX_NAME:
            raise ProtocolError(f"field {i}: name length {name_len} not in [1, {MAX_NAME}]")
        if pos + name_len + 2 > n:
            raise ProtocolError(f"field {i}: payload ends inside its name or type")
        raw = payload[pos : pos + name_len]
        if not _NAME_RE.match(raw):
            raise ProtocolError(f"field {i}: bad name {raw!r} (must match [a-z][a-z0-9_]*)")
        name = raw.decode("ascii")
        if name in fields:
            raise ProtocolError(f"duplicate field {name!r}")
        pos += name_len
        code, ndim = payload[pos], payload[pos + 1]
        pos += 2
        if code != _TEXT and code not in _DTYPES:
            raise ProtocolError(f"field {name!r}: unknown dtype code {code}")
        if ndim > MAX_NDIM:
            raise ProtocolError(f"field {name!r}: {ndim} dims, at most {MAX_NDIM} are allowed")
        if code == _TEXT and ndim != 1:
            raise ProtocolError(f"field {name!r}: text must have ndim 1, got {ndim}")
        if pos + 4 * ndim > n:
            raise ProtocolError(f"field {name!r}: payload ends inside its dims")
        dims = struct.unpack_from(f"<{ndim}I", payload, pos)
        pos += 4 * ndim
        size = nonzero = 1
        for d in dims:
            size *= d
            nonzero *= max(d, 1)
        if nonzero > MAX_PAYLOAD:  # also bounds empty arrays' other dims (numpy rejects huge shapes)
            raise ProtocolError(f"field {name!r}: dims {list(dims)} are larger than any payload")
        itemsize = 1 if code == _TEXT else _DTYPES[code].itemsize
        nbytes = size * itemsize
        if nbytes > n - pos:
            raise ProtocolError(f"field {name!r}: dims {list(dims)} need {nbytes} bytes but {n - pos} remain")
        data = payload[pos : pos + nbytes]
        pos += nbytes
        if code == _TEXT:
            try:
                fields[name] = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ProtocolError(f"field {name!r}: text is not valid UTF-8 ({e.reason})") from None
            continue
        arr = np.frombuffer(data, dtype=_DTYPES[code]).reshape(dims).copy()
        if code == 5:
            if arr.size and arr.max() > 1:
                raise ProtocolError(f"field {name!r}: bool bytes must be 0 or 1")
            arr = arr.astype(np.bool_)
        fields[name] = arr
    if pos != n:
        raise ProtocolError(f"{n - pos} trailing bytes after the last field")
    return fields


def decode(frame: bytes, *, token: str | bytes | None = None, expect_reply: bool | None = None) -> Message:
    """Parse and authenticate one frame; every problem raises ProtocolError (AuthenticationError
    for a missing or wrong MAC when `token` is set)."""
    mtype, flags, request_id, length, mac = decode_header(frame)
    frame = bytes(frame)
    is_reply = bool(flags & FLAG_REPLY)
    if expect_reply is not None and is_reply != expect_reply:
        raise ProtocolError(
            f"expected a {'reply' if expect_reply else 'request'}, got a {'reply' if is_reply else 'request'}"
        )
    if mtype == MsgType.ERROR and not (is_reply and flags & FLAG_ERROR):
        raise ProtocolError("an ERROR message must be a reply with the ERROR flag")
    if flags & FLAG_ERROR and mtype != MsgType.ERROR:
        raise ProtocolError(f"the ERROR flag is only valid on ERROR replies, not {mtype.name}")
    payload = frame[HEADER_SIZE:]
    key = token_bytes(token)
    if key is not None:
        if not flags & FLAG_AUTH:
            raise AuthenticationError("message carries no token MAC but this side requires a token")
        if not hmac.compare_digest(mac, _mac(key, frame[:20], payload)):
            raise AuthenticationError("token MAC mismatch: wrong token, or the message was altered")
    elif flags & FLAG_AUTH:
        pass  # the receiver has no token to check against; the MAC is ignored
    elif mac != _ZERO_MAC:
        raise ProtocolError("mac bytes must be zero when the AUTH flag is clear")
    return Message(mtype, request_id, _decode_payload(payload), is_reply, bool(flags & FLAG_ERROR))


# ---- request schema ------------------------------------------------------------------------------
def _scalar(fields, name, kinds: str, what: str):
    value = fields[name]
    if isinstance(value, str) or value.ndim != 0 or value.dtype.kind not in kinds:
        raise ProtocolError(f"{what}: field {name!r} must be a scalar of kind {kinds!r}")
    return value[()]


def check_request(msg: Message, action_dim: int) -> dict[str, Any]:
    """Validate a decoded request against its type's schema; returns clean python arguments."""
    if msg.reply or msg.error:
        raise ProtocolError("expected a request, got a reply")
    f, t = msg.fields, msg.type
    allowed = {
        MsgType.STATE: {"min_step"},
        MsgType.COMMAND: {"action"},
        MsgType.RESET: {"seed"},
        MsgType.STOP: set(),
        MsgType.GET_PARAMS: set(),
        MsgType.INFO: set(),
    }
    if t == MsgType.ERROR:
        raise ProtocolError("ERROR is a reply type, not a request")
    if t in allowed:
        extra = sorted(set(f) - allowed[t])
        if extra:
            raise ProtocolError(f"{t.name} request: unexpected fields {extra} (allowed: {sorted(allowed[t])})")
    what = f"{t.name} request"
    if t == MsgType.STATE:
        if "min_step" not in f:
            return {}
        step = int(_scalar(f, "min_step", "iu", what))
        if step < 0:
            raise ProtocolError(f"{what}: min_step must be >= 0, got {step}")
        return {"min_step": step}
    if t == MsgType.COMMAND:
        if "action" not in f:
            raise ProtocolError(f"{what}: missing field 'action'")
        action = f["action"]
        if isinstance(action, str) or action.dtype.kind != "f":
            raise ProtocolError(f"{what}: 'action' must be float32 or float64")
        if action.shape != (action_dim,):
            raise ProtocolError(f"{what}: 'action' has shape {action.shape}, this robot expects ({action_dim},)")
        if not np.all(np.isfinite(action)):
            raise ProtocolError(f"{what}: 'action' contains NaN or inf: {action.tolist()}")
        return {"action": action.astype(np.float64)}
    if t == MsgType.RESET:
        if "seed" not in f:
            return {"seed": None}
        seed = int(_scalar(f, "seed", "iu", what))
        if seed < 0:
            raise ProtocolError(f"{what}: seed must be >= 0, got {seed}")
        return {"seed": seed}
    if t == MsgType.SET_PARAMS:
        params = {}
        for name in f:
            value = _scalar(f, name, "fiub", what)
            if isinstance(value, np.floating) and not np.isfinite(value):
                raise ProtocolError(f"{what}: parameter {name!r} is not finite")
            params[name] = value.item()
        return {"params": params}
    return {}


def state_fields(obs, reward, terminated, success, stopped, time_s, step) -> dict[str, Any]:
    return {
        "obs": np.asarray(obs, np.float32),
        "reward": np.float64(reward),
        "terminated": np.bool_(terminated),
        "success": np.bool_(success),
        "stopped": np.bool_(stopped),
        "time_s": np.float64(time_s),
        "step": np.int64(step),
    }
