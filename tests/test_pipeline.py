"""The Python API and ``aetherscan reconstruct``, with an engine that makes up a small scene."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

import aetherscan.pipeline as pipeline
from aetherscan.cli import main
from aetherscan.engines.base import EngineError, Observer, Photo
from aetherscan.masks import MaskError
from aetherscan.reconstruction import DroppedPhoto, PointCloud, Quality, Reconstruction, View


class MadeUpEngine:
    """Two cameras and a few points per photo; records what it was given."""

    name = "made-up"

    def __init__(self, quality: Quality | None = None):
        self.photos: list[Photo] = []
        self.quality = quality

    def reconstruct(self, photos, observer=None):
        observer = observer or Observer()
        self.photos = list(photos)
        if len(photos) < 2:
            raise EngineError("need at least 2 photos")
        views = []
        for i, photo in enumerate(photos):
            observer.progress("inference", (i + 1) / (len(photos) + 1), photo.name)
            with Image.open(photo.path) as image:
                width, height = image.size
            pose = np.eye(4)
            pose[0, 3] = i
            views.append(
                View(
                    name=photo.name,
                    width=width,
                    height=height,
                    K=np.array([[50.0, 0, width / 2], [0, 50.0, height / 2], [0, 0, 1]]),
                    cam_from_world=pose,
                    points=np.full((5, 3), i, np.float32),
                    colors=np.full((5, 3), 10 * i, np.uint8),
                    confidence=np.linspace(5, 1, 5).astype(np.float32),
                )
            )
            observer.points(
                PointCloud(
                    views[-1].points,
                    views[-1].colors,
                    views[-1].confidence,
                    np.full(5, i, np.int32),
                )
            )
        observer.progress("done", 1.0)
        result = Reconstruction(
            self.name, views, [DroppedPhoto("x.jpg", "made up")], {"total": 0.1}
        )
        if self.quality is not None:
            result.quality = self.quality
        if any(photo.mask_path is not None for photo in photos):
            result.masks = "given"
        return result


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, size in [("b.jpg", (40, 30)), ("a.PNG", (30, 40)), ("c.webp", (32, 32))]:
        Image.new("RGB", size, (200, 100, 50)).save(folder / name)
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".hidden.jpg").write_bytes(b"")
    (folder / "sub").mkdir()
    Image.new("RGB", (32, 32)).save(folder / "sub" / "d.jpg")
    return folder


def test_find_photos_expands_folders_sorted_and_keeps_files_in_order(photo_folder, tmp_path):
    extra = tmp_path / "z.jpg"
    Image.new("RGB", (20, 20)).save(extra)
    found = pipeline.find_photos([extra, photo_folder])
    assert [p.name for p in found] == ["z.jpg", "a.PNG", "b.jpg", "c.webp"]
    with pytest.raises(FileNotFoundError, match="missing"):
        pipeline.find_photos([tmp_path / "missing"])


def test_photos_with_the_same_file_name_get_distinct_names(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (20, 20)).save(tmp_path / folder / "img.jpg")
    photos = pipeline.photos_from_paths([tmp_path / "one", tmp_path / "two"])
    assert len({p.name for p in photos}) == 2


def test_reconstruct_api_with_an_engine_object(photo_folder):
    engine = MadeUpEngine()
    result = pipeline.reconstruct([photo_folder], engine)
    assert [p.name for p in engine.photos] == ["a.PNG", "b.jpg", "c.webp"]
    assert len(result.views) == 3
    with pytest.raises(TypeError, match="options"):
        pipeline.reconstruct([photo_folder], engine, image_size=224)


def test_reconstruct_api_builds_engines_by_name(photo_folder, monkeypatch):
    seen = {}

    def fake_create_engine(name, **options):
        seen.update(options, name=name)
        return MadeUpEngine()

    monkeypatch.setattr(pipeline, "create_engine", fake_create_engine)
    pipeline.reconstruct([photo_folder], "fast3r", image_size=224, min_confidence=2.0)
    assert seen == {"name": "fast3r", "image_size": 224, "min_confidence": 2.0}


@pytest.mark.parametrize("terminal", [True, False], ids=["bar-on-a-terminal", "lines-in-a-log"])
def test_cli_reconstruct_writes_ply_cameras_and_progress(
    photo_folder, tmp_path, monkeypatch, capsys, terminal
):
    seen = {}
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)

    def fake_create_engine(name, **options):
        seen.update(options, name=name)
        return MadeUpEngine()

    monkeypatch.setattr(pipeline, "create_engine", fake_create_engine)
    output, cameras = tmp_path / "out" / "scene.ply", tmp_path / "cameras.json"
    code = main(
        [
            "reconstruct",
            str(photo_folder),
            "-o",
            str(output),
            "--cameras",
            str(cameras),
            "--image-size",
            "384",
            "--max-points-per-view",
            "all",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert seen["name"] == "auto" and seen["image_size"] == 384
    assert seen["max_points_per_view"] == "all" and seen["device"] == "cpu"
    ply = PlyData.read(output)
    assert ply.text is False and ply.byte_order == "<"
    vertex = ply["vertex"]
    assert len(vertex) == 15
    np.testing.assert_array_equal(vertex["x"], np.repeat([0.0, 1.0, 2.0], 5))
    np.testing.assert_array_equal(vertex["green"], np.repeat([0, 10, 20], 5))
    document = json.loads(cameras.read_text())
    assert [c["name"] for c in document["cameras"]] == ["a.PNG", "b.jpg", "c.webp"]
    assert document["cameras"][0]["width"] == 30 and document["cameras"][0]["height"] == 40
    assert np.asarray(document["cameras"][2]["cam_from_world"])[0, 3] == 2
    err = capsys.readouterr().err
    assert "100%" in err and "3 cameras, 15 points" in err and "x.jpg: made up" in err
    assert ("\r" in err) == terminal  # tqdm redraws its line; the log only appends lines


@pytest.fixture
def mask_folder(tmp_path):
    """Masks for two of photo_folder's photos, named in two of the accepted ways."""
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.new("L", (30, 40), 255).save(folder / "a.png")  # the stem of a.PNG
    Image.new("L", (40, 30), 255).save(folder / "b.jpg.png")  # as COLMAP names them
    return folder


def test_cli_reconstruct_with_masks_gives_each_photo_its_own(
    photo_folder, mask_folder, tmp_path, monkeypatch, capsys
):
    engine = MadeUpEngine()
    monkeypatch.setattr(pipeline, "create_engine", lambda name, **options: engine)
    args = ["reconstruct", str(photo_folder), "-o", str(tmp_path / "s.ply")]
    assert main([*args, "--masks", str(mask_folder)]) == 0
    masks = {photo.name: photo.mask_path for photo in engine.photos}
    assert masks == {
        "a.PNG": mask_folder / "a.png",
        "b.jpg": mask_folder / "b.jpg.png",
        "c.webp": None,  # no mask: the whole photo
    }
    assert "masks: given" in capsys.readouterr().err
    assert main(args) == 0  # without --masks, no masks
    assert all(photo.mask_path is None for photo in engine.photos)
    assert "masks:" not in capsys.readouterr().err


def test_cli_reconstruct_refuses_a_mask_of_the_wrong_size_before_the_engine_runs(
    photo_folder, mask_folder, tmp_path, monkeypatch, capsys
):
    engine = MadeUpEngine()
    monkeypatch.setattr(pipeline, "create_engine", lambda name, **options: engine)
    Image.new("L", (41, 30), 255).save(mask_folder / "b.jpg.png")
    args = ["reconstruct", str(photo_folder), "--masks", str(mask_folder)]
    assert main([*args, "-o", str(tmp_path / "s.ply")]) == 2
    err = capsys.readouterr().err
    assert f"b.jpg: its mask {mask_folder / 'b.jpg.png'} is 41x30 pixels" in err
    assert "the photo is 40x30" in err and engine.photos == []
    assert main(["reconstruct", str(photo_folder), "--masks", str(tmp_path / "nowhere")]) == 2
    assert "the masks folder" in capsys.readouterr().err


def test_reconstruct_api_takes_a_folder_of_masks(photo_folder, mask_folder):
    engine = MadeUpEngine()
    result = pipeline.reconstruct([photo_folder], engine, masks=mask_folder)
    assert [photo.mask_path for photo in engine.photos] == [
        mask_folder / "a.png",
        mask_folder / "b.jpg.png",
        None,
    ]
    assert result.masks == "given"
    Image.new("L", (30, 40), 0).save(mask_folder / "a.png")
    with pytest.raises(MaskError, match=r"a\.PNG: its mask .* is black everywhere"):
        pipeline.reconstruct([photo_folder], engine, masks=mask_folder)


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (
            Quality("uncertain", ["only 2 of 3 photos were placed", "the cameras are close"]),
            "quality: UNCERTAIN, the result may be wrong:\n"
            "  - only 2 of 3 photos were placed\n"
            "  - the cameras are close\n",
        ),
        (None, "quality: UNCERTAIN, the result may be wrong:\n  - the engine did not check this"),
        (Quality("good"), "quality: good (the engine's checks passed)\n"),
    ],
    ids=["uncertain", "unchecked", "good"],
)
def test_cli_reconstruct_ends_with_the_engines_verdict(
    quality, expected, photo_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(pipeline, "create_engine", lambda name, **options: MadeUpEngine(quality))
    assert main(["reconstruct", str(photo_folder), "-o", str(tmp_path / "s.ply")]) == 0
    err = capsys.readouterr().err
    assert expected in err
    assert err.rstrip().splitlines()[-1].startswith(("  - ", "quality: good"))


def test_cli_reconstruct_reports_refusals(photo_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "create_engine", lambda name, **options: MadeUpEngine())
    single = tmp_path / "single"
    single.mkdir()
    Image.new("RGB", (20, 20)).save(single / "only.jpg")
    assert main(["reconstruct", str(single), "-o", str(tmp_path / "s.ply")]) == 1
    assert "need at least 2 photos" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "nothing"), "-o", str(tmp_path / "s.ply")]) == 2
    assert "no such photo or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["reconstruct", str(tmp_path / "empty")]) == 2
    assert "no photos found" in capsys.readouterr().err


def test_progress_log_prints_a_line_per_stage_and_throttles_within_one(capsys, monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 7.5, 8.0, 8.1])
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: next(clock))
    log = pipeline._ProgressLog(interval_s=5.0)
    log.progress("load", 0.0, "decoding 3 photos")  # t=0: new stage
    log.progress("load", 0.05, "decoded 1 of 3")  # t=1: throttled
    log.progress("load", 0.08, "decoded 2 of 3")  # t=2: throttled
    log.progress("load", 0.1, "decoded 3 of 3")  # t=7.5: interval passed
    log.progress("features", 0.2)  # t=8: new stage
    log.progress("done", 1.0, "3 photos placed")  # t=8.1: new stage
    assert capsys.readouterr().err.splitlines() == [
        "     load   0%  decoding 3 photos",
        "     load  10%  decoded 3 of 3",
        " features  20%",
        "     done 100%  3 photos placed",
    ]
