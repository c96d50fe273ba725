"""C export of the RAPTOR student: compiles with the system C compiler and matches JAX to 1e-5."""

import jax
import numpy as np
import pytest

import robojax  # noqa: F401
from robojax.agents.raptor import networks as S
from robojax.agents.raptor.export import export_student_c
from robojax.export import c_export

CC = c_export.find_c_compiler()
pytestmark = pytest.mark.skipif(CC is None, reason="no system C compiler (cc/gcc/clang)")


def _random_params(seed):
    params = S.init_student(jax.random.PRNGKey(seed))
    # Non-trivial weights everywhere (including h0 and biases, which start at zero).
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), 32))
    return jax.tree.map(lambda x: x + 0.4 * jax.random.normal(next(keys), x.shape), params)


def test_c_student_matches_jax_over_a_sequence(tmp_path):
    params = _random_params(0)
    paths = export_student_c(params, tmp_path, name="raptor_student", reference_steps=50, seed=3)
    header = paths["header"].read_text()
    assert "static const float raptor_student_gru_recurrent_kernel[48][16]" in header
    assert "#define RAPTOR_STUDENT_NUM_PARAMETERS 2084" in header
    source = paths["source"].read_text()
    assert "malloc" not in source
    assert "void raptor_student_step(raptor_student_state *state, const float obs[RAPTOR_STUDENT_OBS_SIZE]" in header

    binary = c_export.compile_selftest(tmp_path, "raptor_student", cc=CC)
    result = c_export.run_selftest(binary, timing_steps=1000)
    assert result["passed"] and result["max_abs_error"] <= 1e-5

    # Independent check of the C outputs against the JAX student (not only the stored reference):
    # a driver that feeds a different observation sequence and prints every action.
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(9), (40, 22)), np.float32) * 2.0
    c_actions = c_export.run_sequence(tmp_path, "raptor_student", obs, 4, cc=CC)
    jax_actions, _ = S.student_sequence(params, obs)
    assert np.max(np.abs(np.asarray(jax_actions))) > 0.3  # outputs are not all saturated or zero
    np.testing.assert_allclose(c_actions, np.asarray(jax_actions), atol=1e-5)


def test_freshly_initialised_student_exports_and_compiles(tmp_path):
    # zero biases and h0 at init: integral values must still be float literals ("0.0f", not "0f")
    params = S.init_student(jax.random.PRNGKey(0))
    params = jax.tree.map(lambda x: x.at[..., 0].set(1.0) if x.ndim else x, params)
    export_student_c(params, tmp_path)
    result = c_export.run_selftest(c_export.compile_selftest(tmp_path, "raptor_student", cc=CC), timing_steps=10)
    assert result["passed"] and result["max_abs_error"] <= 1e-5 and result["cpu_ns_per_step"] > 0


def test_export_rejects_wrong_model_and_bad_name(tmp_path):
    with pytest.raises(ValueError, match="2084"):
        export_student_c(S.init_feedforward_student(jax.random.PRNGKey(0)), tmp_path)
    with pytest.raises(ValueError, match="C identifier"):
        export_student_c(S.init_student(jax.random.PRNGKey(0)), tmp_path, name="bad-name")
