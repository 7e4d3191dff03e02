"""The viewer's modules in the page: point frames from the server's encoder drawn where and in
the colour they were sent, the confidence threshold as a draw range, and the one conversion from
OpenCV camera poses to three.js."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from browser_kit import look_at

pytestmark = pytest.mark.browser

CANVAS_PX = 200
# Renders the frames (base64) with PointCloudLayer, seen from (0, 0, 5) looking at the origin,
# and reads the pixel under each point (projected with the same camera) for each threshold.
RENDER = """
async ({frames, kind, points, thresholds, size}) => {
  const THREE = await import("three");
  const { PointCloudLayer } = await import("/js/cloud.js");
  const { decodeFrames, frameFromJsonPoints } = await import("/js/frames.js");
  const renderer = new THREE.WebGLRenderer({ preserveDrawingBuffer: true, antialias: false });
  renderer.setPixelRatio(1);
  renderer.setSize(size, size);
  const layer = new PointCloudLayer();
  if (kind === "binary") {
    const bytes = Uint8Array.from(atob(frames), (c) => c.charCodeAt(0));
    for (const frame of decodeFrames(bytes.buffer)) layer.add(frame);
  } else {
    layer.add(frameFromJsonPoints(frames));
  }
  layer.setPointSize(9);
  layer.uniforms.referenceDistance.value = 5;
  const scene = new THREE.Scene();
  scene.add(layer.group);
  const camera = new THREE.PerspectiveCamera(60, 1, 0.1, 100);
  camera.position.set(0, 0, 5);
  camera.lookAt(0, 0, 0);
  camera.updateMatrixWorld();
  const gl = renderer.getContext();
  const results = [];
  for (const threshold of thresholds) {
    layer.setThreshold(threshold);
    renderer.render(scene, camera);
    const pixels = points.map(([x, y, z]) => {
      const p = new THREE.Vector3(x, y, z).project(camera);
      const column = Math.floor(((p.x + 1) / 2) * size);
      const row = Math.floor(((p.y + 1) / 2) * size); // readPixels counts rows from the bottom
      const rgba = new Uint8Array(4);
      gl.readPixels(column, row, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
      return Array.from(rgba.slice(0, 3));
    });
    results.push({ drawn: layer.pointsDrawn, pixels });
  }
  renderer.dispose();
  return results;
}
"""

XYZ = np.array(
    [[-2, 0, 0], [-1, 1, 0], [0, 0, 0], [1, -1, 0], [2, 0, 0.5], [0, 1.5, -1]], np.float32
)
RGB = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [200, 120, 40], [30, 60, 90]],
    np.uint8,
)
CONFIDENCE = np.array([9.0, 3.0, 7.0, 1.5, 5.0, 2.0], np.float32)


@pytest.fixture
def viewer_page(page, live_server):
    page.goto(live_server.url + "/")
    page.wait_for_function("() => window.aetherscan !== undefined")
    return page


def test_binary_frames_are_drawn_where_and_in_the_colour_sent(viewer_page):
    from aetherscan.server.protocol import decode_point_frame, encode_point_frame

    # Two frames of one cloud, one of them with a single point (its step is 0 on every axis).
    frames = [
        encode_point_frame(XYZ[:5], RGB[:5], CONFIDENCE[:5], 0),
        encode_point_frame(XYZ[5:], RGB[5:], CONFIDENCE[5:], 1),
    ]
    sent_rgb = np.concatenate([decode_point_frame(frame).rgb for frame in frames])
    sent_order = np.concatenate([np.argsort(-CONFIDENCE[:5], kind="stable"), [5]])
    expected = np.empty_like(RGB)
    expected[sent_order] = sent_rgb  # RGB565 as the server's own decoder expands it

    thresholds = [-1e9, 4.0, 100.0]
    results = viewer_page.evaluate(
        RENDER,
        {
            "frames": base64.b64encode(b"".join(frames)).decode(),
            "kind": "binary",
            "points": XYZ.tolist(),
            "thresholds": thresholds,
            "size": CANVAS_PX,
        },
    )
    everything, confident, none = results
    assert everything["drawn"] == len(XYZ)
    np.testing.assert_allclose(everything["pixels"], expected, atol=2)

    # A threshold is a prefix of each frame: here exactly the points with confidence >= 4.
    keep = CONFIDENCE >= 4.0
    assert confident["drawn"] == keep.sum()
    np.testing.assert_allclose(np.array(confident["pixels"])[keep], expected[keep], atol=2)
    assert not np.array(confident["pixels"])[~keep].any(), "points under the threshold drawn"
    assert none["drawn"] == 0
    assert not np.array(none["pixels"]).any()


def test_json_points_are_drawn_with_their_exact_colours(viewer_page):
    points = [
        {"x": float(x), "y": float(y), "z": float(z), "r": int(r), "g": int(g), "b": int(b)}
        for (x, y, z), (r, g, b) in zip(XYZ, RGB, strict=True)
    ]
    (result,) = viewer_page.evaluate(
        RENDER,
        {
            "frames": points,
            "kind": "json",
            "points": XYZ.tolist(),
            "thresholds": [5.0],
            "size": CANVAS_PX,
        },
    )
    # JSON points carry no confidence: a threshold leaves them all on screen.
    assert result["drawn"] == len(XYZ)
    np.testing.assert_allclose(result["pixels"], RGB, atol=1)


def test_opencv_pose_becomes_a_three_js_camera_looking_the_same_way(viewer_page):
    centre = np.array([1.0, -2.0, 3.0])
    target = np.array([-0.5, 0.5, 8.0])
    down_hint = np.array([0.2, 1.0, -0.1])
    cam_from_world = look_at(centre, target, down_hint)
    elements = viewer_page.evaluate(
        """async (pose) => {
          const { worldFromCameraGL } = await import("/js/cameras.js");
          return worldFromCameraGL(pose).elements;
        }""",
        cam_from_world.tolist(),
    )
    world_from_camera = np.array(elements).reshape(4, 4).T  # three.js stores columns
    rotation = world_from_camera[:3, :3]
    np.testing.assert_allclose(world_from_camera[:3, 3], centre, atol=1e-9)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    # OpenGL cameras look down -z with y up: the same ray and the same up as the OpenCV camera.
    forward = (target - centre) / np.linalg.norm(target - centre)
    np.testing.assert_allclose(rotation @ [0, 0, -1], forward, atol=1e-9)
    down = cam_from_world[1, :3]  # the OpenCV y axis in world coordinates
    np.testing.assert_allclose(rotation @ [0, 1, 0], -down, atol=1e-9)
    np.testing.assert_allclose(rotation @ [1, 0, 0], cam_from_world[0, :3], atol=1e-9)
