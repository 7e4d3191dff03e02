// The provisional look of a job still running (feature "preview", docs/protocol.md): cameras
// placed so far and a sample of sparse points, drawn dimmer and smaller than the result, each
// preview replacing the one before. The result's first points hide the preview's points and
// its "cameras" message the preview's cameras. A preview has a world frame of its own: it is
// drawn as it is, never merged with the result.

import * as THREE from "three";
import { createFrustums, disposeFrustums } from "./cameras.js";

const PREVIEW_FRUSTUM_COLOUR = 0x8a6a2a; // the result's frustum colour, dimmed
const POINT_SIZE_PX = 3.5; // sparse points: a few pixels each, so that they read as a shape

export class PreviewLayer {
  constructor() {
    this.group = new THREE.Group();
    this.group.name = "preview";
    this.material = new THREE.PointsMaterial({
      size: POINT_SIZE_PX,
      sizeAttenuation: false,
      vertexColors: true,
      color: 0x9a9a9a, // multiplies the points' colours: dimmer than the result's
    });
    this.points = null; // THREE.Points of the newest preview, or null
    this.frustums = null;
    this.cameras = []; // the newest preview's cameras while they are shown
    this.positions = null; // Float32Array of the points shown, for the fit
    this.message = "";
  }

  get shown() {
    return Boolean(this.points || this.frustums);
  }

  /**
   * Show a "preview" message instead of the one before; `frustumDepth(cameras, box)` says how
   * deep to draw its cameras (box: around the bulk of its points, or null).
   */
  show(message, frustumDepth) {
    this.clear();
    this.message = message.message ?? "";
    const positions = Float32Array.from(message.points?.positions ?? []);
    const count = Math.floor(positions.length / 3);
    const colours = Uint8Array.from(message.points?.colors ?? []);
    if (count > 0 && colours.length >= 3 * count) {
      const geometry = new THREE.BufferGeometry();
      geometry.setAttribute("position", new THREE.BufferAttribute(positions.subarray(0, 3 * count), 3));
      geometry.setAttribute("color", new THREE.BufferAttribute(colours.subarray(0, 3 * count), 3, true));
      this.points = new THREE.Points(geometry, this.material);
      this.points.name = "preview points";
      this.positions = positions.subarray(0, 3 * count);
      this.group.add(this.points);
    }
    const cameras = Array.isArray(message.cameras) ? message.cameras : [];
    if (cameras.length > 0) {
      this.cameras = cameras;
      this.frustums = createFrustums(cameras, frustumDepth(cameras, this.box()), PREVIEW_FRUSTUM_COLOUR);
      this.frustums.name = "preview cameras";
      this.group.add(this.frustums);
    }
  }

  /** The result's points have come: the preview's go. */
  hidePoints() {
    if (!this.points) return;
    this.group.remove(this.points);
    this.points.geometry.dispose();
    this.points = null;
    this.positions = null;
  }

  /** The result's cameras have come: the preview's go. */
  hideCameras() {
    if (!this.frustums) return;
    this.group.remove(this.frustums);
    disposeFrustums(this.frustums);
    this.frustums = null;
    this.cameras = [];
  }

  clear() {
    this.hidePoints();
    this.hideCameras();
    this.message = "";
  }

  /** A box (preview world) around the bulk of its points (2nd to 98th percentile), or null. */
  box() {
    const p = this.positions;
    const n = p ? p.length / 3 : 0;
    if (n === 0) return null;
    const min = new THREE.Vector3();
    const max = new THREE.Vector3();
    const axis = new Float32Array(n);
    for (let a = 0; a < 3; a++) {
      for (let i = 0; i < n; i++) axis[i] = p[3 * i + a];
      axis.sort();
      min.setComponent(a, axis[Math.floor(0.02 * (n - 1))]);
      max.setComponent(a, axis[Math.ceil(0.98 * (n - 1))]);
    }
    return new THREE.Box3(min, max);
  }
}
