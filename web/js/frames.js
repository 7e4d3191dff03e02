// Point data as it arrives from the server, in the two shapes the protocol allows:
// binary frames ("AEP1", docs/protocol.md) and JSON "points" messages (the fallback).
// Decoding wraps typed arrays on the received buffer; nothing here copies point data.

const MAGIC = 0x31504541; // "AEP1" read as a little-endian uint32
const HEADER_BYTES = 40;

/**
 * @typedef {object} PointFrame
 * @property {number} count            points in the frame
 * @property {number} viewIndex        the camera the points belong to (-1: unknown)
 * @property {Float32Array} origin     min corner; position = origin + q * step
 * @property {Float32Array} step       per axis
 * @property {Float32Array|null} confTable  confTable[k] = confidence of point floor(k*N/L), descending
 * @property {Uint16Array|null} quantized   x,y,z interleaved, 3N (binary frames)
 * @property {Uint16Array|null} rgb565      N (binary frames)
 * @property {Float32Array|null} positions  x,y,z interleaved, 3N (JSON messages)
 * @property {Uint8Array|null} rgb          r,g,b interleaved, 3N (JSON messages)
 * @property {number} bytes             size on the wire
 */

/**
 * Decode the binary point frame that starts at `byteOffset` of `buffer` (a whole WebSocket
 * message, or one of the frames of GET /api/jobs/{id}/points). Throws an Error saying what is
 * wrong with it.
 */
export function decodePointFrame(buffer, byteOffset = 0, exactLength = true) {
  if (!(buffer instanceof ArrayBuffer)) throw new Error("a point frame must be an ArrayBuffer");
  const available = buffer.byteLength - byteOffset;
  if (available < HEADER_BYTES) {
    throw new Error(`point frame of ${available} bytes is shorter than its header`);
  }
  const header = new DataView(buffer, byteOffset, HEADER_BYTES);
  if (header.getUint32(0, true) !== MAGIC) throw new Error("point frame does not start with AEP1");
  const count = header.getUint32(4, true);
  const viewIndex = header.getUint32(8, true);
  const levels = header.getUint32(12, true);
  const bytes = HEADER_BYTES + 4 * levels + 8 * count;
  if (exactLength ? available !== bytes : available < bytes) {
    throw new Error(
      `point frame of ${count} points and ${levels} levels should be ${bytes} bytes, ` +
        `got ${available}`,
    );
  }
  const positionsAt = byteOffset + HEADER_BYTES + 4 * levels;
  return {
    count,
    viewIndex,
    origin: new Float32Array(buffer, byteOffset + 16, 3),
    step: new Float32Array(buffer, byteOffset + 28, 3),
    confTable: levels > 0 ? new Float32Array(buffer, byteOffset + HEADER_BYTES, levels) : null,
    quantized: new Uint16Array(buffer, positionsAt, 3 * count),
    rgb565: new Uint16Array(buffer, positionsAt + 6 * count, count),
    positions: null,
    rgb: null,
    bytes,
  };
}

/** Decode frames laid end to end (GET /api/jobs/{id}/points?format=binary). */
export function decodeConcatenatedFrames(buffer) {
  const frames = [];
  for (let offset = 0; offset < buffer.byteLength; ) {
    const frame = decodePointFrame(buffer, offset, false);
    frames.push(frame);
    offset += frame.bytes;
  }
  return frames;
}

/** Turn the `data` of a JSON "points" message into a frame (no confidence: always drawn). */
export function frameFromJsonPoints(points, bytes = 0) {
  const count = points.length;
  const positions = new Float32Array(3 * count);
  const rgb = new Uint8Array(3 * count);
  for (let i = 0; i < count; i++) {
    const p = points[i];
    positions[3 * i] = p.x;
    positions[3 * i + 1] = p.y;
    positions[3 * i + 2] = p.z;
    rgb[3 * i] = p.r;
    rgb[3 * i + 1] = p.g;
    rgb[3 * i + 2] = p.b;
  }
  return {
    count,
    viewIndex: -1,
    origin: null,
    step: null,
    confTable: null,
    quantized: null,
    rgb565: null,
    positions,
    rgb,
    bytes,
  };
}

/**
 * How many leading points of a frame have confidence >= threshold. Frames are sorted by
 * confidence, so this prefix is the frame's draw range. Resolution: one table level (N / L
 * points); the count errs on the side of drawing, never hides a point that passes.
 */
export function countAboveThreshold(frame, threshold) {
  const table = frame.confTable;
  if (!table || !(threshold > -Infinity)) return frame.count;
  const levels = table.length;
  for (let k = 0; k < levels; k++) {
    if (table[k] < threshold) return Math.floor((k * frame.count) / levels);
  }
  return frame.count;
}

/** Corners of the box that holds every point of a frame: [min, max], each [x, y, z]. */
export function frameBounds(frame) {
  if (frame.quantized) {
    const { origin, step } = frame;
    return [
      [origin[0], origin[1], origin[2]],
      [origin[0] + 65535 * step[0], origin[1] + 65535 * step[1], origin[2] + 65535 * step[2]],
    ];
  }
  const min = [Infinity, Infinity, Infinity];
  const max = [-Infinity, -Infinity, -Infinity];
  const p = frame.positions;
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
 * Up to `limit` positions (world units) spread evenly over a frame's most confident points,
 * for fitting the view to the cloud without being thrown off by a few far outliers.
 */
export function samplePositions(frame, limit) {
  const count = frame.count;
  const stride = Math.max(1, Math.floor(count / limit));
  const out = [];
  for (let i = 0; i < count && out.length < 3 * limit; i += stride) {
    if (frame.quantized) {
      const q = frame.quantized;
      for (let a = 0; a < 3; a++) out.push(frame.origin[a] + q[3 * i + a] * frame.step[a]);
    } else {
      const p = frame.positions;
      out.push(p[3 * i], p[3 * i + 1], p[3 * i + 2]);
    }
  }
  return out;
}
