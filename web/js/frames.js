// Point data in the viewer's hands. Binary frames are decoded by the generated protocol module
// (typed arrays wrapped on the received buffer, no copy); JSON "points" messages, the fallback,
// become frames of float positions and byte colours here. Both kinds share these fields:
//   count, viewIndex, confidenceTable (empty: no confidence), byteLength (size on the wire)
// plus origin, step, positions (uint16 q) and colors (RGB565) for binary frames, or
// xyz (float32) and rgb (uint8) for JSON ones.

import { decodePointFrame } from "./protocol.js";

const NO_CONFIDENCE = new Float32Array(0);

/** Turn the `data` of a JSON "points" message into a frame; its points are always drawn. */
export function frameFromJsonPoints(points, byteLength = 0) {
  const count = points.length;
  const xyz = new Float32Array(3 * count);
  const rgb = new Uint8Array(3 * count);
  for (let i = 0; i < count; i++) {
    const p = points[i];
    xyz[3 * i] = p.x;
    xyz[3 * i + 1] = p.y;
    xyz[3 * i + 2] = p.z;
    rgb[3 * i] = p.r;
    rgb[3 * i + 1] = p.g;
    rgb[3 * i + 2] = p.b;
  }
  return { count, viewIndex: -1, confidenceTable: NO_CONFIDENCE, xyz, rgb, byteLength };
}

/** The frames of GET /api/jobs/{id}/points?format=binary, laid end to end in one buffer. */
export function decodeFrames(buffer) {
  const frames = [];
  for (let offset = 0; offset < buffer.byteLength; ) {
    const frame = decodePointFrame(buffer, offset);
    frames.push(frame);
    offset += frame.byteLength;
  }
  return frames;
}

/** Corners of a box holding every point of a frame: [min, max], each [x, y, z]. */
export function frameBounds(frame) {
  if (!frame.xyz) {
    const { origin, step } = frame;
    return [
      [origin[0], origin[1], origin[2]],
      [origin[0] + 65535 * step[0], origin[1] + 65535 * step[1], origin[2] + 65535 * step[2]],
    ];
  }
  const min = [Infinity, Infinity, Infinity];
  const max = [-Infinity, -Infinity, -Infinity];
  const p = frame.xyz;
  for (let i = 0; i < p.length; i += 3) {
    for (let a = 0; a < 3; a++) {
      const v = p[i + a];
      if (v < min[a]) min[a] = v;
      if (v > max[a]) max[a] = v;
    }
  }
  return [min, max];
}

/**
 * Up to `limit` positions (world units, x y z flat) spread evenly over a frame, for fitting
 * the view to the bulk of the cloud without a pass over every point.
 */
export function samplePositions(frame, limit) {
  const count = frame.count;
  const stride = Math.max(1, Math.floor(count / limit));
  const out = [];
  for (let i = 0; i < count && out.length < 3 * limit; i += stride) {
    if (frame.xyz) {
      out.push(frame.xyz[3 * i], frame.xyz[3 * i + 1], frame.xyz[3 * i + 2]);
    } else {
      const q = frame.positions;
      for (let a = 0; a < 3; a++) out.push(frame.origin[a] + q[3 * i + a] * frame.step[a]);
    }
  }
  return out;
}
