// Measuring: two clicks on the cloud give a distance, drawn as a line with its length beside
// it, in the scene's units until a scale is known and in metres after. "This is ___ m" sets the
// scale of a finished job on the server (PUT /api/jobs/{id}/scale with the two points, in the
// engine's coordinates as streamed, and the true length); a job opened again brings its scale
// along (`scale.metres_per_unit` of its status).

import * as THREE from "three";
import { pickPoint } from "./picking.js";

const LINE_COLOUR = 0x4fe0ff;

/** A length as people read it: "1.23 m", "4.5 cm", "0.8 mm"; or "0.532 units" without a scale. */
export function formatLength(units, metresPerUnit) {
  const digits = (value) => Number(value.toPrecision(3)).toLocaleString("en");
  if (!metresPerUnit) return `${digits(units)} units`;
  const metres = units * metresPerUnit;
  if (metres >= 1) return `${digits(metres)} m`;
  if (metres >= 0.01) return `${digits(100 * metres)} cm`;
  return `${digits(1000 * metres)} mm`;
}

/** The words of an error answer of the server's: its `detail`, a sentence or FastAPI's list. */
export async function serverDetail(response) {
  const body = await response.json().catch(() => null);
  const detail = body?.detail;
  if (typeof detail === "string") return detail.replace(/\.$/, ""); // the caller ends the sentence
  if (Array.isArray(detail)) return detail.map((item) => item.msg ?? String(item)).join("; ");
  return `HTTP ${response.status}`;
}

export class Measure {
  /**
   * @param {import("./scene.js").SceneView} view
   * @param {object} elements toggle (button), value (output), form, length (input), note,
   *   label (the element beside the line, in the viewport)
   * @param {() => {id: string | null, done: boolean}} job the job shown, for setting its scale
   */
  constructor(view, elements, job) {
    this.view = view;
    this.elements = elements;
    this.job = job;
    this.active = false;
    this.picks = []; // up to two points, [x, y, z] in the engine's coordinates
    this.metresPerUnit = null;
    this.group = new THREE.Group();
    this.group.name = "measure";
    view.content.add(this.group);

    elements.toggle.addEventListener("click", () => this.setActive(!this.active));
    elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitScale();
    });
    view.events.addEventListener("render", () => this._placeLabel());
    view.events.addEventListener("clear", () => {
      this.metresPerUnit = null;
      this.clear();
    });
    this._update();
  }

  /** Measuring on: clicks on the view pick points instead of photos. */
  setActive(active) {
    this.active = active;
    this.elements.toggle.setAttribute("aria-pressed", String(active));
    this.elements.toggle.classList.toggle("on", active);
    this.view.container.classList.toggle("measuring", active);
    if (!active) this.clear();
    this._update();
  }

  /** A click at (clientX, clientY) on the view: the first or second end of a measurement. */
  click(clientX, clientY) {
    const hit = pickPoint(this.view, clientX, clientY);
    if (!hit) {
      this._say("No point there: click on a point of the cloud.");
      return null;
    }
    if (this.picks.length >= 2) this.picks = [];
    this.picks.push(hit.position);
    this._draw();
    this._update();
    return hit;
  }

  /** The distance between the two points picked, in the scene's units, or null. */
  get distance() {
    if (this.picks.length < 2) return null;
    const [a, b] = this.picks;
    return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
  }

  /** The job's scale (metres per scene unit; null: unknown), e.g. from its status on reopening. */
  setScale(metresPerUnit) {
    this.metresPerUnit = Number.isFinite(metresPerUnit) && metresPerUnit > 0 ? metresPerUnit : null;
    this._update();
  }

  clear() {
    this.picks = [];
    this._draw();
    this._update();
  }

  /** Send "the two points picked are `length` metres apart" to the server, as the job's scale. */
  async submitScale() {
    const { length, note } = this.elements;
    const lengthM = Number(length.value);
    const distance = this.distance;
    const job = this.job();
    if (distance === null) return this._note("Pick two points first.", "bad");
    if (!job.id || !job.done) return this._note("The scale can be set once the job is done.", "bad");
    if (!(lengthM > 0) || !Number.isFinite(lengthM)) {
      return this._note("Enter the true length in metres: a number above 0, such as 0.3.", "bad");
    }
    if (!(distance > 0)) return this._note("The two points are the same: pick two different ones.", "bad");
    this._note("Saving the scale…");
    let response;
    try {
      response = await fetch(`/api/jobs/${encodeURIComponent(job.id)}/scale`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ points: this.picks, length_m: lengthM }),
      });
    } catch (error) {
      return this._note(`The scale was not saved: the server could not be reached (${error.message}).`, "bad");
    }
    if (!response.ok) {
      return this._note(`The scale was not saved: ${await serverDetail(response)}.`, "bad");
    }
    const status = await response.json().catch(() => null);
    this.setScale(status?.scale?.metres_per_unit ?? lengthM / distance);
    note.dataset.level = "ok";
    note.textContent = "Scale saved: distances are in metres now, and so are the downloads.";
    return null;
  }

  _note(text, level = "") {
    this.elements.note.textContent = text;
    this.elements.note.dataset.level = level;
    return null;
  }

  _say(text) {
    this.elements.value.textContent = text;
  }

  /** The words and the scale form for the state now. */
  _update() {
    const { value, form, toggle } = this.elements;
    toggle.textContent = this.active ? "Stop measuring" : "Measure";
    const distance = this.distance;
    if (!this.active) {
      value.textContent = this.metresPerUnit
        ? "Distances are in metres (the job's scale is set)."
        : "Click Measure, then two points of the cloud.";
    } else if (this.picks.length === 0) {
      value.textContent = "Click a point of the cloud…";
    } else if (this.picks.length === 1) {
      value.textContent = "… and a second one.";
    } else {
      value.textContent = `Distance: ${formatLength(distance, this.metresPerUnit)}`;
    }
    value.dataset.units = this.metresPerUnit ? "metres" : "scene";
    form.hidden = distance === null;
    this._placeLabel();
  }

  /** The line and its two ends, drawn over the cloud. */
  _draw() {
    for (const child of [...this.group.children]) {
      child.geometry.dispose();
      child.material.dispose();
      this.group.remove(child);
    }
    if (this.picks.length > 0) {
      const geometry = new THREE.BufferGeometry();
      geometry.setAttribute("position", new THREE.Float32BufferAttribute(this.picks.flat(), 3));
      const ends = new THREE.Points(
        geometry,
        new THREE.PointsMaterial({ color: LINE_COLOUR, size: 9, sizeAttenuation: false, depthTest: false }),
      );
      ends.renderOrder = 10;
      this.group.add(ends);
      if (this.picks.length === 2) {
        const line = new THREE.Line(
          geometry.clone(),
          new THREE.LineBasicMaterial({ color: LINE_COLOUR, depthTest: false }),
        );
        line.renderOrder = 10;
        this.group.add(line);
      }
    }
    this.view.requestRender();
  }

  /** The length beside the middle of the line, wherever the view turned. */
  _placeLabel() {
    const { label } = this.elements;
    const distance = this.distance;
    if (distance === null) {
      label.hidden = true;
      return;
    }
    const [a, b] = this.picks;
    const middle = new THREE.Vector3((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2);
    this.view.content.updateMatrixWorld();
    middle.applyMatrix4(this.view.content.matrixWorld).project(this.view.camera);
    const canvas = this.view.renderer.domElement;
    label.hidden = Math.abs(middle.z) > 1;
    label.textContent = formatLength(distance, this.metresPerUnit);
    const x = ((middle.x + 1) / 2) * canvas.clientWidth;
    const y = ((1 - middle.y) / 2) * canvas.clientHeight;
    label.style.transform = `translate(${x.toFixed(1)}px, ${y.toFixed(1)}px)`;
  }
}
