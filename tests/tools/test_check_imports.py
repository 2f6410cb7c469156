"""tools/check_imports.py: the package's layering holds, and each rule catches its breach."""
import os
import subprocess
import sys

from mt_testing import REPO

SCRIPT = os.path.join(REPO, "tools", "check_imports.py")


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def test_multitrain_layering_holds():
    r = _run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "layering holds, no cycle" in r.stdout


def _package(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root / "multitrain")


def test_each_breach_is_reported(tmp_path):
    pkg = _package(tmp_path, {
        "multitrain/__init__.py": "",
        "multitrain/engine/__init__.py": "",
        "multitrain/engine/trainer.py": "X = 1\n",
        "multitrain/data/__init__.py": "",
        "multitrain/data/loader.py": "def f():\n    from ..engine.trainer import X\n",
        "multitrain/models/__init__.py": "",
        "multitrain/models/mvit.py": "import multitrain.engine.trainer\n",
        "multitrain/config/__init__.py": "",
        "multitrain/config/loader.py": "from .validate import check\nfrom ..data import loader\n",
        "multitrain/config/validate.py": "def check():\n    from multitrain.config.loader import Y\n",
        "multitrain/preparation/__init__.py": "",
        "multitrain/preparation/synthetic.py": "from ..data import loader\n",
        "multitrain/data/sampling.py": "from multitrain.preparation import synthetic\n",
        "multitrain/transforms/__init__.py": "",
        "multitrain/transforms/recipe.py": "from ..data.loader import f\n",
        "multitrain/decoding/__init__.py": "",
        "multitrain/decoding/decoder.py": "from ..preparation.synthetic import Z\n",
    })
    r = _run("--package", pkg)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 7, lines
    assert any("multitrain.data.sampling imports multitrain.preparation.synthetic "
               "(multitrain.data must not depend on multitrain.preparation)" in ln for ln in lines)
    assert any("multitrain.transforms.recipe imports multitrain.data.loader" in ln for ln in lines)
    assert any("multitrain.decoding.decoder imports multitrain.preparation.synthetic" in ln
               for ln in lines)
    assert any("multitrain.data.loader imports multitrain.engine.trainer" in ln for ln in lines)
    assert any("multitrain.models.mvit imports multitrain.engine.trainer" in ln for ln in lines)
    assert any("multitrain.config.loader imports multitrain.data.loader" in ln for ln in lines)
    assert "import cycle: multitrain.config.loader <-> multitrain.config.validate" in lines


def test_clean_package_passes(tmp_path):
    pkg = _package(tmp_path, {
        "multitrain/__init__.py": "",
        "multitrain/config/__init__.py": "from .loader import load\n",
        "multitrain/config/loader.py": "import os\nload = os.path.join\n",
        "multitrain/engine/__init__.py": "from ..config import load\nfrom ..data import x\n",
        "multitrain/data/__init__.py": "from ..transforms import t\nfrom ..decoding import d\nx = 1\n",
        "multitrain/transforms/__init__.py": "t = 1\n",
        "multitrain/decoding/__init__.py": "d = 1\n",
        "multitrain/preparation/__init__.py": "from ..data import x\nfrom ..decoding import d\n",
    })
    assert _run("--package", pkg).returncode == 0
