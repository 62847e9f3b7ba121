"""The repository's set-up: pins agree, CI runs the README's test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-]+)==([^\s#]+)", text, flags=re.M))


def test_environment_yml_names_the_same_pins_as_requirements():
    req = _pins((ROOT / "requirements.txt").read_text())
    env = _pins((ROOT / "environment.yml").read_text())
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"
    assert req["jupyter-book"] == "1.0.4.post1"
    assert req == env


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    assert [l for l in ci.splitlines() if l.strip() and not l.startswith("#") and "set -" not in l
            and not l.startswith("cd ")] == ["make test"]


def test_checkpoints_and_build_are_ignored():
    ignored = (ROOT / ".gitignore").read_text()
    for pattern in (".venv/", "_build/", "runs/**/*.pt"):
        assert pattern in ignored
