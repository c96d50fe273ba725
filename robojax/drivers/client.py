"""`RobotClient`: the host side of the robojax robot protocol (a ZeroMQ DEALER socket).

Every call has a deadline. On a timeout the client raises `RobotTimeout` and re-creates its
socket, which drops anything still queued for the server (a stale command must never reach a
robot late) and any late reply; replies also carry the request id, and stale ones are discarded.
The socket is set to `ZMQ_IMMEDIATE`, so a request is never queued for a server that is not
connected: it times out instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import threading
import time
from typing import Any

import numpy as np
import zmq

from robojax.drivers import protocol
from robojax.drivers.protocol import AuthenticationError, MsgType, ProtocolError


class RobotError(RuntimeError):
    """The robot or its server failed a request."""


class RobotTimeout(RobotError):
    """No reply within the call's timeout."""


class RobotAuthError(RobotError):
    """The server rejected our token, or its reply failed authentication."""


class RobotProtocolError(RobotError):
    """The server rejected a malformed request, or sent a malformed reply."""


@dataclasses.dataclass
class RobotState:
    obs: np.ndarray  # float32 [obs_dim]
    reward: float
    terminated: bool
    success: bool
    time_s: float  # robot clock: simulated/robot time since reset
    step: int  # control periods completed since reset
    stopped: bool = False  # safe-stopped: commands are ignored until reset

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> RobotState:
        try:
            return cls(
                obs=np.asarray(f["obs"], np.float32),
                reward=float(f["reward"]),
                terminated=bool(f["terminated"]),
                success=bool(f["success"]),
                time_s=float(f["time_s"]),
                step=int(f["step"]),
                stopped=bool(f.get("stopped", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RobotProtocolError(f"malformed state reply ({type(e).__name__}: {e})") from None


class RobotClient:
    """A client of one robot server.

    address: the server's ZeroMQ endpoint.  token: the shared secret (required by servers bound to
    a non-loopback address).  timeout_s: deadline of every call (override per call with timeout_s=).
    Not for concurrent use from several threads (calls are serialised by a lock).
    """

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:5555",
        *,
        token: str | bytes | None = None,
        timeout_s: float = 0.1,
        context: zmq.Context | None = None,
    ):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.address = address
        self.timeout_s = float(timeout_s)
        self._token = protocol.token_bytes(token)
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._sock: zmq.Socket | None = None
        self._connect()

    # ---- connection ----------------------------------------------------------------------------
    def _connect(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * protocol.MAX_PAYLOAD)
        sock.connect(self.address)
        self._sock = sock

    def reconnect(self) -> None:
        """Drop the socket (and anything queued on it) and connect afresh."""
        with self._lock:
            self._close_socket()
            self._connect()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close_socket()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- one request/reply ---------------------------------------------------------------------
    def _call(self, msg_type: MsgType, fields: dict | None = None, timeout_s: float | None = None) -> protocol.Message:
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        with self._lock:
            if self._sock is None:
                self._connect()  # after close(): a client may be reused
            rid = next(self._ids)
            frame = protocol.encode(msg_type, rid, fields, token=self._token)
            deadline = time.monotonic() + timeout
            sock = self._sock
            if not sock.poll(_ms(deadline - time.monotonic()), zmq.POLLOUT):
                self._timed_out(msg_type, timeout, "could not send: no connection to the server")
            try:
                sock.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                self._timed_out(msg_type, timeout, "could not send: no connection to the server")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(_ms(remaining), zmq.POLLIN):
                    self._timed_out(msg_type, timeout, "no reply")
                reply = sock.recv(zmq.NOBLOCK)
                if protocol.peek_request_id(reply) != rid:
                    continue  # a late reply to an earlier, timed-out request
                try:
                    msg = protocol.decode(reply, token=self._token, expect_reply=True)
                except AuthenticationError as e:
                    raise RobotAuthError(
                        f"reply from {self.address} failed authentication ({e}); client and server tokens differ"
                    ) from None
                except ProtocolError as e:
                    raise RobotProtocolError(f"malformed reply from {self.address}: {e}") from None
                if msg.error:
                    code, text = msg.fields.get("code", "?"), msg.fields.get("message", "")
                    cls = {"auth": RobotAuthError, "protocol": RobotProtocolError}.get(code, RobotError)
                    raise cls(f"{self.address} rejected {msg_type.name}: [{code}] {text}")
                if msg.type != msg_type:
                    raise RobotProtocolError(f"asked {msg_type.name}, got a {msg.type.name} reply")
                return msg

    def _timed_out(self, msg_type: MsgType, timeout: float, why: str):
        # A fresh socket: nothing stale stays queued for the server, no late reply is read later.
        self._close_socket()
        self._connect()
        raise RobotTimeout(
            f"{msg_type.name} to {self.address} timed out after {timeout * 1e3:.0f} ms ({why});"
            " is the server running and reachable? (the client has re-created its socket)"
        )

    # ---- the API -------------------------------------------------------------------------------
    def info(self, *, timeout_s: float | None = None) -> dict:
        """Protocol version, robot, task, observation/action specs (ArraySpec.to_dict()), control_dt,
        workspace box, action limits."""
        msg = self._call(MsgType.INFO, timeout_s=timeout_s)
        try:
            return json.loads(msg.fields["info"])
        except (KeyError, TypeError, ValueError) as e:
            raise RobotProtocolError(f"malformed INFO reply: {e}") from None

    def state(self, min_step: int | None = None, *, timeout_s: float | None = None) -> RobotState:
        """The current state; with `min_step`, the state latched at the first control-period
        boundary at or after that step (the server answers when it is reached)."""
        fields = None if min_step is None else {"min_step": np.int64(min_step)}
        return RobotState.from_fields(self._call(MsgType.STATE, fields, timeout_s).fields)

    def command(self, action: np.ndarray, *, timeout_s: float | None = None) -> RobotState:
        """Set the held command (zero-order hold until the next one); returns the state at receipt."""
        action = np.asarray(action, np.float32)
        if action.ndim != 1:
            raise ValueError(f"action must be 1-D, got shape {action.shape}")
        return RobotState.from_fields(self._call(MsgType.COMMAND, {"action": action}, timeout_s).fields)

    def reset(self, seed: int | None = None, *, timeout_s: float | None = None) -> RobotState:
        fields = None if seed is None else {"seed": np.int64(seed)}
        return RobotState.from_fields(self._call(MsgType.RESET, fields, timeout_s).fields)

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Safe stop: the robot holds position and ignores commands until reset."""
        self._call(MsgType.STOP, timeout_s=timeout_s)

    def get_parameters(self, *, timeout_s: float | None = None) -> dict:
        return _scalars(self._call(MsgType.GET_PARAMS, timeout_s=timeout_s).fields)

    def set_parameters(self, timeout_s: float | None = None, **params) -> dict:
        """Update named scalar parameters; returns all parameters after the update."""
        return _scalars(self._call(MsgType.SET_PARAMS, params, timeout_s).fields)

    def __repr__(self) -> str:
        return f"RobotClient({self.address!r}, timeout_s={self.timeout_s})"


def _ms(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1e3))


def _scalars(fields: dict) -> dict:
    return {k: (v if isinstance(v, str) else v.item() if v.ndim == 0 else v.tolist()) for k, v in fields.items()}


def roundtrip_latency(
    address: str, n: int = 2000, *, token: str | bytes | None = None, warmup: int = 100, timeout_s: float = 1.0
) -> dict:
    """Time `n` STATE round trips to a running server: percentiles in milliseconds."""
    with RobotClient(address, token=token, timeout_s=timeout_s) as client:
        for _ in range(warmup):
            client.state()
        times = np.empty(n)
        for i in range(n):
            t0 = time.perf_counter()
            client.state()
            times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {
        "n": n,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
    }
