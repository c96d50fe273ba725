"""A robot server: speaks the robojax protocol over a ZeroMQ ROUTER socket, drives a `RobotBackend`.

Transport: ZeroMQ (pyzmq). It is well kept, brokerless, needs no IDL or code generation, and its
sockets reconnect by themselves over TCP, IPC or inproc. The server is a ROUTER and the client a
DEALER rather than REQ/REP: REP/REQ enforce a strict send/receive alternation that wedges after a
timeout, while ROUTER/DEALER carry a request id per message, so a client can time out, drop stale
replies by id and carry on, and one server serves many clients.

Security: the server binds to loopback by default. Binding a TCP address that is not loopback
refuses to start without a shared token (>= 16 bytes). With a token every request must carry an
HMAC of itself keyed by the token (see protocol.py); replies are MAC'd too. Malformed,
oversize or unauthenticated messages get an ERROR reply and never stop the server.

Threads: the server loop runs in its own thread (`start()`) or the caller's (`serve_forever()`);
the backend may run its own (a physics thread for the simulator). Only the loop touches the
socket. The backend wakes the loop at each control-period boundary through a pipe, which answers
`STATE(min_step=k)` requests exactly at the boundary.
"""

from __future__ import annotations

import abc
import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq
from absl import logging

from robojax.drivers import protocol
from robojax.drivers.protocol import MsgType, ProtocolError

DEFAULT_BIND = "tcp://127.0.0.1:5555"
MIN_TOKEN_BYTES = 16
# Frames above this are dropped by ZeroMQ (peer disconnected) before we see them; anything between
# the protocol's MAX_PAYLOAD and this gets a proper ERROR reply.
MAX_FRAME_BYTES = 4 * protocol.MAX_PAYLOAD


class InsecureBindError(ValueError):
    """Binding a non-loopback address without a (long enough) token."""


class RobotBackendError(RuntimeError):
    """The robot refused a request (reported to the client as an ERROR reply with code 'robot')."""


class RobotBackend(abc.ABC):
    """What a robot server drives: a simulator, or a real robot's control interface.

    Every method is called from the server loop's thread; a backend with its own threads
    synchronises internally. State-returning methods return `protocol.state_fields(...)` dicts.
    """

    action_dim: int

    @abc.abstractmethod
    def info(self) -> dict: ...

    @abc.abstractmethod
    def state(self) -> dict: ...

    @abc.abstractmethod
    def boundary_state(self, min_step: int) -> dict | None:
        """The state latched at control-period boundary `min_step` (or the latest, if that one is no longer
        kept) once it has been reached; None before."""

    @abc.abstractmethod
    def command(self, action: np.ndarray) -> dict: ...

    @abc.abstractmethod
    def reset(self, seed: int | None) -> dict: ...

    @abc.abstractmethod
    def stop(self) -> dict: ...

    @abc.abstractmethod
    def get_parameters(self) -> dict: ...

    @abc.abstractmethod
    def set_parameters(self, params: dict) -> dict: ...

    def set_boundary_callback(self, fn: Callable[[], None] | None) -> None:
        """`fn` is called (from any thread) after every control-period boundary."""

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def is_local_address(address: str) -> bool:
    """True for inproc://, ipc:// and tcp:// addresses on a loopback host."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        raise ValueError(f"address {address!r} has no scheme; use e.g. tcp://127.0.0.1:5555")
    if scheme in ("inproc", "ipc"):
        return True
    if scheme != "tcp":
        raise ValueError(f"unsupported transport {scheme!r} in {address!r}: use tcp://, ipc:// or inproc://")
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name ("eth0"), "*" or a DNS name: treat as remote


def check_bind(bind: str, token: str | bytes | None) -> None:
    """Refuse to expose a robot beyond this machine without a token."""
    if is_local_address(bind):
        return
    key = protocol.token_bytes(token)
    if key is None:
        raise InsecureBindError(
            f"refusing to bind {bind}: it is reachable from other machines and no token is set."
            " Pass token=... (--token) with a shared secret of at least"
            f" {MIN_TOKEN_BYTES} bytes (clients pass the same one), or bind tcp://127.0.0.1:PORT"
        )
    if len(key) < MIN_TOKEN_BYTES:
        raise InsecureBindError(
            f"refusing to bind {bind}: the token has {len(key)} bytes; use at least {MIN_TOKEN_BYTES}"
            " (e.g. python -c 'import secrets; print(secrets.token_hex(16))')"
        )


class RobotServer:
    """Serves one `RobotBackend` over the robojax protocol.

    bind: a ZeroMQ endpoint; "tcp://127.0.0.1:0" (or ":*") picks a free port, see `address`.
    token: shared secret; required for non-loopback binds.
    max_wait_s: longest a `STATE(min_step=...)` request may wait before an ERROR reply.
    """

    def __init__(
        self,
        backend: RobotBackend,
        bind: str = DEFAULT_BIND,
        token: str | bytes | None = None,
        *,
        max_wait_s: float = 10.0,
        context: zmq.Context | None = None,
    ):
        check_bind(bind, token)
        self.backend = backend
        self._token = protocol.token_bytes(token)
        self.max_wait_s = float(max_wait_s)
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        if bind.startswith("tcp://") and (bind.endswith(":0") or bind.endswith(":*")):
            bind = bind.rsplit(":", 1)[0] + ":*"
        try:
            self._sock.bind(bind)
        except zmq.ZMQError as e:
            self._sock.close(0)
            raise OSError(f"cannot bind robot server to {bind}: {e}; is another server on that port?") from e
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._pending: list[tuple[bytes, int, int, float]] = []  # identity, request id, min step, deadline
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.requests = 0
        self.errors = 0
        backend.set_boundary_callback(self._wake)

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> RobotServer:
        """Serve in a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self.serve_forever, name="robojax-robot-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until `close()` (or `shutdown()`) is called from another thread or a signal handler."""
        self.backend.start()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(20 if self._pending else 100))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                if self._sock in events:
                    for _ in range(256):  # bounded, so pending waits are served under load too
                        try:
                            frames = self._sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(frames)
                if self._pending:
                    self._serve_pending()
        finally:
            self._sock.close(0)

    def shutdown(self) -> None:
        """Ask the serving loop to stop (safe from signal handlers and other threads)."""
        self._stop.set()
        self._wake()

    def close(self) -> None:
        """Stop serving, close the socket and the backend."""
        if self._closed:
            return
        self._closed = True
        self.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        elif not self._sock.closed:
            self._sock.close(0)
        self.backend.set_boundary_callback(None)
        self.backend.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the loop is already due to wake) or closed

    # ---- request handling ----------------------------------------------------------------------
    def _send(self, identity: bytes, frame: bytes) -> None:
        try:
            self._sock.send_multipart([identity, frame], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the client is gone or its queue is full: nothing to deliver to

    def _reply(self, identity: bytes, msg_type: MsgType, request_id: int, fields: dict) -> None:
        self._send(identity, protocol.encode(msg_type, request_id, fields, reply=True, token=self._token))

    def _error(self, identity: bytes, request_id: int, code: str, message: str) -> None:
        self.errors += 1
        frame = protocol.encode(
            MsgType.ERROR,
            request_id,
            {"code": code, "message": message[:2000]},
            reply=True,
            error=True,
            token=self._token,
        )
        self._send(identity, frame)

    def _handle(self, frames: list[bytes]) -> None:
        self.requests += 1
        identity = frames[0]
        if len(frames) != 2:
            self._error(identity, 0, "protocol", f"expected one message frame, got {len(frames) - 1}")
            return
        frame = frames[1]
        request_id = protocol.peek_request_id(frame)
        try:
            msg = protocol.decode(frame, token=self._token, expect_reply=False)
            args = protocol.check_request(msg, self.backend.action_dim)
            self._dispatch(identity, msg, args)
        except ProtocolError as e:
            self._error(identity, request_id, e.code, str(e))
        except RobotBackendError as e:
            self._error(identity, request_id, "robot", str(e))
        except Exception as e:  # noqa: BLE001 - a server must answer, not die
            logging.exception("robot server: internal error handling a request")
            self._error(identity, request_id, "internal", f"{type(e).__name__}: {e}")

    def _dispatch(self, identity: bytes, msg: protocol.Message, args: dict[str, Any]) -> None:
        t, rid, b = msg.type, msg.request_id, self.backend
        if t == MsgType.STATE:
            if "min_step" in args:
                state = b.boundary_state(args["min_step"])
                if state is None:
                    self._pending.append((identity, rid, args["min_step"], time.monotonic() + self.max_wait_s))
                    return
            else:
                state = b.state()
            self._reply(identity, t, rid, state)
        elif t == MsgType.COMMAND:
            self._reply(identity, t, rid, b.command(args["action"]))
        elif t == MsgType.RESET:
            self._reply(identity, t, rid, b.reset(args["seed"]))
        elif t == MsgType.STOP:
            self._reply(identity, t, rid, b.stop())
        elif t == MsgType.GET_PARAMS:
            self._reply(identity, t, rid, b.get_parameters())
        elif t == MsgType.SET_PARAMS:
            self._reply(identity, t, rid, b.set_parameters(args["params"]))
        elif t == MsgType.INFO:
            info = {"protocol_version": protocol.PROTOCOL_VERSION, **b.info()}
            self._reply(identity, t, rid, {"info": json.dumps(info)})
        else:  # pragma: no cover - check_request rejects everything else
            raise ProtocolError(f"unhandled request type {t.name}")

    def _serve_pending(self) -> None:
        now, keep = time.monotonic(), []
        for identity, rid, min_step, deadline in self._pending:
            try:
                state = self.backend.boundary_state(min_step)
            except Exception as e:  # noqa: BLE001
                self._error(identity, rid, "internal", f"{type(e).__name__}: {e}")
                continue
            if state is not None:
                self._reply(identity, MsgType.STATE, rid, state)
            elif now > deadline:
                self._error(
                    identity,
                    rid,
                    "robot",
                    f"the robot did not reach control step {min_step} within {self.max_wait_s:.1f} s"
                    " (is it stopped, or frozen after reset waiting for its first command?)",
                )
            else:
                keep.append((identity, rid, min_step, deadline))
        self._pending = keep
