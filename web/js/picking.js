// What lies under the pointer, found in screen space: the nearest drawn point within a few
// pixels (for measuring) and the camera frustum whose lines or image pass under it (for picking
// a photo). Nothing is read back from the GPU: points are projected here from the frames as
// they arrived (uint16 positions through each object's matrix, so the dequantizing is the
// GPU's own), a few multiplications a point, fast enough for a million of them per click.

import * as THREE from "three";

/** Where a pointer event's client position is, in canvas pixels: {x, y, width, height}. */
function canvasPoint(view, clientX, clientY) {
  const rect = view.renderer.domElement.getBoundingClientRect();
  return { x: clientX - rect.left, y: clientY - rect.top, width: rect.width, height: rect.height };
}

/** The matrix from an object's local coordinates to clip space, for the view's camera now. */
function localToClip(view, object) {
  view.scene.updateMatrixWorld();
  view.camera.updateMatrixWorld();
  return new THREE.Matrix4()
    .multiplyMatrices(view.camera.projectionMatrix, view.camera.matrixWorldInverse)
    .multiply(object.matrixWorld);
}

/**
 * The drawn point nearest the viewer among those within `radiusPx` pixels of the pointer
 * (the one in front is the one seen there), or null. Respects the confidence threshold and
 * the photos hidden (only drawn points count). Returns {position: [x, y, z] in the engine's
 * coordinates, as streamed, viewIndex, pixels: its distance from the pointer}.
 */
export function pickPoint(view, clientX, clientY, radiusPx = 6) {
  const { x, y, width, height } = canvasPoint(view, clientX, clientY);
  if (width === 0 || height === 0) return null;
  // In normalized device coordinates: the pointer and the radius per axis.
  const nx = (2 * x) / width - 1;
  const ny = 1 - (2 * y) / height;
  const rx = (2 * radiusPx) / width;
  const ry = (2 * radiusPx) / height;
  let best = null;
  for (const entry of view.cloud.drawnFrames()) {
    const m = localToClip(view, entry.points).elements; // column-major
    const p = entry.frame.xyz ?? entry.frame.positions;
    for (let i = 0; i < entry.count; i++) {
      const a = p[3 * i];
      const b = p[3 * i + 1];
      const c = p[3 * i + 2];
      const w = m[3] * a + m[7] * b + m[11] * c + m[15];
      if (w <= 0) continue; // behind the viewer
      const dx = (m[0] * a + m[4] * b + m[8] * c + m[12]) / w - nx;
      if (dx > rx || dx < -rx) continue;
      const dy = (m[1] * a + m[5] * b + m[9] * c + m[13]) / w - ny;
      if (dy > ry || dy < -ry) continue;
      const reach = (dx / rx) ** 2 + (dy / ry) ** 2;
      if (reach > 1) continue;
      if (best && w >= best.depth) continue;
      best = { entry, index: i, depth: w, pixels: radiusPx * Math.sqrt(reach) };
    }
  }
  if (!best) return null;
  const p = best.entry.frame.xyz ?? best.entry.frame.positions;
  const local = new THREE.Vector3(p[3 * best.index], p[3 * best.index + 1], p[3 * best.index + 2]);
  // The object's own matrix: frame coordinates to the engine's (origin + q * step).
  const position = local.applyMatrix4(best.entry.points.matrix);
  return { position: position.toArray(), viewIndex: best.entry.frame.viewIndex, pixels: best.pixels };
}

/** Distance in pixels from (x, y) to the segment a-b (each {x, y}). */
function segmentDistance(x, y, a, b) {
  const ux = b.x - a.x;
  const uy = b.y - a.y;
  const length2 = ux * ux + uy * uy;
  const t = length2 > 0 ? Math.max(0, Math.min(1, ((x - a.x) * ux + (y - a.y) * uy) / length2)) : 0;
  return Math.hypot(x - (a.x + t * ux), y - (a.y + t * uy));
}

/** Whether (x, y) is inside the convex polygon `corners` (in order, either way round). */
function inside(x, y, corners) {
  let sign = 0;
  for (let i = 0; i < corners.length; i++) {
    const a = corners[i];
    const b = corners[(i + 1) % corners.length];
    const cross = (b.x - a.x) * (y - a.y) - (b.y - a.y) * (x - a.x);
    if (cross === 0) continue;
    if (sign === 0) sign = Math.sign(cross);
    else if (Math.sign(cross) !== sign) return false;
  }
  return sign !== 0;
}

/**
 * The index of the camera whose frustum is under the pointer: its image rectangle, or one of
 * its lines within `radiusPx` pixels; the nearest to the viewer where several are. Null when
 * none is, or the cameras are hidden. `frustums`: a group made by createFrustums (cameras.js).
 */
export function pickFrustum(view, frustums, clientX, clientY, radiusPx = 8) {
  if (!frustums || !frustums.visible) return null;
  const { x, y, width, height } = canvasPoint(view, clientX, clientY);
  let best = null;
  frustums.children.forEach((lines, index) => {
    const m = localToClip(view, lines);
    const vertices = lines.geometry.getAttribute("position");
    const screen = [];
    for (let v = 0; v < vertices.count; v++) {
      const clip = new THREE.Vector4().fromBufferAttribute(vertices, v).setW(1).applyMatrix4(m);
      screen.push(
        clip.w > 0
          ? { x: ((clip.x / clip.w + 1) / 2) * width, y: ((1 - clip.y / clip.w) / 2) * height, w: clip.w }
          : null,
      );
    }
    let distance = Infinity;
    for (let v = 0; v + 1 < screen.length; v += 2) {
      if (screen[v] && screen[v + 1]) {
        distance = Math.min(distance, segmentDistance(x, y, screen[v], screen[v + 1]));
      }
    }
    // The image rectangle: the far ends of the four apex lines (see frustumGeometry).
    const corners = [screen[1], screen[3], screen[5], screen[7]];
    if (corners.every(Boolean) && inside(x, y, corners)) distance = 0;
    if (distance > radiusPx) return;
    const depth = screen[0]?.w ?? Infinity;
    const closer = !best || distance < best.distance - 1 || (distance <= best.distance + 1 && depth < best.depth);
    if (closer) best = { index, distance, depth };
  });
  return best ? best.index : null;
}
