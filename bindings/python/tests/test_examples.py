"""Every Python example runs: examples/python/*.py and the README snippets; mypy --strict
checks the package, the examples and these tests; the async client is current."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from conftest import unique

ROOT = Path(__file__).resolve().parents[3]
PY = ROOT / "bindings" / "python"


def python_blocks(markdown: Path, heading: str | None = None) -> list[str]:
    text = markdown.read_text()
    if heading is not None:
        start = text.index(heading)
        text = text[start:]
        end = re.search(r"\n#{2,3} ", text[len(heading):])
        text = text[: len(heading) + end.start()] if end else text
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_snippet(code: str) -> str:
    code = code.replace('"hello-py"', repr(unique("hello-py")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_example_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / "hello.py"), unique("hello-py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "hello from LibGo" in out.stdout


def test_readme_snippets_run() -> None:
    blocks = python_blocks(PY / "README.md") + python_blocks(ROOT / "README.md", "### Python")
    assert len(blocks) >= 2
    for code in blocks:
        assert "hello from LibGo" in run_snippet(code)


def test_mypy_strict_passes() -> None:
    targets = [str(PY / "python" / "libgo"), str(ROOT / "examples" / "python"), str(PY / "tests")]
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *targets],
        capture_output=True,
        text=True,
        cwd=PY / "tests",
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_async_client_is_generated_from_the_sync_one() -> None:
    spec = importlib.util.spec_from_file_location("gen_async", PY / "gen_async.py")
    assert spec is not None and spec.loader is not None
    gen_async = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_async)
    src = (PY / "python" / "libgo" / "_sync.py").read_text()
    current = (PY / "python" / "libgo" / "_async.py").read_text()
    assert gen_async.generate(src) == current, "run python bindings/python/gen_async.py"
