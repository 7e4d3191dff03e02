"""Helpers for the tests of the 3D view's tools (test_scene_*.py): a job of a test-double engine
run through the page, where a point of the scene is on screen, and screenshots to look at."""

from __future__ import annotations

from pathlib import Path

from browser_kit import HOOK, SHOTS, LiveServer, _require_server_app, _require_three

# The client position (CSS pixels) where the engine's point (as streamed) is drawn, or null
# when it is behind the viewer or outside the canvas.
ON_SCREEN = """
async (points) => {
  const THREE = await import("three");
  const view = window.aetherscan.view;
  view.content.updateMatrixWorld();
  view.camera.updateMatrixWorld();
  const rect = view.renderer.domElement.getBoundingClientRect();
  return points.map((p) => {
    const ndc = new THREE.Vector3(...p).applyMatrix4(view.content.matrixWorld).project(view.camera);
    const inside = Math.abs(ndc.x) <= 1 && Math.abs(ndc.y) <= 1 && Math.abs(ndc.z) <= 1;
    return inside
      ? [rect.left + ((ndc.x + 1) / 2) * rect.width, rect.top + ((1 - ndc.y) / 2) * rect.height]
      : null;
  });
}
"""


def run_job(page, tmp_path: Path, engine, photos: list[str]) -> LiveServer:
    """Start a server with ``engine``, reconstruct ``photos`` through the page, wait for done."""
    _require_server_app()
    _require_three()
    server = LiveServer(tmp_path / "data", engine=engine).start()
    page.goto(server.url + "/")
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
    page.set_input_files("#file-input", photos)
    page.click("#start")
    page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)")
    assert page.evaluate(f"() => {HOOK}.state") == "done", page.evaluate(f"() => {HOOK}.messages")
    settle(page)
    return server


def settle(page) -> None:
    """Wait until the view has drawn what it was asked to (two animation frames)."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def on_screen(page, points) -> list:
    return page.evaluate(ON_SCREEN, [list(map(float, p)) for p in points])


def shot(page, name: str) -> Path:
    """A screenshot of the whole page (1280 x 800) under SHOTS, to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path))
    return path


def uploads(page) -> dict:
    """What has gone to the GPU so far (browser_kit.COUNT_GL_UPLOADS)."""
    return page.evaluate("() => ({...window.__glUploads})")
