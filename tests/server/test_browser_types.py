"""web/js/protocol.js is what protocol.py generates, and its frame decoder agrees with Python's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aetherscan.server import browser_types
from aetherscan.server.protocol import encode_point_frame

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / browser_types.OUTPUT


def test_the_committed_browser_types_match_the_models():
    assert GENERATED.read_text() == browser_types.generate(), (
        "web/js/protocol.js is stale: run "
        "`PYTHONPATH=src python -m aetherscan.server.browser_types > web/js/protocol.js`"
    )


def test_every_message_has_a_typedef():
    text = GENERATED.read_text()
    for name in ("ImageData", "UploadComplete", "Points", "ReconstructionComplete", "Welcome",
                 "Cameras", "JobStatus", "ClientMessage", "ServerMessage"):  # fmt: skip
        assert f"@typedef {{object}} {name}" in text or f"}} {name}\n" in text, name


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_decoder_reads_python_frames(tmp_path):
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(300, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    confidence = rng.uniform(1, 9, 300).astype(np.float32)
    frames = encode_point_frame(xyz, rgb, confidence, 4) + encode_point_frame(
        xyz[:7], rgb[:7], confidence[:7], 5
    )
    (tmp_path / "frames.bin").write_bytes(frames)
    shutil.copy(GENERATED, tmp_path / "protocol.mjs")
    (tmp_path / "check.mjs").write_text(
        """
import { readFileSync } from "node:fs";
import { decodePointFrame, unpackRgb565, countAtLeast } from "./protocol.mjs";
const bytes = readFileSync(new URL("./frames.bin", import.meta.url));
const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
const out = [];
for (let offset = 0; offset < buffer.byteLength;) {
  const f = decodePointFrame(buffer, offset);
  const xyz = [];
  for (let i = 0; i < f.count; i++)
    for (let a = 0; a < 3; a++) xyz.push(f.origin[a] + f.positions[3 * i + a] * f.step[a]);
  out.push({ view: f.viewIndex, count: f.count, xyz, rgb: Array.from(unpackRgb565(f.colors)),
             atLeast5: countAtLeast(f, 5), table: Array.from(f.confidenceTable) });
  offset += f.byteLength;
}
console.log(JSON.stringify(out));
"""
    )
    result = subprocess.run(
        ["node", str(tmp_path / "check.mjs")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    first, second = json.loads(result.stdout)
    assert (first["view"], first["count"], second["view"], second["count"]) == (4, 300, 5, 7)

    from aetherscan.server.protocol import decode_point_frame, split_frames

    python = decode_point_frame(split_frames(frames)[0])
    np.testing.assert_allclose(np.reshape(first["xyz"], (-1, 3)), python.xyz, rtol=0, atol=1e-5)
    assert np.reshape(first["rgb"], (-1, 3)).tolist() == python.rgb.tolist()
    # countAtLeast is within one table step of the true count.
    true_count = int((confidence >= 5).sum())
    assert true_count <= first["atLeast5"] <= true_count + 300 // 64 + 1
