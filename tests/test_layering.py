"""Static check of the import layering (DESIGN.md): experiments -> envs -> robojax, one way.

Walks the AST of every .py under robojax/ (every import anywhere in a file, inside functions too):
  (a) robojax never imports `envs`, `experiments` or `benchmarks`;
  (b) a learner `robojax/agents/<x>` imports no other learner `robojax.agents.<y>`, except
      RAPTOR using SAC for its teachers;
  (c) no robojax module imports `absl.flags` or `absl.app` (flags live in experiments/);
  (d) nothing in robojax outside `robojax/agents/` imports a learner: inside robojax the direction
      is `agents -> (nets, data, diffusion, envs, evaluation, runs, export, ...)`.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "robojax"
ABOVE_ROBOJAX = ("envs", "experiments", "benchmarks")
ALLOWED_LEARNER_IMPORTS = {("raptor", "sac")}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file; `from a import b` also yields `a.b`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return out


def _learner(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["robojax", "agents"] else None


def violations() -> list[str]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        own = _learner(_module_name(path))
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in ABOVE_ROBOJAX:
                found.add(f"{where}:{line}: imports {top!r} (robojax sits below envs/experiments/benchmarks)")
            other = _learner(module)
            if own and other and other != own and (own, other) not in ALLOWED_LEARNER_IMPORTS:
                found.add(f"{where}:{line}: learner {own!r} imports learner {other!r}")
            if other and not where.startswith("robojax/agents/"):
                found.add(
                    f"{where}:{line}: imports learner {other!r}; only learners may (inside robojax agents sit on top)"
                )
            if module in ("absl.flags", "absl.app") or module.startswith(("absl.flags.", "absl.app.")):
                found.add(f"{where}:{line}: imports {module} (absl flags live only in experiments/)")
    return sorted(found, key=lambda v: (v.split(":")[0], int(v.split(":")[1])))


def test_checker_sees_imports_inside_functions_and_relative_imports(tmp_path):
    pkg = tmp_path / "robojax" / "agents" / "sac"
    pkg.mkdir(parents=True)
    src = pkg / "mod.py"
    src.write_text(
        "def f():\n    import envs.quadrotor\n    from ..raptor import distill\n    from absl import flags\n"
    )
    global ROOT
    old = ROOT
    try:
        ROOT = tmp_path
        mods = [m for _, m in imported_modules(src)]
    finally:
        ROOT = old
    assert "envs.quadrotor" in mods and "robojax.agents.raptor.distill" in mods and "absl.flags" in mods


def test_robojax_layering():
    found = violations()
    assert not found, "import layering violations:\n" + "\n".join(found)


if __name__ == "__main__":
    print("\n".join(violations()) or "no violations")
