import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aetherscan.cli import main
from aetherscan.evaluation import TrueCamera, evaluate_reconstruction, load_ground_truth
from aetherscan.reconstruction import Reconstruction, View

REPO = Path(__file__).resolve().parents[1]


def _camera(k: int) -> TrueCamera:
    angle = np.radians(30 * k)
    R = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R, [0.1 * k, 0.0, 4.0]
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    return TrueCamera(f"img_{k}.jpg", K, pose, 640, 480)


def _view(camera: TrueCamera, *, scale: float = 1.0, focal_px: float = 500.0) -> View:
    pose = camera.cam_from_world.copy()
    pose[:3, 3] *= scale  # the same cameras in a world of another scale
    return View(
        name=camera.name,
        width=640,
        height=480,
        K=np.array([[focal_px, 0, 320], [0, focal_px, 240], [0, 0, 1]]),
        cam_from_world=pose,
        points=np.zeros((0, 3), np.float32),
        colors=np.zeros((0, 3), np.uint8),
        confidence=np.zeros((0,), np.float32),
    )


def test_a_perfect_reconstruction_scores_full_marks_and_a_missing_photo_fails():
    truth = [_camera(k) for k in range(5)]
    perfect = Reconstruction("test", [_view(c, scale=2.5) for c in truth])
    scores = evaluate_reconstruction(perfect, truth)
    assert scores["registered"] == 5
    assert scores["rra_5"] == scores["rta_5"] == scores["auc_30"] == 1.0
    assert scores["focal_error_median_pct"] == pytest.approx(0.0)

    partial = Reconstruction("test", [_view(c, focal_px=550) for c in truth[:4]])
    scores = evaluate_reconstruction(partial, truth)
    assert scores["registered"] == 4
    assert scores["rra_5"] == pytest.approx(6 / 10)
    assert scores["focal_error_median_pct"] == pytest.approx(10.0)
    assert scores["focal_acc_5pct"] == 0.0

    failed = evaluate_reconstruction(None, truth)
    assert failed["registered"] == 0 and failed["rra_15"] == 0.0 and failed["auc_30"] == 0.0


def test_ground_truth_files_are_checked(tmp_path):
    path = tmp_path / "gt.json"
    good = {"name": "a.jpg", "K": np.eye(3).tolist(), "R": np.eye(3).tolist(), "t": [0, 0, 1]}
    path.write_text(json.dumps({"cameras": [good, {**good, "name": "b.jpg", "R": None}]}))
    with pytest.raises((ValueError, TypeError)):
        load_ground_truth(path)
    path.write_text(json.dumps({"cameras": [good, {**good, "R": (2 * np.eye(3)).tolist()}]}))
    with pytest.raises(ValueError, match="rotation"):
        load_ground_truth(path)
    path.write_text(json.dumps({"cameras": [good, {"name": "b.jpg", "K": np.eye(3).tolist()}]}))
    truth = load_ground_truth(path)
    assert truth[1].cam_from_world is None  # intrinsics only is allowed
    path.write_text(json.dumps({"cameras": [good, good]}))
    with pytest.raises(ValueError, match="repeat"):
        load_ground_truth(path)


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_evaluate_command_runs_the_colmap_engine(tmp_path, capsys):
    gt = _load_script("synthetic_scene").write_scene(tmp_path, 6, 320, 240, arc_deg=60)
    images = tmp_path / "images"
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(images), str(gt), "--engine", "colmap", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["engine"] == "colmap" and scores["registered"] == 6
    assert scores["rra_5"] == 1.0 and scores["auc_30"] > 0.9
    assert "rra_5" in capsys.readouterr().out


def test_temple_ring_converter_reads_the_middlebury_cameras(tmp_path):
    """A templeSR_par.txt written here from known cameras (the real one may not be committed;
    benchmarks read it from the shared folder): the converter keeps every camera exactly."""
    rng = np.random.default_rng(3)
    K = np.array([[1520.4, 0.0, 302.3], [0.0, 1525.9, 246.9], [0.0, 0.0, 1.0]])
    lines, poses = ["3"], []
    for k in range(3):
        angle = np.radians(40 * k)
        R = np.array(
            [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        )
        t = rng.normal(size=3)
        name = f"templeSR{k + 1:04d}.png"
        Image.new("RGB", (640, 480)).save(tmp_path / name)
        lines.append(" ".join([name, *(f"{v:.17g}" for v in [*K.ravel(), *R.ravel(), *t])]))
        poses.append((R, t))
    (tmp_path / "templeSR_par.txt").write_text("\n".join(lines) + "\n")
    truth_json = _load_script("temple_ring_to_json").convert(tmp_path)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(truth_json))
    truth = load_ground_truth(path)
    assert [c.name for c in truth] == ["templeSR0001.png", "templeSR0002.png", "templeSR0003.png"]
    for camera, (R, t) in zip(truth, poses, strict=True):
        assert (camera.width, camera.height) == (640, 480)
        np.testing.assert_allclose(camera.K, K)
        np.testing.assert_allclose(camera.cam_from_world[:3, :3], R)
        np.testing.assert_allclose(camera.cam_from_world[:3, 3], t)
