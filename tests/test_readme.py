"""The README's commands run as written, top to bottom, in a scratch copy of the clone.

Every ```bash block of README.md is joined into one script (``set -euo pipefail``) and run from a
folder that links the clone's files, beside a ``shared/data`` that links the test data, so
``../shared/data`` resolves as it does for the clone. Lines that install (``make ...``,
``pip ...``, activating the venv) are left out: ``make test`` itself ran them. Long commands get
smaller settings appended (argparse keeps the last value), so the whole README runs in a few
minutes. Every ```python block runs too, in the same folder, after the shell blocks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: Extra arguments per subcommand: fewer epochs / rounds / graphs than the README's real runs.
SMALL = {
    "cf train": "--epochs 1",
    "ctr train": "--epochs 1",
    "mtl train": "--epochs 1",
    "fl run": "--rounds 2 --clients-per-round 5 --devices 30",
    "fl ode": "--rounds 4",
    "fastcover train": "--max-epochs 1 --graphs fastcover/directed/soc-sign-bitcoinotc.txt.gz "
    "--val-graphs fastcover/undirected/soc-hamsterster.txt --ks 1 8",
}
SKIP = re.compile(r"^\s*(make\b|pip\b|\. \.venv/|source \.venv/)")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _script() -> str:
    cases = "\n".join(f'    "{k}") extra=({v});;' for k, v in SMALL.items())
    wrapper = (
        'graphrec() {\n  local extra=()\n  case "${1-} ${2-}" in\n'
        f"{cases}\n  esac\n"
        '  echo "+ graphrec $* ${extra[*]}" >&2\n  local t=$SECONDS\n'
        '  command graphrec "$@" "${extra[@]}"\n  echo "  ($((SECONDS - t)) s)" >&2\n}\n'
    )
    body = [
        line for block in _blocks("bash") for line in block.splitlines() if not SKIP.match(line)
    ]
    return "set -euo pipefail\n" + wrapper + "\n".join(body) + "\n"


@pytest.fixture
def clone(tmp_path: Path, shared_data: Path) -> Path:
    """A folder that looks like a fresh clone (links to the repository's files) with
    ``../shared/data`` beside it."""
    root = tmp_path / "graphrec-clone"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in (".git", ".venv", "runs") and not entry.name.startswith("."):
            (root / entry.name).symlink_to(entry)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GRAPHREC_DATA"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "2"
    return env


def test_readme_has_the_commands_a_newcomer_needs():
    script = _script()
    assert "graphrec fastcover train" in script and "graphrec export" in script
    assert "](../" not in README.read_text(), "README links outside the repository"
    for path in re.findall(r"\]\(([^)#:]+)\)", README.read_text()):
        assert (REPO / path).exists(), f"README links to {path}, which is not in the repository"


def test_readme_shell_blocks_run_top_to_bottom(clone: Path):
    proc = subprocess.run(
        ["bash", "-c", _script()], cwd=clone, env=_env(), capture_output=True, text=True,
        timeout=1500, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    log = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, log
    assert "Traceback" not in proc.stderr, log
    made = {p.name for p in clone.iterdir() if not p.is_symlink()}
    assert {"seeds.txt", "lg.pt", "runs", "fl-ml.json", "my-weights"} <= made, made


def test_readme_python_blocks_run(clone: Path):
    for block in _blocks("python"):
        proc = subprocess.run(
            [sys.executable, "-c", block], cwd=clone, env=_env(), capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, (block, proc.stderr[-3000:])
