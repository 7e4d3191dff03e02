// The point cloud on screen: one THREE.Points per received frame, sharing two materials.
//
// Binary frames stay as they arrived: the uint16 positions and RGB565 colours are vertex
// attributes wrapped on the frame's ArrayBuffer, dequantized on the GPU (object position =
// origin, scale = step) and unpacked in the vertex shader. Each frame is uploaded once; point
// size and the confidence threshold change uniforms and draw ranges, never the buffers.

import * as THREE from "three";
import { frameBounds, samplePositions } from "./frames.js";
import { countAtLeast } from "./protocol.js";

const VERTEX_SHADER = /* glsl */ `
uniform float pointSizePx;   // size in pixels at the reference distance
uniform float referenceDistance;
uniform float pixelRatio;
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
  gl_PointSize = clamp(pointSizePx * pixelRatio * referenceDistance / distance, 1.0, 64.0);
#ifdef RGB565
  float red = floor(rgb565 / 2048.0);
  float green = mod(floor(rgb565 / 32.0), 64.0);
  float blue = mod(rgb565, 32.0);
  vColor = vec3(red / 31.0, green / 63.0, blue / 31.0);
#else
  vColor = rgb;
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

export class PointCloudLayer {
  constructor() {
    this.group = new THREE.Group();
    this.group.name = "points";
    this.uniforms = {
      pointSizePx: { value: 2.0 },
      referenceDistance: { value: 1.0 },
      pixelRatio: { value: 1.0 },
    };
    const shared = { vertexShader: VERTEX_SHADER, fragmentShader: FRAGMENT_SHADER };
    this.quantizedMaterial = new THREE.ShaderMaterial({
      ...shared,
      uniforms: this.uniforms,
      defines: { RGB565: "" },
    });
    this.floatMaterial = new THREE.ShaderMaterial({ ...shared, uniforms: this.uniforms });
    this.frames = [];
    this.threshold = -Infinity;
    this.pointsDrawn = 0;
    this.pointsTotal = 0;
    this.samples = [];
    this.bounds = null; // [min, max] of all frames
  }

  /** Add one decoded frame (see frames.js) to the scene; returns its THREE.Points. */
  add(frame) {
    const geometry = new THREE.BufferGeometry();
    const points = new THREE.Points(geometry, null);
    if (!frame.xyz) {
      // Non-normalized uint16 attributes reach the shader as floats 0..65535.
      geometry.setAttribute("position", new THREE.BufferAttribute(frame.positions, 3));
      geometry.setAttribute("rgb565", new THREE.BufferAttribute(frame.colors, 1));
      points.material = this.quantizedMaterial;
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
      points.material = this.floatMaterial;
      const [min, max] = frameBounds(frame);
      geometry.boundingBox = new THREE.Box3(new THREE.Vector3(...min), new THREE.Vector3(...max));
    }
    geometry.boundingSphere = geometry.boundingBox.getBoundingSphere(new THREE.Sphere());
    points.matrixAutoUpdate = false;
    points.updateMatrix();
    this.group.add(points);
    this.frames.push({ frame, points });
    this.pointsTotal += frame.count;
    this._growBounds(frame);
    this._addSamples(frame);
    this._applyThreshold(this.frames[this.frames.length - 1]);
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
    this.pointsDrawn = 0;
    for (const entry of this.frames) this._applyThreshold(entry);
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
    this.pointsDrawn = 0;
    this.pointsTotal = 0;
  }

  _applyThreshold(entry) {
    const count = countAtLeast(entry.frame, this.threshold);
    entry.points.geometry.setDrawRange(0, count);
    entry.points.visible = count > 0;
    this.pointsDrawn += count;
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
