"""The README's Python block runs as written (from a folder beside ../shared, as the README assumes), so it
cannot drift from the API again."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def readme_block(heading: str, language: str = "python") -> str:
    """The first ```language fence under a `## heading` of README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found, f"no {language} block under '## {heading}'"
    return found.group(1)


def test_the_python_block_exists_and_is_self_contained():
    code = readme_block("Python API")
    compile(code, "README.md", "exec")
    assert "import headtune" in code and "$" not in code  # no shell variables: it runs as written


@pytest.mark.slow
def test_the_python_block_runs_as_written(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")  # ../shared from the working folder, as in a clone
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HEADTUNE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", readme_block("Python API")], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = [p for p in work.rglob("model.safetensors")]
    assert outputs, "the block trained no model"
    assert done.stdout.strip(), "the block printed nothing"
