"""The robot server over real sockets: security, fuzzing, timeouts, request semantics.

Servers run in a background thread of the test process (SimRobotServer on an ephemeral port).
"""

import sys

import numpy as np
import pytest
import zmq

from robojax.drivers import protocol as p
from robojax.drivers.client import (
    RobotAuthError,
    RobotClient,
    RobotError,
    RobotProtocolError,
    RobotTimeout,
    roundtrip_latency,
)
from robojax.drivers.protocol import MsgType
from robojax.drivers.server import InsecureBindError, check_bind, is_local_address
from robojax.drivers.sim_robot import SimRobotServer

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module", autouse=True)
def _fast_gil_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(scope="module")
def server():
    with SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", real_time_factor=20.0).start() as srv:
        yield srv


@pytest.fixture(scope="module")
def token_server():
    with SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", token=TOKEN, real_time_factor=20.0).start() as srv:
        yield srv


def _raw_socket(address):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    return sock


def _raw_call(sock, frames, timeout_ms=2000):
    sock.send_multipart(frames)
    assert sock.poll(timeout_ms), "the server did not answer"
    return sock.recv_multipart()


def test_bind_security():
    assert is_local_address("tcp://127.0.0.1:5555") and is_local_address("tcp://localhost:1")
    assert is_local_address("tcp://[::1]:5555") and is_local_address("ipc:///tmp/robot")
    assert not is_local_address("tcp://0.0.0.0:5555") and not is_local_address("tcp://eth0:5555")
    assert not is_local_address("tcp://*:5555") and not is_local_address("tcp://192.168.1.4:5555")
    with pytest.raises(InsecureBindError, match="no token is set"):
        SimRobotServer("arm_reach", bind="tcp://0.0.0.0:0")
    with pytest.raises(InsecureBindError, match="at least 16"):
        check_bind("tcp://0.0.0.0:5555", "short")
    check_bind("tcp://0.0.0.0:5555", TOKEN)  # a long enough token is accepted
    with pytest.raises(ValueError, match="unsupported transport"):
        check_bind("udp://127.0.0.1:5", None)


def test_non_loopback_bind_with_token_serves(tmp_path):
    with SimRobotServer("arm_reach", bind="tcp://0.0.0.0:0", token=TOKEN, real_time_factor=20).start() as srv:
        port = srv.address.rsplit(":", 1)[1]
        with RobotClient(f"tcp://127.0.0.1:{port}", token=TOKEN, timeout_s=2.0) as client:
            assert client.info()["task"] == "arm_reach"


def test_info_state_reset_command(server):
    with RobotClient(server.address, timeout_s=2.0) as client:
        info = client.info()
        assert info["protocol_version"] == p.PROTOCOL_VERSION
        assert info["observation_spec"]["shape"] == [24] and info["action_spec"]["shape"] == [3]
        assert info["control_dt"] == pytest.approx(0.04) and info["workspace"]["low"] == [0.25, -0.35, 0.02]
        first = client.reset(seed=5)
        assert first.step == 0 and first.time_s == 0.0 and first.obs.shape == (24,) and not first.stopped
        assert np.array_equal(client.reset(seed=5).obs, first.obs)  # seeded resets are reproducible
        assert not np.array_equal(client.reset(seed=6).obs, first.obs)
        # Frozen until the first command.
        assert client.state().step == 0 and client.state().time_s == 0.0
        sent = client.command(np.array([1.0, 0.0, 0.0], np.float32))
        later = client.state(min_step=sent.step + 3)
        assert later.step == 3 and later.time_s == pytest.approx(3 * 0.04)
        assert later.obs[15] > sent.obs[15]  # the ee moved along +x


def test_stop_holds_and_ignores_commands(server):
    with RobotClient(server.address, timeout_s=2.0) as client:
        client.reset(seed=1)
        client.command(np.array([0.0, 1.0, 0.0]))
        client.state(min_step=2)
        client.stop()
        held = client.state(min_step=client.state().step + 5).obs[15:18]
        state = client.command(np.array([0.0, -1.0, 0.0]))
        assert state.stopped
        after = client.state(min_step=state.step + 5)
        assert np.allclose(after.obs[15:18], held, atol=2e-3)  # no motion after the ignored command
        assert not client.reset(seed=1).stopped


def test_parameters(server):
    with RobotClient(server.address, timeout_s=2.0) as client:
        assert client.get_parameters() == {"real_time_factor": 20.0, "max_ee_step": 0.03}
        assert client.set_parameters(max_ee_step=0.01)["max_ee_step"] == 0.01
        with pytest.raises(RobotError, match=r"max_ee_step must be in \(0, 0.03\]"):
            client.set_parameters(max_ee_step=0.5)
        with pytest.raises(RobotProtocolError, match="unknown parameters"):
            client.set_parameters(stiffness=3.0)
        client.set_parameters(max_ee_step=0.03)


def test_bad_requests_get_clear_errors(server):
    with RobotClient(server.address, timeout_s=2.0) as client:
        client.reset(seed=0)
        with pytest.raises(RobotProtocolError, match=r"this robot expects \(3,\)"):
            client.command(np.zeros(4, np.float32))
        with pytest.raises(RobotProtocolError, match="NaN or inf"):
            client.command(np.array([0.0, np.nan, 0.0], np.float32))
        assert client.state().step == 0  # nothing was applied


def test_wrong_or_missing_token_rejected(token_server):
    with RobotClient(token_server.address, token=TOKEN, timeout_s=2.0) as good:
        assert good.info()["task"] == "arm_reach"
    with RobotClient(token_server.address, token="wrong-token-wrong-token-wrong-tok", timeout_s=2.0) as bad:
        with pytest.raises(RobotAuthError):
            bad.info()
        with pytest.raises(RobotAuthError):
            bad.command(np.zeros(3))
    with RobotClient(token_server.address, timeout_s=2.0) as anonymous:
        with pytest.raises(RobotAuthError, match="carries no token"):
            anonymous.reset()
    with RobotClient(token_server.address, token=TOKEN, timeout_s=2.0) as good:
        assert good.state().step >= 0  # still serving


def test_client_with_token_refuses_unauthenticated_server(server):
    with RobotClient(server.address, token=TOKEN, timeout_s=2.0) as client:
        with pytest.raises(RobotAuthError, match="tokens differ"):
            client.info()


def _fuzz_frames(rng, valid_frames, n):
    for i in range(n):
        kind = i % 5
        if kind == 0:
            yield [rng.bytes(int(rng.integers(0, 120)))]
        elif kind == 1:
            frame = valid_frames[int(rng.integers(len(valid_frames)))]
            yield [frame[: int(rng.integers(0, len(frame)))]]
        elif kind == 2:
            frame = bytearray(valid_frames[int(rng.integers(len(valid_frames)))])
            for _ in range(int(rng.integers(1, 4))):
                frame[int(rng.integers(len(frame)))] ^= 1 << int(rng.integers(8))
            yield [bytes(frame)]
        elif kind == 3:  # a parseable header over garbage, with a consistent length
            body = rng.bytes(int(rng.integers(0, 80)))
            yield [p.HEADER.pack(p.MAGIC, 1, int(rng.integers(0, 20)), 0, 1, len(body), bytes(32)) + body]
        else:  # multi-frame and empty messages
            yield [b"", rng.bytes(10)] if rng.random() < 0.5 else [b""]


@pytest.mark.parametrize("use_token", [True, False])
def test_fuzzed_messages_get_error_replies_and_server_survives(use_token, server, token_server):
    srv = token_server if use_token else server
    token = TOKEN if use_token else None
    valid = [
        p.encode(MsgType.COMMAND, 11, {"action": np.zeros(3, np.float32)}, token=token),
        p.encode(MsgType.RESET, 12, {"seed": np.int64(3)}, token=token),
        p.encode(MsgType.SET_PARAMS, 13, {"max_ee_step": 0.02}, token=token),
        p.encode(MsgType.STATE, 14, token=token),
    ]
    rng = np.random.default_rng(0)
    sock = _raw_socket(srv.address)
    errors_before = srv.errors
    n, error_replies = 500, 0
    try:
        for frames in _fuzz_frames(rng, valid, n):
            reply = _raw_call(sock, frames)
            assert len(reply) == 1
            msg = p.decode(reply[0], token=token, expect_reply=True)  # every reply is well formed
            if msg.error:
                error_replies += 1
                assert msg.fields["code"] in ("protocol", "auth", "robot") and msg.fields["message"]
            else:
                assert not use_token, "a mutated message passed authentication"
    finally:
        sock.close(0)
    if use_token:
        assert error_replies == n  # every mutation breaks the MAC or the framing
    else:
        assert error_replies >= 0.9 * n  # a few bit flips land on values and stay valid
    assert srv.errors - errors_before == error_replies
    with RobotClient(srv.address, token=token, timeout_s=2.0) as client:  # still serving valid requests
        client.set_parameters(max_ee_step=0.03)
        assert client.reset(seed=0).step == 0


def test_timeout_then_recovery():
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    with RobotClient(address, timeout_s=0.1) as client:
        with pytest.raises(RobotTimeout, match="timed out after 100 ms"):
            client.info()
        with SimRobotServer("arm_reach", bind=address, real_time_factor=20).start():
            assert client.info(timeout_s=2.0)["task"] == "arm_reach"  # the same client now works


def test_stale_replies_are_dropped(server):
    with RobotClient(server.address, timeout_s=2.0) as client:
        client.reset(seed=0)
        # A min_step far ahead times out; the next call must not read that late reply.
        with pytest.raises(RobotTimeout):
            client.state(min_step=10**6, timeout_s=0.05)
        assert client.info()["task"] == "arm_reach"


def test_roundtrip_latency_helper(server):
    stats = roundtrip_latency(server.address, n=200, warmup=10)
    assert stats["n"] == 200 and 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
