"""Convert Middlebury templeSparseRing cameras (``templeSR_par.txt``) to AetherScan's ground-truth
JSON (docs/evaluation.md).

    python benchmarks/temple_ring_to_json.py [--data DIR] [-o temple_ring_gt.json]

DIR defaults to ``$AETHERSCAN_SHARED/data/temple_ring`` (else ``../shared/data/temple_ring`` beside
the repository). The data set stays there: its licence does not allow committing it.

Each line of the file is ``name k11..k33 r11..r33 t1 t2 t3`` with ``x ~ K [R | t] X``: R, t map
world to camera in OpenCV axes, which is the JSON format's convention as well, so the numbers are
copied unchanged (Middlebury does not state its pixel-centre convention; the half pixel that may
separate it from ours does not move any pose score).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    shared = Path(os.environ.get("AETHERSCAN_SHARED", REPO.parent / "shared"))
    return shared / "data" / "temple_ring"


def convert(data_dir: Path) -> dict:
    lines = (data_dir / "templeSR_par.txt").read_text().split("\n")
    count = int(lines[0])
    cameras = []
    for line in lines[1 : count + 1]:
        name, *numbers = line.split()
        values = np.array([float(v) for v in numbers])
        if len(values) != 21:
            raise ValueError(f"{name}: expected 21 numbers, got {len(values)}")
        K, R, t = values[:9].reshape(3, 3), values[9:18].reshape(3, 3), values[18:]
        with Image.open(data_dir / name) as image:
            width, height = image.size
        cameras.append(
            {
                "name": name,
                "width": width,
                "height": height,
                "K": K.tolist(),
                "R": R.tolist(),
                "t": t.tolist(),
            }
        )
    return {"source": "Middlebury templeSparseRing (Seitz et al., CVPR 2006)", "cameras": cameras}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("-o", "--output", type=Path, default=Path("temple_ring_gt.json"))
    args = parser.parse_args()
    truth = convert(args.data)
    args.output.write_text(json.dumps(truth, indent=1))
    print(f"wrote {len(truth['cameras'])} cameras to {args.output}")


if __name__ == "__main__":
    main()
