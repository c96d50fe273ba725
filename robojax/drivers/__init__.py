"""Robot drivers: the robojax robot protocol, a client, servers, a real-time simulated arm, and
`RobotEnv`, the host-side env over any robot server.

    server = SimRobotServer("arm_reach", bind="tcp://127.0.0.1:5555").start()
    env = RobotEnv("tcp://127.0.0.1:5555")          # a robojax HostEnv
    gym_env = env.as_gymnasium()                    # a gymnasium.Env

Import the submodules you need (`robojax.drivers.client` has no MuJoCo or JAX dependency).
"""
