"""tools/mutation_check.py: the planted bugs of its table are all caught by the suite."""
import importlib.util
import os
import subprocess
import sys

import pytest

from mt_testing import REPO

TOOL = os.path.join(REPO, "tools", "mutation_check.py")


def _tool():
    spec = importlib.util.spec_from_file_location("mutation_check", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_snippet_of_the_table_is_found_once(tmp_path):
    """A snippet the code no longer contains exactly once is an ERROR, not a silent pass."""
    tool = _tool()
    root = tool.scratch_copy(str(tmp_path), "copy")
    for m in tool.MUTANTS:
        assert tool.apply_mutant(root, m) == "", m.name
    missing = tool.Mutant("moved", tool.MUTANTS[0].path, [("no such code", "x")], [])
    assert "found 0 times" in tool.apply_mutant(root, missing)
    assert len(tool.MUTANTS) >= 20 and len({m.name for m in tool.MUTANTS}) == len(tool.MUTANTS)


@pytest.mark.slow
def test_every_mutant_is_killed():
    r = subprocess.run([sys.executable, TOOL], cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "SURVIVED" not in r.stdout and "ERROR" not in r.stdout
