// Photos checked the moment they are added, before anything is uploaded: files that are not
// images the server takes (told by their first bytes, as the server tells them, never by their
// names), damaged ones (a JPEG cut short, a picture the browser cannot decode in a format it
// decodes), and the same file added twice (its bytes hashed with SHA-256). The sentences follow
// the server's own (docs/protocol.md, "What a photo is refused for").

const FORMAT_LIST = "JPEG, PNG, WebP, TIFF, BMP, HEIC/HEIF";
const FORMAT_CHOICE = "JPEG, PNG, WebP, TIFF, BMP or HEIC/HEIF";
const TRUNCATED = "the file ends before the image does (cut short in a download or a copy?)";

// Formats Chromium, Firefox and Safari all decode: a file of these that fails to decode is damaged.
const BROWSER_DECODES = new Set(["JPEG", "PNG", "WebP", "BMP"]);
// ISO base media "ftyp" brands: HEIC/HEIF stills (taken) and AVIF (refused, as by the server).
const HEIF_BRANDS = new Set(["heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1"]);
const AVIF_BRANDS = new Set(["avif", "avis"]);

const ascii = (bytes, start, length) =>
  String.fromCharCode(...bytes.subarray(start, start + length));

const startsWith = (bytes, signature, at = 0) =>
  signature.every((byte, i) => bytes[at + i] === byte);

/**
 * The format of a file from its first bytes.
 * @param {Uint8Array} bytes the file's bytes (the first 64 are enough)
 * @returns {{name: string, taken: boolean} | null} null when no known image format starts so
 */
export function sniffFormat(bytes) {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return { name: "JPEG", taken: true };
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) {
    return { name: "PNG", taken: true };
  }
  if (ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 4) === "WEBP") {
    return { name: "WebP", taken: true };
  }
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) {
    return { name: "TIFF", taken: true };
  }
  if (ascii(bytes, 0, 2) === "BM" && bytes.length >= 26) return { name: "BMP", taken: true };
  if (ascii(bytes, 4, 4) === "ftyp") {
    const [major, ...compatible] = ftypBrands(bytes);
    // "mif1" is any still image in the container: AVIF says so in its other brands.
    const avif = compatible.some((brand) => AVIF_BRANDS.has(brand));
    if (AVIF_BRANDS.has(major) || (major === "mif1" && avif)) return { name: "AVIF", taken: false };
    if (HEIF_BRANDS.has(major)) return { name: "HEIC/HEIF", taken: true };
  }
  if (ascii(bytes, 0, 6) === "GIF87a" || ascii(bytes, 0, 6) === "GIF89a") {
    return { name: "GIF", taken: false };
  }
  if (startsWith(bytes, [0x00, 0x00, 0x01, 0x00])) return { name: "ICO", taken: false };
  if (startsWith(bytes, [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20])) {
    return { name: "JPEG2000", taken: false };
  }
  if (startsWith(bytes, [0xff, 0x4f, 0xff, 0x51])) return { name: "JPEG2000", taken: false };
  if (/^P[1-6]\s$/.test(ascii(bytes, 0, 3))) return { name: "PPM", taken: false };
  return null;
}

/** The brands of an ISO base media "ftyp" box: the major one first, then the compatible ones. */
function ftypBrands(bytes) {
  const boxSize = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
  const size = Math.min(bytes.length, boxSize);
  const brands = [ascii(bytes, 8, 4)];
  for (let at = 16; at + 4 <= size; at += 4) brands.push(ascii(bytes, at, 4));
  return brands;
}

/**
 * Whether a JPEG's compressed data reaches its end marker. The segments before the first scan
 * are stepped over by their lengths (an EXIF thumbnail holds an end marker of its own), then
 * the marker is looked for in the scans, where a 0xFF byte of data is always followed by 0x00.
 * Data after the marker (a phone's motion-photo video, say) is allowed, as by the server.
 * @param {Uint8Array} bytes the whole file
 * @returns {string | null} what is wrong, or null
 */
export function jpegDamage(bytes) {
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return "the image data is damaged (its structure is broken)";
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at += 1; // a fill byte
    } else if (marker === 0xd9) {
      return "the file holds no picture (its end marker comes first)";
    } else if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2;
    } else {
      const length = (bytes[at + 2] << 8) | bytes[at + 3];
      if (marker === 0xda) return hasEndMarker(bytes, at + 2 + length) ? null : TRUNCATED;
      at += 2 + length;
    }
  }
  return TRUNCATED;
}

function hasEndMarker(bytes, from) {
  for (let at = bytes.indexOf(0xff, from); at >= 0; at = bytes.indexOf(0xff, at + 1)) {
    if (bytes[at + 1] === 0xd9) return true;
  }
  return false;
}

/** Whether the browser can decode `file` (some formats only; see BROWSER_DECODES). */
async function decodes(file) {
  try {
    const bitmap = await createImageBitmap(file, { resizeWidth: 32, resizeQuality: "low" });
    bitmap.close();
    return true;
  } catch {
    return false;
  }
}

async function digestOf(bytes) {
  if (!globalThis.crypto?.subtle) return fallbackDigest(bytes);
  const hash = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * crypto.subtle exists in secure contexts only, and a server on the local network is reached
 * over plain http: there, the size and two 32-bit FNV-1a hashes (different seeds) stand in.
 */
function fallbackDigest(bytes) {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < bytes.length; i++) {
    a = Math.imul(a ^ bytes[i], 0x01000193);
    b = Math.imul(b ^ bytes[i], 0x01000193) ^ (b >>> 15);
  }
  return `fnv-${bytes.length}-${(a >>> 0).toString(16)}-${(b >>> 0).toString(16)}`;
}

/**
 * Check one file as a photo.
 * @param {File} file
 * @returns {Promise<{problem: string | null, format: string | null, digest: string}>}
 *   problem: a sentence without the file's name, or null when the server should take it;
 *   digest: the hex SHA-256 of its bytes (equal for equal files; see fallbackDigest)
 */
export async function checkPhoto(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const digest = await digestOf(bytes);
  const result = (problem, format = null) => ({ problem, format, digest });
  if (bytes.length === 0) return result("the file is empty");
  const format = sniffFormat(bytes);
  if (format === null) return result(`not an image in a supported format (${FORMAT_LIST})`);
  if (!format.taken) {
    return result(
      `the file is an image in the ${format.name} format; photos must be ${FORMAT_CHOICE}`,
      format.name,
    );
  }
  if (format.name === "JPEG") {
    const damage = jpegDamage(bytes);
    if (damage) return result(damage, format.name);
  }
  if (BROWSER_DECODES.has(format.name) && !(await decodes(file))) {
    return result("the image cannot be read: the file is damaged or truncated", format.name);
  }
  return result(null, format.name);
}

/**
 * A file or a slice of one as a data URL ("data:<type>;base64,..."), the form image_data and
 * video_data carry.
 * @param {Blob} blob
 * @returns {Promise<string>}
 */
export function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(/** @type {string} */ (reader.result)));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(blob);
  });
}
