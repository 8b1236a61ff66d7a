"""Every component README is generated from its component.py docstrings and is current."""

from __future__ import annotations

import pytest

from components import readme


@pytest.mark.parametrize("step", readme.steps())
def test_readme_is_generated_from_the_docstrings(step):
    path = readme.ROOT / step / "README.md"
    # Stale: run `python -m components.readme`.
    assert path.read_text(encoding="utf-8") == readme.render_readme(step)


def test_every_input_and_output_has_a_meaning():
    for step in readme.steps():
        _, components = readme.components_of(step)
        assert components, step
        for component in components:
            _, args, returns = readme._split_docstring(component.python_func.__doc__)
            spec = component.component_spec
            named = set(spec.inputs or {}) | (set(spec.outputs or {}) - {"Output"})
            assert named <= set(args), (step, component.name, sorted(named - set(args)))
            assert "Output" not in (spec.outputs or {}) or returns, (step, component.name)


def test_check_mode_names_a_stale_readme(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(readme, "ROOT", tmp_path / "components")
    (tmp_path / "components" / "train").mkdir(parents=True)
    (tmp_path / "components" / "train" / "component.py").write_text("")
    (tmp_path / "components" / "train" / "README.md").write_text("# hand-edited\n")
    assert readme.main(["--check"]) == 1
    assert "components/train/README.md: stale" in capsys.readouterr().err
    assert (tmp_path / "components" / "train" / "README.md").read_text() == "# hand-edited\n"
    assert readme.main([]) == 0 and readme.main(["--check"]) == 0
    assert (tmp_path / "components" / "train" / "README.md").read_text() == readme.render_readme("train")
