"""The README's library example runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_the_library_example_runs_and_undoes(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    archived = re.search(r"archived (\d+), failed 0, verified True", result.stdout)
    restored = re.search(r"restored (\d+)", result.stdout)
    assert archived, result.stdout
    assert restored, result.stdout
    assert int(archived.group(1)) > 0
    assert restored.group(1) == archived.group(1)
    assert (tmp_path / "archive.jsonl").exists()
