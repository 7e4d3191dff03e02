// The view's tools, wired to the page: a click on the view picks a photo (its frustum) or,
// while measuring, a point; a click on a thumbnail picks its photo; a line says what a
// preview shows. main.js calls installSceneTools once, and tells the tools when a job is done
// (its scale, if set).

import { PhotoInspector } from "./inspect.js";
import { Measure } from "./measure.js";
import { pickFrustum } from "./picking.js";

const CLICK_SLOP_PX = 5; // a press that moves more is a drag of the view, not a click
const CLICK_MS = 700;

/**
 * @param {object} options
 * @param {import("./scene.js").SceneView} options.view
 * @param {HTMLElement} options.viewport
 * @param {HTMLElement} [options.thumbnails] the photo list: a click on a photo picks it
 * @param {(name: string) => (string | null)} options.photoUrl the browser's copy of a photo
 * @param {() => {id: string | null, done: boolean}} options.job the job shown
 * @param {import("./controls.js").ViewControls} [options.controls]
 * @param {() => (string | null)} [options.engine] the engine's name, for the confidence label
 * @param {() => void} [options.onChange] the points drawn changed
 */
export function installSceneTools({ view, viewport, thumbnails, photoUrl, job, controls, engine, onChange }) {
  const $ = (id) => document.getElementById(id);
  const label = document.createElement("div");
  label.className = "measure-label";
  label.hidden = true;
  viewport.appendChild(label);
  const measure = new Measure(
    view,
    {
      toggle: $("measure"),
      value: $("measure-value"),
      form: $("scale-form"),
      length: $("scale-length"),
      note: $("scale-note"),
      label,
    },
    job,
  );
  const inspector = new PhotoInspector(view, viewport, photoUrl, onChange);
  showPreviewCaption(view, viewport);
  if (controls && engine) controls.engineName = engine;

  listenForClicks(view.renderer.domElement, (event) => {
    if (measure.active) {
      measure.click(event.clientX, event.clientY);
      return;
    }
    const index = pickFrustum(view, view.frustums, event.clientX, event.clientY);
    if (index !== null) view.selectPhoto(index);
  });

  if (thumbnails) {
    const nameOf = (item) => item.querySelector(".photo-name")?.textContent;
    thumbnails.addEventListener("click", (event) => {
      const item = event.target.closest(".photo");
      if (!item || event.target.closest("button")) return;
      const index = view.cameras.findIndex((camera) => camera.name === nameOf(item));
      if (index >= 0) view.selectPhoto(index);
    });
    // The picked photo's thumbnail is marked too.
    view.events.addEventListener("select", (event) => {
      const name = event.detail === null ? null : view.cameras[event.detail]?.name;
      for (const item of thumbnails.querySelectorAll(".photo")) {
        item.classList.toggle("picked", name !== null && nameOf(item) === name);
      }
    });
  }

  // Escape: measuring off, or the photo put away.
  window.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.target.closest?.("input, textarea")) return;
    if (measure.active) measure.setActive(false);
    else if (view.pickedPhoto !== null) view.selectPhoto(null);
  });

  return {
    measure,
    inspector,
    /** The job is done: `status` is its REST status or the completion message. */
    jobDone(status) {
      measure.setScale(status?.scale?.metres_per_unit ?? null);
    },
  };
}

/** While a preview is drawn, a line over the view says what it is (the server's words). */
function showPreviewCaption(view, viewport) {
  const caption = document.createElement("div");
  caption.className = "preview-caption";
  caption.hidden = true;
  viewport.appendChild(caption);
  view.events.addEventListener("preview", (event) => {
    const message = event.detail;
    caption.hidden = message === null;
    caption.textContent = message ? `Preview: ${message}` : "";
  });
}

/** Calls onClick(pointerEvent) for a primary-button press and release that did not drag. */
function listenForClicks(element, onClick) {
  let down = null;
  element.addEventListener("pointerdown", (event) => {
    down = event.button === 0 ? { x: event.clientX, y: event.clientY, at: event.timeStamp } : null;
  });
  element.addEventListener("pointerup", (event) => {
    const start = down;
    down = null;
    if (!start || event.button !== 0) return;
    const moved = Math.hypot(event.clientX - start.x, event.clientY - start.y);
    if (moved <= CLICK_SLOP_PX && event.timeStamp - start.at <= CLICK_MS) onClick(event);
  });
}
