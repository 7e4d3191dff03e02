"""The Khronos glTF validator (npm ``gltf-validator``, in web/node_modules after ``make
install``) run on GLB files through Node.js and ``validate_gltf.mjs``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE = shutil.which("node")
GLTF_VALIDATOR = Path(__file__).parents[2] / "web" / "node_modules" / "gltf-validator"
_VALIDATE_SCRIPT = Path(__file__).with_name("validate_gltf.mjs")


def validate_gltf(paths: list[Path]) -> list[dict]:
    """The Khronos validator's report on each GLB file; fails the test on any error."""
    assert NODE is not None, "validate_gltf needs Node.js"
    if not (GLTF_VALIDATOR / "package.json").is_file():
        pytest.fail(f"the glTF validator is not installed in {GLTF_VALIDATOR}: run make install")
    result = subprocess.run(
        [NODE, str(_VALIDATE_SCRIPT), str(GLTF_VALIDATOR), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(paths), result.stderr
    failures = [report for report in reports if report["errors"]]
    assert not failures, "glTF validator: " + json.dumps(failures, indent=1)
    assert result.returncode == 0, result.stderr
    return reports
