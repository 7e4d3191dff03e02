import cv2
import numpy as np
import pycolmap
import pytest
from PIL import Image

from aetherscan.engines.colmap import ColmapEngine
from aetherscan.export import export
from aetherscan.export.colmap_model import rotation_to_qvec, write_colmap_model
from aetherscan.geometry.camera import colmap_K_to_opencv_K
from aetherscan.photos import open_photo_array
from aetherscan.reconstruction import Reconstruction


def _project(view, xyz):
    cam = xyz @ view.cam_from_world[:3, :3].T + view.cam_from_world[:3, 3]
    return (cam @ view.K.T)[:, :2] / cam[:, 2:3]


@pytest.mark.parametrize("fmt", ["colmap", "colmap_text"])
def test_pycolmap_reads_the_model_and_points_reproject_onto_the_photos(
    scene, photos, tmp_path, fmt
):
    folder = export(scene, fmt, tmp_path / "model", photos=photos)
    suffix = ".bin" if fmt == "colmap" else ".txt"
    model = folder / "sparse" / "0"
    assert sorted(p.name for p in model.iterdir()) == sorted(
        f"{n}{suffix}" for n in ("cameras", "images", "points3D")
    )
    rec = pycolmap.Reconstruction(model)

    assert rec.num_images() == rec.num_reg_images() == len(scene.views)
    assert rec.num_points3D() == scene.num_points  # every synthetic point is in its own photo
    names = {image.name: image for image in rec.images.values()}
    assert set(names) == {view.name for view in scene.views}
    for view in scene.views:
        image = names[view.name]
        camera = rec.cameras[image.camera_id]
        assert (camera.width, camera.height) == (view.width, view.height)
        np.testing.assert_allclose(camera.calibration_matrix(), view.K, atol=1e-12)
        np.testing.assert_allclose(
            image.cam_from_world().matrix(), view.cam_from_world[:3], atol=1e-12
        )
        assert (folder / "images" / view.name).is_file()

        observed = image.get_observation_points2D()
        assert len(observed) == len(view.points)
        xy = np.array([p.xy for p in observed])
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in observed])
        # pycolmap's own projection lands on the observation, and so does ours from the original.
        reprojected = np.array([image.project_point(p) for p in xyz])
        assert np.abs(reprojected - xy).max() < 1e-3
        assert np.abs(_project(view, view.points.astype(np.float64)) - xy).max() < 1e-3
        colors = np.array([rec.points3D[p.point3D_id].color for p in observed])
        np.testing.assert_array_equal(colors, view.colors)

    assert rec.compute_mean_reprojection_error() < 1e-3
    models = {cam.model.name for cam in rec.cameras.values()}
    assert models == {"SIMPLE_PINHOLE", "PINHOLE"}


def test_text_and_binary_models_agree(scene, tmp_path):
    write_colmap_model(scene, tmp_path / "bin", binary=True, max_points=300)
    write_colmap_model(scene, tmp_path / "txt", binary=False, max_points=300)
    a, b = pycolmap.Reconstruction(tmp_path / "bin"), pycolmap.Reconstruction(tmp_path / "txt")
    assert a.num_points3D() == b.num_points3D() == 300
    for point_id, point in a.points3D.items():
        np.testing.assert_allclose(point.xyz, b.points3D[point_id].xyz, rtol=1e-7)
        assert point.track.elements[0].image_id == b.points3D[point_id].track.elements[0].image_id


def test_photo_with_exif_orientation_is_written_upright(scene, photos, tmp_path):
    folder = export(scene, "colmap", tmp_path / "model", photos=photos)
    for view in scene.views:
        with Image.open(folder / "images" / view.name) as image:
            # COLMAP reads the stored pixels: they must be the upright photo the camera describes.
            assert image.size == (view.width, view.height)
            assert image.getexif().get(0x0112, 1) == 1
            pixels = np.asarray(image.convert("RGB"), np.float64)
        upright = open_photo_array(photos[view.name]).astype(np.float64)
        assert np.abs(pixels - upright).mean() < 8  # the same pixels, up to JPEG re-encoding
    assert (folder / "images" / "front.jpg").read_bytes() == photos["front.jpg"].read_bytes()


def test_points_outside_their_photo_are_left_out(scene, tmp_path):
    view = scene.views[0]
    behind = view.center - 2.0 * (view.cam_from_world[2, :3])  # 2 units behind the camera
    view.points = np.concatenate([view.points, behind[None].astype(np.float32)])
    view.colors = np.concatenate([view.colors, np.zeros((1, 3), np.uint8)])
    view.confidence = np.concatenate([view.confidence, np.ones(1, np.float32)])
    write_colmap_model(scene, tmp_path)
    assert pycolmap.Reconstruction(tmp_path).num_points3D() == scene.num_points - 1


def test_mismatched_or_missing_photos_are_refused(scene, photos, tmp_path):
    wrong = dict(photos, **{"front.jpg": photos["back.png"]})
    with pytest.raises(ValueError, match="not the photo it was made from"):
        export(scene, "colmap", tmp_path / "a", photos=wrong)
    with pytest.raises(ValueError, match=r"no photo file given for the views front\.jpg"):
        export(
            scene,
            "colmap",
            tmp_path / "b",
            photos={k: v for k, v in photos.items() if k != "front.jpg"},
        )


def test_names_that_would_leave_the_folder_stay_inside_it(scene, photos, tmp_path):
    scene.views[0].name = "../evil.jpg"
    photos["../evil.jpg"] = photos["front.jpg"]
    folder = export(scene, "colmap", tmp_path / "model", photos=photos)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "uploads"]
    assert (folder / "images" / "__evil.jpg").is_file()
    names = {
        image.name for image in pycolmap.Reconstruction(folder / "sparse" / "0").images.values()
    }
    assert "__evil.jpg" in names


def test_names_with_spaces_only_go_into_binary_models(scene, tmp_path):
    scene.views[0].name = "my photo.jpg"
    write_colmap_model(scene, tmp_path / "bin")
    assert "my photo.jpg" in {
        i.name for i in pycolmap.Reconstruction(tmp_path / "bin").images.values()
    }
    with pytest.raises(ValueError, match="spaces"):
        write_colmap_model(scene, tmp_path / "txt", binary=False)


@pytest.mark.parametrize("seed", range(20))
def test_qvec_matches_pycolmap_rotation(seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    if seed < 4:  # identity and half turns about x, y, z, where w = 0 makes naive formulas fail
        q = np.eye(4)[seed]
    R = pycolmap.Rotation3d(np.r_[q[1:], q[0]] / np.linalg.norm(q)).matrix()
    qvec = rotation_to_qvec(R)
    back = pycolmap.Rotation3d(np.r_[qvec[1:], qvec[0]]).matrix()
    np.testing.assert_allclose(back, R, atol=1e-12)
    assert qvec[0] >= 0


@pytest.mark.parametrize("binary", [True, False])
def test_a_view_without_points_is_an_image_without_observations(scene, tmp_path, binary):
    view = scene.views[2]
    view.points, view.colors, view.confidence = (
        view.points[:0],
        view.colors[:0],
        view.confidence[:0],
    )
    write_colmap_model(scene, tmp_path, binary=binary)
    rec = pycolmap.Reconstruction(tmp_path)
    assert rec.num_points3D() == scene.num_points
    image = next(i for i in rec.images.values() if i.name == view.name)
    assert image.num_points2D() == 0 and image.has_pose
    for other in scene.views[3:]:  # the views after it keep their own observations
        image = next(i for i in rec.images.values() if i.name == other.name)
        assert image.num_points3D == len(other.points)


def _distort(view, xyz):
    """The radial model in words of its definition (View.radial_k1): pixel = K @ (d x, d y, 1),
    d = 1 + k1 (x^2 + y^2), (x, y) on the camera's plane z = 1."""
    cam = xyz @ view.cam_from_world[:3, :3].T + view.cam_from_world[:3, 3]
    x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
    d = 1 + view.radial_k1 * (x**2 + y**2)
    return np.stack([view.K[0, 0] * d * x + view.K[0, 2], view.K[1, 1] * d * y + view.K[1, 2]], 1)


@pytest.mark.parametrize("binary", [True, False])
def test_distorted_cameras_project_as_our_model_does(scene, photos, tmp_path, binary):
    """Issue #15: the model paired pinhole cameras with the distorted photos."""
    ks = [-0.12, 0.08, 0.0, -0.05]  # front (fx = fy), side (fx != fy), back (a pinhole), sideways
    for view, k1 in zip(scene.views, ks, strict=True):
        view.radial_k1 = k1
    folder = export(scene, "colmap" if binary else "colmap_text", tmp_path / "m", photos=photos)
    rec = pycolmap.Reconstruction(folder / "sparse" / "0")
    names = {image.name: image for image in rec.images.values()}
    models = {}
    for view in scene.views:
        image = names[view.name]
        camera = rec.cameras[image.camera_id]
        models[view.name] = camera.model.name
        xyz = view.points.astype(np.float64)
        ours = _distort(view, xyz)
        theirs = np.array([camera.img_from_cam(image.cam_from_world() * p) for p in xyz])
        np.testing.assert_allclose(theirs, ours, atol=1e-9)
        # OpenCV, which the COLMAP engine undistorts the photos with, agrees as well.
        opencv, _ = cv2.projectPoints(
            xyz,
            cv2.Rodrigues(view.cam_from_world[:3, :3])[0],
            view.cam_from_world[:3, 3],
            colmap_K_to_opencv_K(view.K),
            np.array([view.radial_k1, 0, 0, 0]),
        )
        np.testing.assert_allclose(opencv[:, 0] + 0.5, ours, atol=1e-9)
        # Every observation sits where the distorted camera sees its point.
        observed = image.get_observation_points2D()
        xy = np.array([p.xy for p in observed])
        seen = np.array([rec.points3D[p.point3D_id].xyz for p in observed])
        np.testing.assert_allclose(xy, _distort(view, seen), atol=1e-5)
    assert models == {
        "front.jpg": "SIMPLE_RADIAL",
        "side.jpg": "OPENCV",
        "back.png": "SIMPLE_PINHOLE",
        "sideways.jpg": "SIMPLE_RADIAL",
    }
    assert rec.compute_mean_reprojection_error() < 1e-4
    side = rec.cameras[names["side.jpg"].camera_id]
    np.testing.assert_array_equal(side.params[4:], [0.08, 0, 0, 0])  # k1; k2 = p1 = p2 = 0


def test_points_a_barrel_distortion_folds_back_are_left_out(scene, tmp_path):
    view = scene.views[0]
    view.radial_k1 = k1 = -4.0  # the sphere's rim lies past the fold, 1 + 3 k1 r^2 = 0
    write_colmap_model(scene, tmp_path)
    cam = view.points @ view.cam_from_world[:3, :3].T + view.cam_from_world[:3, 3]
    r2 = (cam[:, 0] ** 2 + cam[:, 1] ** 2) / cam[:, 2] ** 2
    xy = _distort(view, view.points.astype(np.float64))
    inside = (xy >= 0).all(1) & (xy[:, 0] < view.width) & (xy[:, 1] < view.height)
    kept = int((inside & (1 + 3 * k1 * r2 > 0)).sum())
    image = next(
        i for i in pycolmap.Reconstruction(tmp_path).images.values() if i.name == view.name
    )
    assert image.num_points2D() == kept < int(inside.sum())


def test_the_colmap_engines_distortion_reaches_the_export_at_the_photos_size(tmp_path):
    """The engine estimates k1 at its working size (here a third of the photo's); k1 belongs to
    normalised coordinates, so the exported camera at the photo's size sees every point where
    the working camera does, scaled up."""
    scale, k1 = 3.0, -0.09
    working = pycolmap.Camera.create_from_model_name(1, "SIMPLE_RADIAL", 50.0, 40, 30)
    working.params = [50.0, 20.5, 14.75, k1]
    f, cx, cy, _ = working.params
    header = {
        "views": [{"name": "a.jpg", "width": 120, "height": 90, "scale": scale, "radial_k1": k1}]
    }
    sparse = {
        "0/K": np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]]),
        "0/cam_from_world": np.eye(4),
    }
    (view,) = ColmapEngine._views(header, sparse)
    assert view.radial_k1 == k1
    view.points = np.random.default_rng(0).uniform([-1, -0.8, 3], [1, 0.8, 5], (50, 3))
    view.points = view.points.astype(np.float32)
    view.colors = np.zeros((50, 3), np.uint8)
    view.confidence = np.ones(50, np.float32)
    write_colmap_model(Reconstruction("colmap", [view]), tmp_path)
    rec = pycolmap.Reconstruction(tmp_path)
    (camera,) = rec.cameras.values()
    assert camera.model.name == "SIMPLE_RADIAL" and (camera.width, camera.height) == (120, 90)
    xyz = view.points.astype(np.float64)
    at_work = np.array([working.img_from_cam(p) for p in xyz])
    np.testing.assert_allclose(np.array([camera.img_from_cam(p) for p in xyz]), scale * at_work)
