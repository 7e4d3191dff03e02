"""Ground truth for the Sceaux castle photos (openMVG sample): intrinsics only, from
``images/K.txt``, the same K for all 11 photos. ``aetherscan evaluate`` then reports the focal
error, the time and the number of points (no pose scores: the set has no true poses).

    python benchmarks/sceaux_castle_to_json.py [--data DIR] [-o sceaux_castle_gt.json]

DIR defaults to ``$AETHERSCAN_SHARED/data/sceaux_castle`` (else ``../shared/data/sceaux_castle``).
The photos stay there: they may not be committed.
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
    return shared / "data" / "sceaux_castle"


def convert(data_dir: Path) -> dict:
    images = data_dir / "images"
    K = np.loadtxt(images / "K.txt").reshape(3, 3)
    cameras = []
    for path in sorted(images.glob("*.JPG")):
        with Image.open(path) as image:
            width, height = image.size
        cameras.append({"name": path.name, "width": width, "height": height, "K": K.tolist()})
    return {"source": "openMVG Sceaux castle sample, intrinsics only", "cameras": cameras}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("-o", "--output", type=Path, default=Path("sceaux_castle_gt.json"))
    args = parser.parse_args()
    truth = convert(args.data)
    args.output.write_text(json.dumps(truth, indent=1))
    print(f"wrote {len(truth['cameras'])} cameras to {args.output}")


if __name__ == "__main__":
    main()
