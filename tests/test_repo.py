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


def test_a_result_written_by_the_study_does_not_make_the_code_dirty(tmp_path):
    """git_commit() says '+dirty' for changed code only: the study rewrites runs/ as it goes."""
    import subprocess
    from vgg.io import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "metrics.json").write_text("{}")
    (tmp_path / "model.py").write_text("A = 1\n")
    git("init", "-q"); git("add", "."); git("commit", "-qm", "init")
    clean = git_commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "runs" / "metrics.json").write_text('{"top1_err": 20}')
    assert git_commit(tmp_path) == clean
    (tmp_path / "model.py").write_text("A = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"
