"""The wire format: round trips, and a precise ProtocolError for every kind of malformed input."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robojax.drivers import protocol as p
from robojax.drivers.protocol import AuthenticationError, MsgType, ProtocolError

TOKEN = "a-test-token-of-32-characters-xx"


def _state_frame(token=None, rid=7):
    fields = p.state_fields(np.arange(5, dtype=np.float32), 0.5, False, True, False, 1.25, 3)
    return p.encode(MsgType.STATE, rid, fields, reply=True, token=token)


def test_round_trip_all_dtypes_and_text():
    fields = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.float64(3.5),
        "c": np.array([1, -2], np.int32),
        "d": np.int64(2**40),
        "e": np.array([True, False]),
        "text": "héllo {json}",
        "empty": np.zeros((0, 3), np.float32),
    }
    for token in (None, TOKEN):
        msg = p.decode(p.encode(MsgType.SET_PARAMS, 2**64 - 1, fields, token=token), token=token)
        assert msg.type == MsgType.SET_PARAMS and msg.request_id == 2**64 - 1 and not msg.reply
        assert msg.fields.keys() == fields.keys()
        for k, v in fields.items():
            got = msg.fields[k]
            if isinstance(v, str):
                assert got == v
            else:
                v = np.asarray(v)
                assert got.dtype == v.dtype and got.shape == v.shape and np.array_equal(got, v), k


def test_header_layout_is_documented_size():
    frame = p.encode(MsgType.INFO, 1)
    assert p.HEADER_SIZE == 52 and len(frame) == 52 + 2
    magic, version, mtype, flags, rid, length, mac = p.HEADER.unpack_from(frame)
    assert (magic, version, mtype, flags, rid, length, mac) == (b"RJXP", 1, 7, 0, 1, 2, bytes(32))


def _with_header(frame, **changes):
    names = ["magic", "version", "type", "flags", "request_id", "payload_len", "mac"]
    values = dict(zip(names, p.HEADER.unpack_from(frame)))
    values.update(changes)
    return p.HEADER.pack(*(values[n] for n in names)) + frame[p.HEADER_SIZE :]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: b"", "shorter than the 52-byte header"),
        (lambda f: f[:30], "shorter than the 52-byte header"),
        (lambda f: b"XXXX" + f[4:], "bad magic"),
        (lambda f: _with_header(f, version=2), "protocol version 2 is not supported"),
        (lambda f: _with_header(f, type=99), "unknown message type 99"),
        (lambda f: _with_header(f, flags=0x80), "unknown flag bits"),
        (lambda f: _with_header(f, payload_len=p.MAX_PAYLOAD + 1), "exceeds MAX_PAYLOAD"),
        (lambda f: f[:-1], "payload_len says"),
        (lambda f: f + b"\0", "payload_len says"),
        (lambda f: _with_header(f, mac=b"\1" * 32), "mac bytes must be zero"),
    ],
)
def test_malformed_headers(make, message):
    with pytest.raises(ProtocolError, match=message):
        p.decode(make(_state_frame()))


def _frame_with_payload(payload, mtype=MsgType.COMMAND):
    head = p.HEADER.pack(p.MAGIC, 1, int(mtype), 0, 1, len(payload), bytes(32))
    return head + payload


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "no field count"),
        (struct.pack("<H", 65), "at most 64"),
        (struct.pack("<H", 1), "ends before its name length"),
        (struct.pack("<HB", 1, 0), "name length 0"),
        (struct.pack("<HB", 1, 3) + b"Abc" + bytes([1, 0]), "bad name"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([9, 0]), "unknown dtype code 9"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([1, 5]), "5 dims"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([1, 1]) + struct.pack("<I", 1000), "need 4000 bytes"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([1, 1]) + struct.pack("<I", 2**31), "larger than any payload"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([1, 2]) + struct.pack("<II", 0, 2**31), "larger than any payload"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([5, 0, 7]), "must be 0 or 1"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([6, 1]) + struct.pack("<I", 1) + b"\xff", "not valid UTF-8"),
        (struct.pack("<HB", 1, 1) + b"a" + bytes([6, 0]), "text must have ndim 1"),
        (
            struct.pack("<HB", 2, 1) + b"a" + bytes([2, 0]) + bytes(8) + b"\x01a" + bytes([2, 0]) + bytes(8),
            "duplicate field",
        ),
        (struct.pack("<H", 0) + b"zz", "2 trailing bytes"),
    ],
)
def test_malformed_payloads(payload, message):
    with pytest.raises(ProtocolError, match=message):
        p.decode(_frame_with_payload(payload))


def test_authentication():
    frame = _state_frame(token=TOKEN)
    assert p.decode(frame, token=TOKEN).fields["step"] == 3
    with pytest.raises(AuthenticationError, match="MAC mismatch"):
        p.decode(frame, token="another-token-of-many-characters")
    with pytest.raises(AuthenticationError, match="carries no token"):
        p.decode(_state_frame(), token=TOKEN)
    tampered = bytearray(frame)
    tampered[-1] ^= 1  # a flipped payload bit
    with pytest.raises(AuthenticationError):
        p.decode(bytes(tampered), token=TOKEN)
    tampered = bytearray(frame)
    tampered[9] ^= 1  # a flipped request-id bit: the header is covered too
    with pytest.raises(AuthenticationError):
        p.decode(bytes(tampered), token=TOKEN)


def _request(mtype, fields):
    return p.decode(p.encode(mtype, 1, fields))


@pytest.mark.parametrize(
    "mtype, fields, message",
    [
        (MsgType.COMMAND, {}, "missing field 'action'"),
        (MsgType.COMMAND, {"action": np.array([0.1, np.nan, 0.0])}, "NaN or inf"),
        (MsgType.COMMAND, {"action": np.array([0.1, np.inf, 0.0], np.float32)}, "NaN or inf"),
        (MsgType.COMMAND, {"action": np.zeros(4, np.float32)}, r"shape \(4,\), this robot expects \(3,\)"),
        (MsgType.COMMAND, {"action": np.zeros((1, 3), np.float32)}, "shape"),
        (MsgType.COMMAND, {"action": np.zeros(3, np.int32)}, "float32 or float64"),
        (MsgType.COMMAND, {"action": "0,0,0"}, "float32 or float64"),
        (MsgType.COMMAND, {"action": np.zeros(3), "extra": 1}, "unexpected fields"),
        (MsgType.RESET, {"seed": np.int64(-1)}, "seed must be >= 0"),
        (MsgType.RESET, {"seed": 1.5}, "must be a scalar"),
        (MsgType.STATE, {"min_step": np.array([1, 2])}, "must be a scalar"),
        (MsgType.SET_PARAMS, {"x": np.zeros(2)}, "must be a scalar"),
        (MsgType.SET_PARAMS, {"x": float("nan")}, "not finite"),
        (MsgType.INFO, {"x": 1}, "unexpected fields"),
    ],
)
def test_request_schema(mtype, fields, message):
    with pytest.raises(ProtocolError, match=message):
        p.check_request(_request(mtype, fields), action_dim=3)


def test_request_schema_accepts_valid_requests():
    assert p.check_request(_request(MsgType.COMMAND, {"action": np.zeros(3, np.float32)}), 3)["action"].shape == (3,)
    assert p.check_request(_request(MsgType.RESET, {}), 3) == {"seed": None}
    assert p.check_request(_request(MsgType.STATE, {"min_step": np.int64(4)}), 3) == {"min_step": 4}
    assert p.check_request(_request(MsgType.SET_PARAMS, {"a": 1.5, "b": True}), 3) == {"params": {"a": 1.5, "b": True}}
    with pytest.raises(ProtocolError, match="expected a request"):
        p.check_request(p.decode(_state_frame()), 3)


def test_encode_refuses_bad_fields():
    with pytest.raises(ProtocolError, match="field name"):
        p.encode(MsgType.INFO, 1, {"Bad": 1})
    with pytest.raises(ProtocolError, match="cannot encode dtype"):
        p.encode(MsgType.INFO, 1, {"x": np.array(["a"], object)})
    with pytest.raises(ProtocolError, match="exceeds MAX_PAYLOAD"):
        p.encode(MsgType.INFO, 1, {"x": np.zeros(p.MAX_PAYLOAD // 4 + 1, np.float32)})


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_random_bytes_never_crashes(data):
    for frame in (data, p.MAGIC + data, p.HEADER.pack(p.MAGIC, 1, 2, 0, 1, len(data), bytes(32)) + data):
        try:
            p.check_request(p.decode(frame), 3)
        except ProtocolError:
            pass


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 7))
def test_bit_flips_of_valid_messages_never_crash(position, bit):
    frame = bytearray(_state_frame())
    frame[position % len(frame)] ^= 1 << bit
    try:
        p.decode(bytes(frame))
    except ProtocolError:
        pass
