"""How soon a person sees something of a COLMAP job: the real server, the real engine, the viewer
in headless Chromium (Debian's; WebGL on SwiftShader).

For each run the page uploads the photos and presses Start; a wrapper around the page's WebSocket
stamps the ``upload_complete`` it sends and every message it receives, and the page is watched
(``requestAnimationFrame`` polling) for the first preview cameras or points it draws and for the
result's first points. Reported, as shares of the job's wall time (``upload_complete`` sent to
``reconstruction_complete`` received):

* first look: the first cameras or points on screen (a preview, or the result's points);
* first result points: the result's first point frame on screen (all there was before previews);
* the job's wall time with previews and, in the same session, without (``--compare``), which is
  what the first look costs.

Goal (issue 11): on a 16-photo COLMAP job, the first points or cameras on screen within 25 % of
the job's wall time.

    PYTHONPATH=src python benchmarks/bench_first_look.py --photos ../shared/data/flowerpot/images \
        --repeats 2 --compare
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from bench_viewer import CHROMIUM_ARGS, start_server

# Stamps (epoch ms) what the page's WebSocket sends and receives, before the page's code runs.
STAMP_SOCKET = """
window.__stamps = {sent: {}, received: {}};
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (event) => {
      const now = performance.timeOrigin + performance.now();
      let kind = "binary";
      if (typeof event.data === "string") kind = JSON.parse(event.data).type;
      window.__stamps.received[kind] ??= now;
      window.__stamps.received[`last ${kind}`] = now;
    });
  }
  send(data) {
    if (typeof data === "string") {
      const kind = JSON.parse(data).type;
      window.__stamps.sent[kind] = performance.timeOrigin + performance.now();
    }
    return super.send(data);
  }
};
"""
NOW = "() => performance.timeOrigin + performance.now()"


def run_once(browser, url: str, photos: list[Path]) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.add_init_script(STAMP_SOCKET)
    try:
        page.goto(f"{url}/?timing=1")
        page.wait_for_function("() => window.aetherscan && window.aetherscan.state === 'idle'")
        page.set_input_files("#file-input", [str(p) for p in photos])
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        page.click("#start")
        # Whatever comes first on screen: a preview's cameras or points, or the result's points.
        page.wait_for_function(
            "() => window.aetherscan.view.preview.shown || window.aetherscan.pointsDrawn > 0",
            polling="raf",
            timeout=900_000,
        )
        first_look_ms = page.evaluate(NOW)
        page.wait_for_function(
            "() => window.aetherscan.pointsDrawn > 0", polling="raf", timeout=900_000
        )
        first_points_ms = page.evaluate(NOW)
        page.wait_for_function(
            "() => ['done', 'failed'].includes(window.aetherscan.state)", timeout=900_000
        )
        found = page.evaluate(
            "() => ({state: window.aetherscan.state, stamps: window.__stamps,"
            " cameras: window.aetherscan.camerasShown})"
        )
    finally:
        page.close()
    if found["state"] != "done":
        raise RuntimeError(f"the job did not finish: {found['state']}")
    start = found["stamps"]["sent"]["upload_complete"]
    end = found["stamps"]["received"]["reconstruction_complete"]
    wall_ms = end - start
    return {
        "wall_s": round(wall_ms / 1000, 2),
        "first_look_s": round((first_look_ms - start) / 1000, 2),
        "first_look_share": round((first_look_ms - start) / wall_ms, 3),
        "first_points_share": round((first_points_ms - start) / wall_ms, 3),
        # When the first preview arrived (None: there was none): on screen is a frame later.
        "preview_received_share": (
            round((found["stamps"]["received"]["preview"] - start) / wall_ms, 3)
            if "preview" in found["stamps"]["received"]
            else None
        ),
        "cameras": found["cameras"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True, help="a folder of photos")
    parser.add_argument("--count", type=int, default=16, help="the first N photos, by name")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", action="store_true", help="also run without previews")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from aetherscan.engines.colmap import ColmapEngine

    photos = sorted(
        p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )[: args.count]
    variants = [True, False] if args.compare else [True]
    results: dict[bool, list[dict]] = {v: [] for v in variants}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            for _ in range(args.repeats):
                for previews in variants:  # alternated, so that both see the same load
                    with tempfile.TemporaryDirectory() as data_dir:
                        engine = ColmapEngine(previews=previews)
                        server, url = start_server(engine, Path(data_dir))
                        try:
                            result = run_once(browser, url, photos) | {"with_previews": previews}
                        finally:
                            server.should_exit = True
                    print(json.dumps(result), flush=True)
                    results[previews].append(result)
        finally:
            browser.close()

    print(f"\n{len(photos)} photos from {args.photos}, median of {args.repeats}:")
    print("| previews | job wall time | first look on screen | share | first result points share |")
    print("| --- | --- | --- | --- | --- |")
    for previews, runs in results.items():
        median = {
            k: statistics.median(r[k] for r in runs)
            for k in ("wall_s", "first_look_s", "first_look_share", "first_points_share")
        }
        print(
            f"| {'on' if previews else 'off'} | {median['wall_s']:.1f} s | "
            f"{median['first_look_s']:.1f} s | {median['first_look_share']:.0%} | "
            f"{median['first_points_share']:.0%} |"
        )


if __name__ == "__main__":
    main()
