// The point cloud on screen: one THREE.Points per received frame, sharing a few materials.
//
// Binary frames stay as they arrived: the uint16 positions and RGB565 colours are vertex
// attributes wrapped on the frame's ArrayBuffer, dequantized on the GPU (object position =
// origin, scale = step) and unpacked in the vertex shader. Each frame is uploaded once; point
// size, the confidence threshold, the photo picked and the photos hidden change uniforms, draw
// ranges, materials and visibility, never the buffers.

import * as THREE from "three";
import { frameBounds, samplePositions } from "./frames.js";
import { countAtLeast } from "./protocol.js";

const VERTEX_SHADER = /* glsl */ `
uniform float pointSizePx;   // size in pixels at the reference distance
uniform float referenceDistance;
uniform float pixelRatio;
uniform float sizeFactor;    // the picked photo's points are drawn larger
#ifdef RGB565
attribute float rgb565;
#else
attribute vec3 rgb;
#endif
varying vec3 vColor;

void main() {
  vec4 viewPosition = modelViewMatrix * vec4(position, 1.0);
  gl_Position = projectionMatrix * viewPosition;
  float distance = max(-viewPosition.z, 1e-6);
  gl_PointSize = clamp(sizeFactor * pointSizePx * pixelRatio * referenceDistance / distance, 1.0, 64.0);
#ifdef RGB565
  float red = floor(rgb565 / 2048.0);
  float green = mod(floor(rgb565 / 32.0), 64.0);
  float blue = mod(rgb565, 32.0);
  vColor = vec3(red / 31.0, green / 63.0, blue / 31.0);
#else
  vColor = rgb;
#endif
#ifdef DIM
  // Points of the photos not picked: grey and dark, so that the picked photo's stand out.
  vColor = 0.35 * mix(vec3(dot(vColor, vec3(0.3, 0.59, 0.11))), vColor, 0.3);
#endif
}
`;

const FRAGMENT_SHADER = /* glsl */ `
varying vec3 vColor;

void main() {
  vec2 fromCentre = 2.0 * gl_PointCoord - 1.0;
  if (dot(fromCentre, fromCentre) > 1.0) discard;
  gl_FragColor = vec4(vColor, 1.0);
}
`;

const SAMPLES_PER_FRAME = 512;
const MAX_SAMPLES = 30000;
// How a frame's points look: as sent, dimmed (another photo is picked), or picked.
const LOOKS = { plain: { sizeFactor: 1 }, dim: { sizeFactor: 1 }, picked: { sizeFactor: 1.6 } };

export class PointCloudLayer {
  constructor() {
    this.group = new THREE.Group();
    this.group.name = "points";
    this.uniforms = {
      pointSizePx: { value: 2.0 },
      referenceDistance: { value: 1.0 },
      pixelRatio: { value: 1.0 },
    };
    this.materials = new Map(); // "quantized plain", "float dim", ...: made when first needed
    this.quantizedMaterial = this._material(true, "plain");
    this.floatMaterial = this._material(false, "plain");
    this.frames = [];
    this.threshold = -Infinity;
    this.pointsKept = 0; // points at or above the threshold, whichever photos are hidden
    this.pointsDrawn = 0; // of those, the points of the photos shown
    this.pointsTotal = 0;
    this.pickedView = null; // the view index whose points stand out, or null
    this.hiddenViews = new Set(); // view indices whose points are not drawn
    this.samples = [];
    this.bounds = null; // [min, max] of all frames
    this._levels = null; // every frame's confidence table merged, made when a share is asked
  }

  /** Add one decoded frame (see frames.js) to the scene; returns its THREE.Points. */
  add(frame) {
    const geometry = new THREE.BufferGeometry();
    const points = new THREE.Points(geometry, null);
    if (!frame.xyz) {
      // Non-normalized uint16 attributes reach the shader as floats 0..65535.
      geometry.setAttribute("position", new THREE.BufferAttribute(frame.positions, 3));
      geometry.setAttribute("rgb565", new THREE.BufferAttribute(frame.colors, 1));
      points.position.fromArray(frame.origin);
      points.scale.fromArray(frame.step);
      // The box is known from the header: spare three.js a pass over the points.
      geometry.boundingBox = new THREE.Box3(
        new THREE.Vector3(0, 0, 0),
        new THREE.Vector3(65535, 65535, 65535),
      );
    } else {
      geometry.setAttribute("position", new THREE.BufferAttribute(frame.xyz, 3));
      geometry.setAttribute("rgb", new THREE.BufferAttribute(frame.rgb, 3, true));
      const [min, max] = frameBounds(frame);
      geometry.boundingBox = new THREE.Box3(new THREE.Vector3(...min), new THREE.Vector3(...max));
    }
    geometry.boundingSphere = geometry.boundingBox.getBoundingSphere(new THREE.Sphere());
    points.matrixAutoUpdate = false;
    points.updateMatrix();
    this.group.add(points);
    const entry = { frame, points, count: 0 };
    this.frames.push(entry);
    this.pointsTotal += frame.count;
    this._levels = null;
    this._growBounds(frame);
    this._addSamples(frame);
    this._applyThreshold(entry);
    this._applyLook(entry);
    return points;
  }

  /**
   * One point at the origin per material, to draw once before the first frame arrives: shaders
   * are compiled (and software renderers build their pipelines) at the first draw, which can
   * take a good part of a second.
   */
  placeholders() {
    const quantized = new THREE.BufferGeometry();
    quantized.setAttribute("position", new THREE.BufferAttribute(new Uint16Array(3), 3));
    quantized.setAttribute("rgb565", new THREE.BufferAttribute(new Uint16Array(1), 1));
    const float = new THREE.BufferGeometry();
    float.setAttribute("position", new THREE.BufferAttribute(new Float32Array(3), 3));
    float.setAttribute("rgb", new THREE.BufferAttribute(new Uint8Array(3), 3, true));
    return [
      new THREE.Points(quantized, this.quantizedMaterial),
      new THREE.Points(float, this.floatMaterial),
    ];
  }

  /** Draw only points with confidence >= threshold (frames without confidence: all). */
  setThreshold(threshold) {
    this.threshold = threshold;
    this._recount();
  }

  /**
   * The threshold that keeps the most confident `share` (0..1) of the points, as draw ranges
   * can: {threshold, kept}. Points that tie at the threshold are all kept, so `kept` (points)
   * may be more than the share asked; a share of 1 or more keeps everything (-Infinity).
   */
  thresholdForShare(share) {
    if (share >= 1 || this.pointsTotal === 0) return { threshold: -Infinity, kept: this.pointsTotal };
    const { values, keptAtLeast, always } = this._mergedLevels();
    const wanted = share * this.pointsTotal;
    // values descend; keptAtLeast[i]: points drawn with the threshold values[i], ties included.
    let low = 0;
    let high = values.length - 1;
    if (high < 0) return { threshold: -Infinity, kept: this.pointsTotal };
    while (low < high) {
      const middle = (low + high) >> 1;
      if (keptAtLeast[middle] >= wanted) high = middle;
      else low = middle + 1;
    }
    return { threshold: values[low], kept: keptAtLeast[low] + always };
  }

  /** Make the points of view `index` stand out (null: no photo picked). */
  setPickedView(index) {
    this.pickedView = index;
    for (const entry of this.frames) this._applyLook(entry);
  }

  /** Hide the points of the views in `indices` (an iterable of view indices). */
  setHiddenViews(indices) {
    this.hiddenViews = new Set(indices);
    this._recount();
  }

  /** The view indices of the frames received, each once, ascending. */
  viewIndices() {
    return [...new Set(this.frames.map(({ frame }) => frame.viewIndex))].sort((a, b) => a - b);
  }

  setPointSize(pixels) {
    this.uniforms.pointSizePx.value = pixels;
  }

  /** The smallest and largest confidence in the received frames, or null when none has any. */
  confidenceRange() {
    let low = Infinity;
    let high = -Infinity;
    for (const { frame } of this.frames) {
      const table = frame.confidenceTable;
      if (table.length === 0 || frame.count === 0) continue;
      high = Math.max(high, table[0]);
      low = Math.min(low, table[table.length - 1]);
    }
    return high >= low ? [low, high] : null;
  }

  /** A box around the bulk of the cloud (2nd to 98th percentile per axis), or null. */
  robustBox() {
    const samples = this.samples;
    const n = samples.length / 3;
    if (n === 0) return null;
    const min = new THREE.Vector3();
    const max = new THREE.Vector3();
    const axis = new Float32Array(n);
    for (let a = 0; a < 3; a++) {
      for (let i = 0; i < n; i++) axis[i] = samples[3 * i + a];
      axis.sort();
      min.setComponent(a, axis[Math.floor(0.02 * (n - 1))]);
      max.setComponent(a, axis[Math.ceil(0.98 * (n - 1))]);
    }
    return new THREE.Box3(min, max);
  }

  clear() {
    for (const { points } of this.frames) {
      points.geometry.dispose();
      this.group.remove(points);
    }
    this.frames = [];
    this.samples = [];
    this.bounds = null;
    this._levels = null;
    this.pointsKept = 0;
    this.pointsDrawn = 0;
    this.pointsTotal = 0;
    this.pickedView = null;
    this.hiddenViews = new Set();
  }

  /** The drawn points of each frame: {frame, points (its THREE.Points), count}, for picking. */
  drawnFrames() {
    return this.frames.filter((entry) => entry.points.visible);
  }

  _recount() {
    this.pointsKept = 0;
    this.pointsDrawn = 0;
    for (const entry of this.frames) this._applyThreshold(entry);
  }

  _applyThreshold(entry) {
    const count = countAtLeast(entry.frame, this.threshold);
    const shown = !this.hiddenViews.has(entry.frame.viewIndex);
    entry.count = count;
    entry.points.geometry.setDrawRange(0, count);
    entry.points.visible = shown && count > 0;
    this.pointsKept += count;
    if (shown) this.pointsDrawn += count;
  }

  _applyLook(entry) {
    let look = "plain";
    if (this.pickedView !== null) look = entry.frame.viewIndex === this.pickedView ? "picked" : "dim";
    entry.points.material = this._material(!entry.frame.xyz, look);
  }

  /** One material per kind of frame and look; they share the size uniforms. */
  _material(quantized, look) {
    const key = `${quantized ? "quantized" : "float"} ${look}`;
    let material = this.materials.get(key);
    if (!material) {
      const defines = {};
      if (quantized) defines.RGB565 = "";
      if (look === "dim") defines.DIM = "";
      material = new THREE.ShaderMaterial({
        vertexShader: VERTEX_SHADER,
        fragmentShader: FRAGMENT_SHADER,
        uniforms: { ...this.uniforms, sizeFactor: { value: LOOKS[look].sizeFactor } },
        defines,
      });
      this.materials.set(key, material);
    }
    return material;
  }

  /**
   * Every frame's confidence table as one list: the distinct values, descending, and for each
   * the points a threshold at that value keeps (countAtLeast summed over the frames), plus the
   * points of frames without confidence, which are always drawn.
   */
  _mergedLevels() {
    if (this._levels) return this._levels;
    const entries = [];
    let always = 0;
    for (const { frame } of this.frames) {
      const table = frame.confidenceTable;
      const levels = table.length;
      if (levels === 0) {
        always += frame.count;
        continue;
      }
      // Level k stands for the points from floor(k*N/L) up to the next level's first point.
      for (let k = 0; k < levels; k++) {
        const weight = Math.floor(((k + 1) * frame.count) / levels) - Math.floor((k * frame.count) / levels);
        entries.push([table[k], weight]);
      }
    }
    entries.sort((a, b) => b[0] - a[0]);
    const values = [];
    const keptAtLeast = [];
    let kept = 0;
    for (const [value, weight] of entries) {
      kept += weight;
      if (values.length > 0 && values[values.length - 1] === value) {
        keptAtLeast[keptAtLeast.length - 1] = kept;
      } else {
        values.push(value);
        keptAtLeast.push(kept);
      }
    }
    this._levels = { values, keptAtLeast, always };
    return this._levels;
  }

  _growBounds(frame) {
    if (frame.count === 0) return;
    const [min, max] = frameBounds(frame);
    if (!this.bounds) {
      this.bounds = [min, max];
      return;
    }
    for (let a = 0; a < 3; a++) {
      this.bounds[0][a] = Math.min(this.bounds[0][a], min[a]);
      this.bounds[1][a] = Math.max(this.bounds[1][a], max[a]);
    }
  }

  _addSamples(frame) {
    const fresh = samplePositions(frame, SAMPLES_PER_FRAME);
    for (const value of fresh) this.samples.push(value);
    if (this.samples.length > 3 * MAX_SAMPLES) {
      // Keep every other sample point: old frames stay represented, memory stays bounded.
      const kept = [];
      for (let i = 0; i < this.samples.length; i += 6) kept.push(...this.samples.slice(i, i + 3));
      this.samples = kept;
    }
  }
}
