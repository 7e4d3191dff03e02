"""The surface in the view: once a job is done and offers mesh.glb, "Surface" fetches it once
(saying "Making the surface…" while the server makes it), shows it exactly where the points are
and hides them; "Points" brings them back, "Both" draws them over it; a new scan drops it. A
server that cannot make one (409) is heard in its own words, and the points stay."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from browser_kit import (
    HOOK,
    LiveServer,
    PlacedEngine,
    _require_server_app,
    _require_three,
    look_at,
    page_failing_on_errors,
    refused_socket,
    solid_photos,
)
from scene_kit import on_screen, run_job, settle, shot

pytestmark = pytest.mark.browser

CENTRE = np.array([0.6, -0.4, 3.0])  # off the origin: a surface turned the wrong way misses it
GATE_TIMEOUT_S = 60
BACKGROUND = np.array([0x15, 0x17, 0x1C])  # the view's clear colour (web/js/scene.js)
# One photo per camera, each its own colour (the page keeps one of two identical photos).
COLOURS = [(200, 60, 40), (40, 160, 200), (90, 200, 90), (220, 200, 60)]
COLOURS += [(160, 90, 200), (240, 140, 40), (60, 60, 160), (200, 200, 200)]

# The points (every one, through its frame's matrix) and the mesh's vertices, in the page's
# scene: their boxes, [min, max].
BOXES = """
async () => {
  const THREE = await import("three");
  const view = window.aetherscan.view;
  view.scene.updateMatrixWorld(true);
  const points = new THREE.Box3();
  const p = new THREE.Vector3();
  for (const { frame, points: object } of view.cloud.frames) {
    const values = frame.xyz ?? frame.positions;
    for (let i = 0; i < frame.count; i++) {
      p.fromArray(values, 3 * i).applyMatrix4(object.matrixWorld);
      points.expandByPoint(p);
    }
  }
  const mesh = new THREE.Box3().setFromObject(view.surface.group, true);
  return {
    points: [points.min.toArray(), points.max.toArray()],
    mesh: [mesh.min.toArray(), mesh.max.toArray()],
  };
}
"""

# What the view shows: the points, the surface, and the choice's buttons.
LOOK = f"""() => {{
  const view = {HOOK}.view;
  const pressed = [...document.querySelectorAll("#surface-choice [data-look]")]
    .filter((button) => button.getAttribute("aria-pressed") === "true")
    .map((button) => button.dataset.look);
  return {{
    look: view.look,
    points: view.cloud.group.visible,
    surface: view.surface.group.visible,
    triangles: view.surface.triangles,
    offered: !document.querySelector("#surface-choice").hidden,
    pressed,
    fetches: {HOOK}.surface.fetches,
  }};
}}"""


def sphere_views(n: int = 20_000, noise: float = 0.003, seed: int = 0) -> list[dict]:
    """A unit sphere of ``n`` points around CENTRE, coloured by direction, seen by 8 cameras at
    the corners of a cube 4 units out; each owns the points that face it most squarely, so none
    owns a point on the far side (the mesh's normals face the camera of each point)."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = CENTRE + directions + rng.normal(scale=noise, size=(n, 3))
    colours = (127 + 120 * directions).astype(np.uint8)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    centres = CENTRE + 4 * corners / np.sqrt(3)
    towards = centres[None, :, :] - points[:, None, :]
    towards /= np.linalg.norm(towards, axis=2, keepdims=True)
    owner = np.argmax(np.einsum("nj,ncj->nc", directions, towards), axis=1)
    return [
        {
            "cam_from_world": look_at(centre, CENTRE),
            "focal": 1.0,
            "points": points[owner == k],
            "colors": colours[owner == k],
            "confidence": np.full(int(np.sum(owner == k)), 2.0),
        }
        for k, centre in enumerate(centres)
    ]


class HeldEngine(PlacedEngine):
    """TEST DOUBLE: PlacedEngine that returns its result only once the test sets ``release``."""

    def __init__(self, views) -> None:
        super().__init__(views)
        self.release = threading.Event()

    def reconstruct(self, photos, observer=None):
        result = super().reconstruct(photos, observer)
        if not self.release.wait(GATE_TIMEOUT_S):
            raise RuntimeError("the test did not release the job")
        return result


def look(page) -> dict:
    return page.evaluate(LOOK)


def choose(page, which: str) -> None:
    page.click(f'#surface-choice [data-look="{which}"]')


def colour_at(page, point) -> np.ndarray:
    """The mean colour drawn in the 9 x 9 pixels around the engine's ``point`` on screen."""
    from PIL import Image

    (xy,) = on_screen(page, [point])
    assert xy is not None, "the point is not in view"
    png = page.screenshot(clip={"x": xy[0] - 4, "y": xy[1] - 4, "width": 9, "height": 9})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), float).mean(axis=(0, 1))


def assert_same_box(mesh, points, share: float = 0.03) -> None:
    mesh, points = np.asarray(mesh), np.asarray(points)
    extent = float(np.max(points[1] - points[0]))
    assert np.all(np.abs(mesh - points) < share * extent), (mesh.tolist(), points.tolist())


@pytest.fixture
def gated_mesh(monkeypatch):
    """The server's make_mesh (it runs in a thread of this process) waits for this event."""
    import aetherscan.server.results as results

    gate = threading.Event()
    make_mesh = results.make_mesh

    def held(reconstruction):
        if not gate.wait(GATE_TIMEOUT_S):
            raise RuntimeError("the test did not open the gate")
        return make_mesh(reconstruction)

    monkeypatch.setattr(results, "make_mesh", held)
    return gate


def test_the_surface_is_fetched_once_shown_on_the_points_and_toggled(page, tmp_path, gated_mesh):
    _require_server_app()
    _require_three()
    views = sphere_views()
    engine = HeldEngine(views)
    server = LiveServer(tmp_path / "data", engine=engine).start()
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.url.endswith("/mesh.glb") else None)
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        assert not look(page)["offered"]
        page.set_input_files("#file-input", solid_photos(tmp_path / "photos", COLOURS))
        page.click("#start")
        page.wait_for_function(f"() => {HOOK}.state === 'running'")
        assert not look(page)["offered"], "the choice is offered before the job is done"
        engine.release.set()
        page.wait_for_function(f"() => {HOOK}.state === 'done'")
        settle(page)
        job_id = page.evaluate(f"() => {HOOK}.app.jobId")
        state = look(page)
        assert state["offered"] and state["pressed"] == ["points"] and state["points"]
        assert not state["surface"] and fetched == []

        # Surface: fetched while the server makes it (held here), the points meanwhile stay.
        choose(page, "surface")
        page.wait_for_function(
            "() => document.querySelector('#surface-note').textContent === 'Making the surface…'"
        )
        state = look(page)
        assert state["pressed"] == ["surface"] and state["look"] == "points" and state["points"]
        gated_mesh.set()
        page.wait_for_function(f"() => {HOOK}.view.look === 'surface'")
        settle(page)
        state = look(page)
        assert state["surface"] and not state["points"] and state["triangles"] > 1000
        assert fetched == [f"{server.url}/api/jobs/{job_id}/files/mesh.glb"]
        assert "triangles" in page.text_content("#surface-note")
        boxes = page.evaluate(BOXES)
        assert_same_box(boxes["mesh"], boxes["points"])
        # It is drawn, lit and coloured where the sphere is (not the background).
        assert np.abs(colour_at(page, CENTRE) - BACKGROUND).max() > 40
        page.screenshot(path="/tmp/mesh_view.png")
        shot(page, "scene-mesh-surface.png")

        # Both: the points over the surface.
        choose(page, "both")
        settle(page)
        state = look(page)
        assert state["look"] == "both" and state["points"] and state["surface"]
        page.screenshot(path="/tmp/mesh_both.png")
        shot(page, "scene-mesh-both.png")

        # Points again: the points, no surface; then the surface again, not fetched again.
        choose(page, "points")
        settle(page)
        state = look(page)
        assert state["points"] and not state["surface"] and state["pressed"] == ["points"]
        choose(page, "surface")
        settle(page)
        state = look(page)
        assert state["surface"] and not state["points"]
        assert len(fetched) == 1 and state["fetches"] == 1

        # The download menu names the mesh files.
        page.click("#downloads summary")
        for key, label, name in (
            ("mesh_ply", "Mesh (PLY, vertex colours)", "mesh.ply"),
            ("mesh_glb", "Mesh (GLB)", "mesh.glb"),
            ("mesh_obj", "Mesh (OBJ)", "mesh.obj"),
        ):
            link = page.locator(f'#download-list a[data-format="{key}"]')
            assert link.locator(".format-label").text_content() == label
            assert link.locator(".format-hint").text_content()
            assert link.get_attribute("href") == f"/api/jobs/{job_id}/files/{name}"
        page.click("#downloads summary")

        # A new scan drops the surface; the job opened again offers it afresh.
        page.click("#new-scan")
        state = look(page)
        assert not state["offered"] and state["triangles"] == 0 and state["look"] == "points"
        page.evaluate(f"() => {{ location.hash = 'job={job_id}'; }}")
        page.wait_for_function(f"() => {HOOK}.state === 'done'")
        settle(page)
        state = look(page)
        assert state["offered"] and state["pressed"] == ["points"] and state["points"]
        assert state["triangles"] == 0 and not state["surface"]
        # The reopened job's thumbnails come from the server: let them arrive before it stops.
        page.wait_for_function(
            "() => [...document.querySelectorAll('#thumbnails img')].every(i => i.complete)"
        )
    finally:
        server.stop()


@pytest.fixture
def page_hearing_a_409(chromium):
    """As ``page``, but Chromium's own console line for the 409 answer to mesh.glb (the test
    brings it about) is no page error."""

    def excused(message) -> bool:
        refused_mesh = "status of 409" in message.text and "mesh.glb" in message.location["url"]
        return refused_mesh or refused_socket(message)

    with page_failing_on_errors(chromium, excused) as page:
        yield page


def test_a_surface_the_server_cannot_make_is_said_and_the_points_stay(
    page_hearing_a_409, tmp_path, monkeypatch
):
    import aetherscan.server.results as results
    from aetherscan.mesh import MeshError

    def refuse(reconstruction):
        raise MeshError("the points are too sparse for a mesh")

    monkeypatch.setattr(results, "make_mesh", refuse)
    page = page_hearing_a_409
    views = sphere_views(n=2_000)
    server = run_job(page, tmp_path, PlacedEngine(views), solid_photos(tmp_path / "p", COLOURS))
    try:
        assert look(page)["offered"]
        choose(page, "surface")
        page.wait_for_function(
            "() => document.querySelector('#messages').textContent.includes('too sparse')"
        )
        settle(page)
        text = page.text_content("#messages .message.warning span")
        assert text == (
            "No surface to show: mesh.glb could not be made: the points are too sparse for a mesh."
        )
        state = look(page)
        assert state["look"] == "points" and state["points"] and not state["surface"]
        assert state["pressed"] == ["points"]
        # The server said why: its answer would not change, so the surface is not offered again.
        assert page.is_disabled('#surface-choice [data-look="surface"]')
        assert page.text_content("#surface-note") == "No surface for these points."
        shot(page, "scene-mesh-refused.png")
    finally:
        server.stop()
