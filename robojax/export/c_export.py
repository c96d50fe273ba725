"""Export a small dense / GRU policy to dependency-free C (like RLtools' `checkpoint.h`).

A policy is described by its layers (`CPolicy`: `Dense(kernel, bias, activation)` and
`GRU(...)` cells, in order), read from the parameter pytree by the learner's adapter (RAPTOR:
`robojax.agents.raptor.export.export_student_c`; a flax MLP: `dense_layers`).
`export_policy_c(policy, out_dir, name, reference_obs, reference_actions)` writes three files:

  <name>.h           sizes (#define), the state struct (one hidden vector per GRU), the two
                     functions' prototypes, every weight as a `static const float` array, and a
                     reference input/output sequence (the caller's JAX policy's) for self-test
  <name>.c           `<name>_reset(<name>_state*)` and
                     `<name>_step(<name>_state*, const float obs[OBS_SIZE], float action[ACTION_SIZE])`:
                     no malloc, no globals besides the const weights, only expf/tanhf from libm
  <name>_selftest.c  a tiny main: replays the reference sequence (exit 1 on a mismatch above
                     1e-5) and times many steps, printing `max_abs_error=` and `ns_per_step=`

Build: `cc -O2 -std=c99 <name>.c <name>_selftest.c -lm -o selftest`.
Kernels are stored transposed (output-major) so the inner loops read contiguous memory.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

ACTIVATIONS = {
    "linear": "{x}",
    "relu": "({x} > 0.0f ? {x} : 0.0f)",
    "tanh": "tanhf({x})",
    "sigmoid": "(1.0f / (1.0f + expf(-{x})))",
}


@dataclasses.dataclass(frozen=True)
class Dense:
    """y = activation(x @ kernel + bias); kernel (in, out) as in flax."""

    kernel: np.ndarray
    bias: np.ndarray
    activation: str = "linear"
    name: str = ""

    @property
    def sizes(self) -> tuple[int, int]:
        return tuple(np.shape(self.kernel))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"kernel": np.asarray(self.kernel, np.float32).T, "bias": np.asarray(self.bias, np.float32)}


@dataclasses.dataclass(frozen=True)
class GRU:
    """GRU cell in the RLtools / PyTorch form: gates [r, z, n], input and recurrent biases on every
    gate, n = tanh(gi_n + r * gh_n), h' = (1 - z) n + z h. Kernels (in, 3H) and (H, 3H)."""

    input_kernel: np.ndarray
    recurrent_kernel: np.ndarray
    input_bias: np.ndarray
    recurrent_bias: np.ndarray
    initial_state: np.ndarray
    name: str = ""

    @property
    def sizes(self) -> tuple[int, int]:
        return int(np.shape(self.input_kernel)[0]), int(np.shape(self.recurrent_kernel)[0])

    def arrays(self) -> dict[str, np.ndarray]:
        f = lambda x: np.asarray(x, np.float32)
        return {
            "input_kernel": f(self.input_kernel).T,
            "input_bias": f(self.input_bias),
            "recurrent_kernel": f(self.recurrent_kernel).T,
            "recurrent_bias": f(self.recurrent_bias),
            "initial_state": f(self.initial_state),
        }


@dataclasses.dataclass(frozen=True)
class CPolicy:
    """A feed-forward chain of `Dense` and `GRU` layers: obs -> ... -> action."""

    layers: tuple
    description: str = ""  # one line for the header comment

    def __post_init__(self):
        if not self.layers:
            raise ValueError("a C policy needs at least one layer")
        size = self.layers[0].sizes[0]
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, (Dense, GRU)):
                raise TypeError(f"layer {i} is a {type(layer).__name__}; C export supports Dense and GRU")
            if isinstance(layer, Dense) and layer.activation not in ACTIVATIONS:
                raise ValueError(
                    f"layer {i}: activation {layer.activation!r} has no C form; use one of {list(ACTIVATIONS)}"
                )
            if layer.sizes[0] != size:
                raise ValueError(f"layer {i} takes {layer.sizes[0]} inputs but the previous layer gives {size}")
            if isinstance(layer, GRU):
                h = layer.sizes[1]
                shapes = {
                    "recurrent_kernel": (h, 3 * h),
                    "input_bias": (3 * h,),
                    "recurrent_bias": (3 * h,),
                    "initial_state": (h,),
                    "input_kernel": (size, 3 * h),
                }
                for field, shape in shapes.items():
                    if np.shape(getattr(layer, field)) != shape:
                        raise ValueError(
                            f"GRU layer {i}: {field} has shape {np.shape(getattr(layer, field))}, expected {shape}"
                        )
            elif np.shape(layer.bias) != (layer.sizes[1],):
                raise ValueError(f"Dense layer {i}: bias shape {np.shape(layer.bias)} != ({layer.sizes[1]},)")
            size = layer.sizes[1]

    @property
    def obs_size(self) -> int:
        return self.layers[0].sizes[0]

    @property
    def action_size(self) -> int:
        return self.layers[-1].sizes[1]

    @property
    def num_parameters(self) -> int:
        return int(sum(v.size for layer in self.layers for v in layer.arrays().values()))

    def layer_names(self) -> list[str]:
        return [layer.name or f"layer{i}" for i, layer in enumerate(self.layers)]


def dense_layers(params: Mapping, names: Sequence[str], activations: Sequence[str]) -> list[Dense]:
    """`Dense` layers from flax Dense parameters `params[name] = {"kernel", "bias"}`, in order."""
    if len(names) != len(activations):
        raise ValueError(f"{len(names)} layer names but {len(activations)} activations")
    return [
        Dense(np.asarray(params[n]["kernel"]), np.asarray(params[n]["bias"]), a, name=n)
        for n, a in zip(names, activations)
    ]


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _c_float(v: float) -> str:
    """A C float literal; %.9g round-trips every float32 exactly (values are checked finite)."""
    text = f"{float(v):.9g}"
    if not any(c in text for c in ".e"):
        text += ".0"  # "0f" or "1f" would be an integer constant with an invalid suffix
    return text + "f"


def _c_values(flat: np.ndarray) -> str:
    return ",\n    ".join(", ".join(_c_float(v) for v in flat[i : i + 8]) for i in range(0, flat.size, 8))


def _c_array(name: str, values: np.ndarray) -> str:
    """A `static const float` C array of a 1-D or 2-D float32 array (nested braces for 2-D)."""
    values = np.asarray(values, np.float32)
    dims = "".join(f"[{d}]" for d in values.shape)
    if values.ndim == 1:
        body = _c_values(values)
    elif values.ndim == 2:
        body = ",\n    ".join("{" + _c_values(row) + "}" for row in values)
    else:
        raise ValueError(f"C export supports 1-D and 2-D arrays, {name} has shape {values.shape}")
    return f"static const float {name}{dims} = {{\n    {body}\n}};\n"


def _step_body(policy: CPolicy, name: str) -> tuple[str, list[str]]:
    """The C statements of one step, and the state struct's members."""
    lines, members, x = [], [], "obs"
    for k, (layer, lname) in enumerate(zip(policy.layers, policy.layer_names())):
        n_in, n_out = layer.sizes
        w = f"{name}_{lname}"
        y = "action" if k == len(policy.layers) - 1 else f"y{k}"
        if y != "action":
            lines.append(f"    float {y}[{n_out}];")
        if isinstance(layer, Dense):
            act = ACTIVATIONS[layer.activation].format(x="acc")
            lines += [
                f"    /* {lname}: {layer.activation}(W x + b), {n_in} -> {n_out} */",
                f"    for (j = 0; j < {n_out}; ++j) {{",
                f"        float acc = {w}_bias[j];",
                f"        for (i = 0; i < {n_in}; ++i) acc += {w}_kernel[j][i] * {x}[i];",
                f"        {y}[j] = {act};",
                "    }",
            ]
        else:
            h = f"state->{lname}"
            members.append(f"float {lname}[{n_out}];")
            lines += [
                f"    /* {lname}: GRU ({n_in} -> {n_out}), gates [r, z, n], input and recurrent biases on every gate */",
                "    {",
                f"        float gi[{3 * n_out}], gh[{3 * n_out}];",
                f"        for (j = 0; j < {3 * n_out}; ++j) {{",
                f"            float a = {w}_input_bias[j], b = {w}_recurrent_bias[j];",
                f"            for (i = 0; i < {n_in}; ++i) a += {w}_input_kernel[j][i] * {x}[i];",
                f"            for (i = 0; i < {n_out}; ++i) b += {w}_recurrent_kernel[j][i] * {h}[i];",
                "            gi[j] = a;",
                "            gh[j] = b;",
                "        }",
                f"        for (j = 0; j < {n_out}; ++j) {{",
                f"            float r = {name}_sigmoid(gi[j] + gh[j]);",
                f"            float z = {name}_sigmoid(gi[{n_out} + j] + gh[{n_out} + j]);",
                f"            float n = tanhf(gi[{2 * n_out} + j] + r * gh[{2 * n_out} + j]);",
                f"            {y}[j] = (1.0f - z) * n + z * {h}[j];",
                "        }",
                f"        for (j = 0; j < {n_out}; ++j) {h}[j] = {y}[j];",
                "    }",
            ]
        x = y
    if not members:
        members.append("char unused; /* a feed-forward policy has no state; C99 forbids empty structs */")
    return "\n".join(lines), members


def export_policy_c(
    policy: CPolicy,
    out_dir: str | os.PathLike,
    name: str,
    reference_obs: np.ndarray,
    reference_actions: np.ndarray,
    defines: Mapping[str, object] | None = None,
    header_notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write `<name>.h`, `<name>.c` and `<name>_selftest.c` into `out_dir`; returns their paths.

    Args:
      reference_obs, reference_actions: (T, obs) and (T, action) from the JAX policy, stepping
        from reset; the self-test replays them.
      defines: extra `#define <NAME>_<KEY> value` lines (e.g. HIDDEN_SIZE, CONTROL_HZ).
      header_notes: comment lines for the header (what the observation and action mean).
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"C export name {name!r} must be a C identifier (letters, digits, _)")
    obs = np.asarray(reference_obs, np.float32)
    actions = np.asarray(reference_actions, np.float32)
    if obs.ndim != 2 or obs.shape[0] < 1 or obs.shape[1] != policy.obs_size:
        raise ValueError(f"reference_obs must have shape (T >= 1, {policy.obs_size}), got {obs.shape}")
    if actions.shape != (obs.shape[0], policy.action_size):
        raise ValueError(f"reference_actions must have shape {(obs.shape[0], policy.action_size)}, got {actions.shape}")
    weights = [
        (f"{name}_{lname}_{k}", v)
        for layer, lname in zip(policy.layers, policy.layer_names())
        for k, v in layer.arrays().items()
    ]
    if not (
        np.all(np.isfinite(obs)) and np.all(np.isfinite(actions)) and all(np.all(np.isfinite(v)) for _, v in weights)
    ):
        raise ValueError("policy parameters or reference contain NaN/inf; refusing to export them")
    up = name.upper()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body, members = _step_body(policy, name)
    grus = [(lname, layer) for layer, lname in zip(policy.layers, policy.layer_names()) if isinstance(layer, GRU)]

    header = [
        f"/* {name}.h: {policy.description or 'policy'}",
        f" * {policy.num_parameters} parameters. Generated by robojax.export.c_export; do not edit. */",
        f"#ifndef {up}_H",
        f"#define {up}_H",
        "",
        f"#define {up}_OBS_SIZE {policy.obs_size}",
        *[f"#define {up}_{k} {v}" for k, v in (defines or {}).items()],
        f"#define {up}_ACTION_SIZE {policy.action_size}",
        f"#define {up}_NUM_PARAMETERS {policy.num_parameters}",
        f"#define {up}_REFERENCE_STEPS {obs.shape[0]}",
        "",
        *[f"/* {line} */" for line in header_notes],
        f"typedef struct {{ {' '.join(members)} }} {name}_state;",
        "",
        f"void {name}_reset({name}_state *state);",
        f"void {name}_step({name}_state *state, const float obs[{up}_OBS_SIZE], float action[{up}_ACTION_SIZE]);",
        "",
        "/* Weights; kernels are output-major: kernel[out][in]. */",
    ]
    header += [_c_array(k, v) for k, v in weights]
    header += [
        "/* Self-test: observations from reset and the JAX policy's actions (float32). */",
        _c_array(f"{name}_reference_obs", obs),
        _c_array(f"{name}_reference_action", actions),
        f"#endif /* {up}_H */",
        "",
    ]
    reset = (
        "\n".join(
            f"    for (i = 0; i < {layer.sizes[1]}; ++i) state->{lname}[i] = {name}_{lname}_initial_state[i];"
            for lname, layer in grus
        )
        or "    (void)state;"
    )
    sigmoid = f"static float {name}_sigmoid(float x) {{ return 1.0f / (1.0f + expf(-x)); }}\n" if grus else ""
    source = f"""/* {name}.c: policy inference; no allocation, only expf/tanhf from libm. */
#include <math.h>
#include "{name}.h"

{sigmoid}
void {name}_reset({name}_state *state) {{
{"    int i;" + chr(10) if grus else ""}{reset}
}}

void {name}_step({name}_state *state, const float obs[{up}_OBS_SIZE], float action[{up}_ACTION_SIZE]) {{
    int i, j;
{"    (void)state;" + chr(10) if not grus else ""}{body}
}}
"""
    selftest = f"""/* {name}_selftest.c: replay the reference sequence, then time the step.
 * Usage: selftest [timing_steps]   (prints max_abs_error=, ns_per_step= (wall) and
 * cpu_ns_per_step= (process CPU time); exit 1 on a mismatch above 1e-5) */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "{name}.h"

int main(int argc, char **argv) {{
    {name}_state state;
    float action[{up}_ACTION_SIZE], sink = 0.0f, max_err = 0.0f;
    long steps = argc > 1 ? atol(argv[1]) : 1000000L, t;
    int k, j;
    struct timespec t0, t1, c0, c1;
    double ns, cpu_ns;
    {name}_reset(&state);
    for (t = 0; t < {up}_REFERENCE_STEPS; ++t) {{
        {name}_step(&state, {name}_reference_obs[t], action);
        for (j = 0; j < {up}_ACTION_SIZE; ++j) {{
            float e = action[j] - {name}_reference_action[t][j];
            if (e < 0) e = -e;
            if (e > max_err) max_err = e;
        }}
    }}
    printf("max_abs_error=%.3e\\n", (double)max_err);
    {name}_reset(&state);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (t = 0; t < steps; ++t) {{
        k = (int)(t % {up}_REFERENCE_STEPS);
        {name}_step(&state, {name}_reference_obs[k], action);
        sink += action[0];
    }}
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    cpu_ns = (double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec);
    if (steps < 1) steps = 1;
    printf("timing_steps=%ld\\nns_per_step=%.1f\\ncpu_ns_per_step=%.1f\\nchecksum=%f\\n",
           steps, ns / (double)steps, cpu_ns / (double)steps, (double)sink);
    return max_err <= 1e-5f ? 0 : 1;
}}
"""
    paths = {"header": out / f"{name}.h", "source": out / f"{name}.c", "selftest": out / f"{name}_selftest.c"}
    for key, text in (("header", "\n".join(header)), ("source", source), ("selftest", selftest)):
        # write aside, then rename: a crash never leaves a half-written file under the real name
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{paths[key].name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, paths[key])
    return paths


def find_c_compiler() -> str | None:
    """The system C compiler ($CC, cc, gcc or clang), or None."""
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def compile_selftest(
    out_dir: str | os.PathLike,
    name: str = "policy",
    cc: str | None = None,
    flags: tuple[str, ...] = ("-O2", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"),
) -> Path:
    """Compile `<name>.c` + `<name>_selftest.c` in `out_dir`; returns the binary's path."""
    cc = cc or find_c_compiler()
    if cc is None:
        raise RuntimeError("no C compiler found; install gcc or clang, or set $CC")
    out = Path(out_dir)
    binary = out / f"{name}_selftest"
    cmd = [cc, *flags, str(out / f"{name}.c"), str(out / f"{name}_selftest.c"), "-lm", "-o", str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"C compile failed ({' '.join(cmd)}):\n{proc.stderr}")
    return binary


def run_sequence(
    out_dir: str | os.PathLike, name: str, obs: np.ndarray, action_size: int, cc: str | None = None
) -> np.ndarray:
    """Compile a driver that feeds `obs` [T, obs_size] through the exported `<name>` policy from a
    reset and prints every action; returns the C actions [T, action_size] (an independent parity
    check on observations the header does not contain)."""
    cc = cc or find_c_compiler()
    if cc is None:
        raise RuntimeError("no C compiler found; install gcc or clang, or set $CC")
    obs = np.asarray(obs, np.float32)
    out = Path(out_dir)
    rows = ",\n".join("{" + ", ".join(_c_float(v) for v in o) + "}" for o in obs)
    driver = out / f"{name}_sequence.c"
    driver.write_text(f"""#include <stdio.h>
#include "{name}.h"
static const float seq[{obs.shape[0]}][{obs.shape[1]}] = {{ {rows} }};
int main(void) {{
    {name}_state s; float a[{action_size}]; int t, j;
    {name}_reset(&s);
    for (t = 0; t < {obs.shape[0]}; ++t) {{
        {name}_step(&s, seq[t], a);
        for (j = 0; j < {action_size}; ++j) printf("%.9g ", (double)a[j]);
        printf("\\n");
    }}
    return 0;
}}
""")
    exe = out / f"{name}_sequence"
    cmd = [
        cc,
        "-O2",
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-pedantic",
        "-Werror",
        "-Wno-unused-variable",
        str(driver),
        str(out / f"{name}.c"),
        "-lm",
        "-o",
        str(exe),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"C compile failed ({' '.join(cmd)}):\n{proc.stderr}")
    printed = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    return np.loadtxt(printed, ndmin=2)


def run_selftest(binary: str | os.PathLike, timing_steps: int = 1_000_000) -> dict:
    """Run the self-test binary; returns {passed, max_abs_error, ns_per_step (wall),
    cpu_ns_per_step (process CPU time, less sensitive to a busy machine), timing_steps}."""
    proc = subprocess.run([str(binary), str(int(timing_steps))], capture_output=True, text=True)
    values = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    return {
        "passed": proc.returncode == 0,
        "max_abs_error": float(values["max_abs_error"]),
        "ns_per_step": float(values["ns_per_step"]),
        "cpu_ns_per_step": float(values["cpu_ns_per_step"]),
        "timing_steps": int(values["timing_steps"]),
    }
