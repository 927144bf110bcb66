"""The house plan (docs/DESIGN.md, "Layers"), checked as part of the test command: import-linter's
layers contract in pyproject.toml holds (every import goes down), imports sit at module top
except those of the heavy optional dependencies, and no file cites documents outside the
repository."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

#: packages imported inside functions, on first use: optional, or slow to import and needed by few commands
HEAVY_OPTIONAL = {"transformers", "torchvision", "deepspeed", "rtmlib", "onnxruntime", "cv2", "PIL", "matplotlib",
                  "fastapi", "uvicorn"}  # fastapi, uvicorn: the serve extra (signfuse serve only)
#: the in-function imports that are not about weight: their place is their function's work
DELIBERATE = {("signfuse/training/distributed.py", "torch.distributed.fsdp"),  # imported before the group exists
              ("signfuse/training/session.py", "torch.utils.tensorboard")}  # TensorBoard: rank 0 only


def test_imports_only_go_down():
    lint = Path(sys.executable).parent / "lint-imports"  # installed with the test extras, next to the interpreter
    assert lint.is_file(), f"{lint}: not installed (pip install -e '.[test]' installs import-linter)"
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"lint-imports:\n{result.stdout}{result.stderr}", pytrace=False)
    assert "signfuse imports only downward KEPT" in result.stdout


def in_function_imports(path: Path) -> list:
    """(module, line) of every import statement of ``path`` that is not at module top."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and id(node) not in top:
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and id(node) not in top:
            found.append(("." * node.level + (node.module or ""), node.lineno))
    return found


def test_imports_are_at_module_top():
    late = [f"{path.relative_to(REPO)}:{line}: {module}"
            for path in sorted((REPO / "signfuse").rglob("*.py"))
            for module, line in in_function_imports(path)
            if module.split(".")[0] not in HEAVY_OPTIONAL
            and (str(path.relative_to(REPO)), module) not in DELIBERATE]
    assert not late, "imports inside functions (move them to the module top):\n" + "\n".join(late)


def test_in_function_imports_are_seen(tmp_path):
    """The check above does see an import inside a function (and one at the top is none)."""
    path = tmp_path / "probe.py"
    path.write_text("import os\n\ndef f():\n    import json\n    from signfuse import config\n", encoding="utf-8")
    assert in_function_imports(path) == [("json", 4), ("signfuse", 5)]


def tracked_files() -> list:
    """The files git tracks; outside a git checkout (an unpacked archive), every file but the
    hidden folders and caches."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode == 0:
        return [REPO / name for name in listed.stdout.decode().split("\0") if name]
    return [path for path in REPO.rglob("*")
            if not any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(REPO).parts)]


def test_no_file_cites_documents_outside_the_repository():
    """Facts live in docs/ (docs/unisign-compat.md, docs/descriptions.md, docs/rgb-pose.md,
    docs/video-readers.md), never in a sibling folder that a clone does not have."""
    citing = []
    for path in tracked_files():
        if not path.is_file() or path == Path(__file__):
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        citing += [f"{path.relative_to(REPO)}: {needle}" for needle in ("../shared", "shared/spec") if needle in text]
    assert not citing, "\n".join(citing)
