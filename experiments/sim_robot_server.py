"""Run a simulated Panda arm (C MuJoCo, real time) behind the robojax robot protocol.

    python -m experiments.sim_robot_server --task=arm_reach --port=5555
    python -m experiments.sim_robot_server --task=arm_push_cube --real_time_factor=10
    python -m experiments.sim_robot_server --task=arm_pick_place
    python -m experiments.sim_robot_server --host=0.0.0.0 --token=$(python -c 'import secrets; print(secrets.token_hex(16))')

Prints the bound address (one line, "robojax sim robot server at tcp://..."), serves until SIGINT
or SIGTERM, then closes cleanly. --port=0 picks a free port. A non-loopback --host needs --token.
"""

from __future__ import annotations

import signal
import sys

from absl import app, flags

_TASK = flags.DEFINE_enum(
    "task", "arm_reach", ["arm_reach", "arm_push_cube", "arm_pick_place"], "Which arm task to simulate."
)
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to bind; anything but loopback requires --token.")
_PORT = flags.DEFINE_integer("port", 5555, "TCP port (0: any free port).")
_TOKEN = flags.DEFINE_string("token", None, "Shared secret clients must present (>= 16 bytes).")
_RTF = flags.DEFINE_float("real_time_factor", 1.0, "Simulated seconds per wall second (1 = real time).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the reset noise when clients reset without a seed.")


def main(argv):
    del argv
    import robojax  # noqa: F401  (house rule: robojax first)
    from robojax.drivers.server import InsecureBindError
    from robojax.drivers.sim_robot import SimRobotServer

    # The server loop and the physics thread share the GIL: switch often, or a request can wait
    # the default 5 ms for the physics thread to yield.
    sys.setswitchinterval(0.0002)
    host = f"[{_HOST.value}]" if ":" in _HOST.value else _HOST.value
    bind = f"tcp://{host}:{_PORT.value}"
    try:
        server = SimRobotServer(
            _TASK.value, bind=bind, token=_TOKEN.value, real_time_factor=_RTF.value, seed=_SEED.value
        )
    except (InsecureBindError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    def stop(signum, frame):
        del frame
        print(f"received {signal.Signals(signum).name}: shutting down", flush=True)
        server.shutdown()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        f"robojax sim robot server at {server.address} (task={_TASK.value},"
        f" real_time_factor={_RTF.value}, token={'yes' if _TOKEN.value else 'no'})",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.close()
    print(f"stopped after {server.requests} requests ({server.errors} errors)", flush=True)


if __name__ == "__main__":
    app.run(main)
