// @ts-check
// Videos among the photos (feature "video", docs/protocol.md "Videos"): told by their first
// bytes as the server tells them, shown as one tile (a frame of the video where the browser may
// and can decode it, a video card otherwise), and sent in pieces ("video_data"). The server
// chooses the frames and answers each like a photo ("image_received"), then sums up in
// "video_received"; the frames count as photos in "upload_complete".

import { readAsDataUrl, sniffFormat } from "./checks.js";

const MIB = 1024 * 1024;
const PIECE_BYTES = 4 * MIB; // of the file in one message (base64 makes it 5.3 MiB)
const SAMPLE_BYTES = MIB; // hashed at each end of a video to tell the same video added twice
const STILL_WIDTH = 160; // pixels of the frame shown on a video's tile
const STILL_WAIT_MS = 8000; // for the browser to open the video and seek in it
const LOST = "the connection to the server was lost";

/** The MIME type of each container the server takes. */
export const VIDEO_TYPES = Object.freeze({
  MP4: "video/mp4",
  MOV: "video/quicktime",
  WebM: "video/webm",
});
const NAME_HINT = /\.(mp4|m4v|mov|qt|webm)$/i;

const ascii = (bytes, start, length) =>
  String.fromCharCode(...bytes.subarray(start, start + length));

/**
 * The container of a video from its first bytes, as the server tells it (aetherscan.video
 * sniff_video): an ISO "ftyp" box at offset 4 (MOV when its brand is "qt  "), an old
 * QuickTime file's first box, or the EBML header of Matroska/WebM. HEIC/HEIF and AVIF stills
 * have an "ftyp" box too: they are photos (checks.js).
 * @param {Uint8Array} bytes the file's first bytes (16 are enough)
 * @returns {"MP4" | "MOV" | "WebM" | null}
 */
export function sniffVideo(bytes) {
  if (sniffFormat(bytes) !== null) return null; // an image format, taken or not
  const box = bytes.length >= 8 ? ascii(bytes, 4, 4) : "";
  if (box === "ftyp" && bytes.length >= 12) return ascii(bytes, 8, 4) === "qt  " ? "MOV" : "MP4";
  if (["moov", "mdat", "wide", "free"].includes(box)) return "MOV";
  if (bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) {
    return "WebM";
  }
  return null;
}

/**
 * Whether a file picked or dropped looks like a video before its bytes are read (its type or
 * its name), so that its tile is a video's from the start; the check settles it.
 * @param {File} file
 */
export function looksLikeVideo(file) {
  return file.type.startsWith("video/") || NAME_HINT.test(file.name ?? "");
}

/**
 * Check a file whose first bytes say it is a video. The server decides what a video holds
 * (codecs, length): here only an empty file is refused. The digest stands for its bytes without
 * reading a big file whole: its size and the SHA-256 of its first and last mebibyte.
 * @param {File} file
 * @param {"MP4" | "MOV" | "WebM"} format what sniffVideo said
 * @returns {Promise<{problem: string | null, format: string, digest: string | null}>}
 */
export async function checkVideo(file, format) {
  if (file.size === 0) return { problem: "the file is empty", format, digest: null };
  const head = await file.slice(0, SAMPLE_BYTES).arrayBuffer();
  const tail = await file.slice(Math.max(SAMPLE_BYTES, file.size - SAMPLE_BYTES)).arrayBuffer();
  const sample = new Uint8Array(head.byteLength + tail.byteLength);
  sample.set(new Uint8Array(head), 0);
  sample.set(new Uint8Array(tail), head.byteLength);
  return { problem: null, format, digest: `video-${file.size}-${await hexDigest(sample)}` };
}

async function hexDigest(bytes) {
  if (!globalThis.crypto?.subtle) {
    let hash = 0x811c9dc5; // FNV-1a where crypto.subtle is missing (plain http off localhost)
    for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
    return `fnv-${(hash >>> 0).toString(16)}`;
  }
  const hash = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- the tile

/**
 * Whether a Content-Security-Policy (the header's value; several policies comma-separated)
 * lets a <video> load a blob: URL: its media-src, or its default-src where it has none.
 * @param {string | null} policy
 */
export function allowsBlobMedia(policy) {
  if (!policy) return true;
  return policy.split(",").every((one) => {
    const directives = new Map();
    for (const directive of one.split(";")) {
      const [name, ...sources] = directive.trim().split(/\s+/);
      if (name) directives.set(name.toLowerCase(), sources.map((s) => s.toLowerCase()));
    }
    const sources = directives.get("media-src") ?? directives.get("default-src");
    return sources === undefined || sources.includes("blob:");
  });
}

/** @type {Promise<boolean> | null} */
let blobMedia = null;

/**
 * Whether this page may play a video from a blob: URL, asked once of the page's own headers: a
 * <video> its policy forbids only makes the browser log a violation.
 * @returns {Promise<boolean>}
 */
function blobMediaAllowed() {
  blobMedia ??= fetch(location.pathname, { method: "HEAD", cache: "no-store" })
    .then((response) => allowsBlobMedia(response.headers.get("content-security-policy")))
    .catch(() => false);
  return blobMedia;
}

/**
 * Resolves once `target` fires `event`; rejects on its "error" or after `ms`.
 * @param {EventTarget} target
 * @param {string} event
 * @param {number} ms
 */
function once(target, event, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(reject, new Error(`no ${event} within ${ms} ms`)), ms);
    const onEvent = () => done(resolve, null);
    const onError = () => done(reject, new Error("the video cannot be decoded here"));
    const done = (settle, value) => {
      clearTimeout(timer);
      target.removeEventListener(event, onEvent);
      target.removeEventListener("error", onError);
      settle(value);
    };
    target.addEventListener(event, onEvent);
    target.addEventListener("error", onError);
  });
}

/**
 * A frame of the video (a tenth in, at most 1 s) as a JPEG object URL, with the video's length;
 * null where the page may not play videos from files or the browser cannot decode this one.
 * @param {File} file
 * @param {string} type its MIME type
 * @returns {Promise<{url: string, duration: number} | null>}
 */
export async function videoStill(file, type) {
  if (!(await blobMediaAllowed())) return null;
  const video = document.createElement("video");
  if (video.canPlayType(type) === "") return null;
  const source = URL.createObjectURL(file);
  try {
    video.muted = true;
    video.preload = "auto";
    video.src = source;
    await once(video, "loadeddata", STILL_WAIT_MS);
    const duration = Number.isFinite(video.duration) ? video.duration : 0;
    video.currentTime = Math.min(1, duration / 10);
    await once(video, "seeked", STILL_WAIT_MS);
    if (video.videoWidth === 0) return null;
    const canvas = document.createElement("canvas");
    canvas.width = STILL_WIDTH;
    canvas.height = Math.max(1, Math.round((STILL_WIDTH * video.videoHeight) / video.videoWidth));
    canvas.getContext("2d")?.drawImage(video, 0, 0, canvas.width, canvas.height);
    /** @type {Blob | null} */
    const still = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    return still ? { url: URL.createObjectURL(still), duration } : null;
  } catch {
    return null;
  } finally {
    video.removeAttribute("src");
    URL.revokeObjectURL(source);
  }
}

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** "0:08", "12:30": a video's length. */
function clockTime(seconds) {
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/**
 * The picture part of a video's tile: a card with a play mark, its format and size, replaced
 * by a frame of it (and its length) once the browser has one.
 * @param {HTMLElement} preview the tile's .preview element
 * @param {any} item the video's entry in the photo list (file, format, mime)
 * @param {(url: string) => void} onStill called with the frame's object URL (to revoke it later)
 */
export function showVideoPreview(preview, item, onStill) {
  preview.classList.add("video-card");
  const mark = document.createElement("span");
  mark.className = "play";
  mark.setAttribute("aria-hidden", "true");
  const kind = document.createElement("span");
  kind.className = "video-kind";
  kind.textContent = item.format ? `${item.format} video` : "video";
  const size = document.createElement("span");
  size.className = "video-size";
  size.textContent = item.file ? megabytes(item.file.size) : "";
  preview.replaceChildren(mark, kind, size);
  if (!item.file) return;
  videoStill(item.file, item.mime ?? item.file.type).then((still) => {
    if (!still) return;
    onStill(still.url);
    if (!preview.isConnected) return;
    const image = document.createElement("img");
    image.src = still.url;
    image.alt = `${item.name}: a frame`;
    preview.classList.add("has-still");
    preview.replaceChildren(image, mark);
    if (still.duration > 0) {
      const length = document.createElement("span");
      length.className = "video-length";
      length.textContent = clockTime(still.duration);
      preview.append(length);
    }
  });
}

/**
 * What a video's tile says under its name, by its status (photos.js setStatus).
 * @param {any} item the video's entry in the photo list
 * @param {string} status
 */
export function videoStatusText(item, status) {
  const size = item.file?.size ?? 0;
  const frames = item.frames?.length ?? 0;
  switch (status) {
    case "checking":
      return "checking…";
    case "ready":
      return size > 0 ? `video, ${megabytes(size)}` : "video";
    case "reading":
    case "sending":
      return `uploading… ${megabytes(item.sentBytes ?? 0)} of ${megabytes(size)}`;
    case "sent":
      return `choosing frames… ${frames > 0 ? frames : ""}`.trim();
    case "saved":
      return `${plural(frames, "frame")} taken`;
    case "placed":
      return `${item.placedFrames ?? 0} of ${plural(frames, "frame")} placed`;
    case "refused":
      return "refused";
    case "excluded":
      return "left out";
    default:
      return status;
  }
}

/**
 * The sentence beside a video's tile: the reason given where it was left out or refused, else
 * what becomes of it.
 * @param {any} item
 * @param {string} status
 * @param {string} message
 */
export function videoSentence(item, status, message) {
  if (message) return message;
  const frames = item.frames?.length ?? 0;
  if (status === "saved" || status === "placed") {
    const length = item.duration > 0 ? ` of its ${item.duration.toFixed(1)} s` : "";
    return `The server took ${plural(frames, "frame")}${length}; each counts as a photo.`;
  }
  if (status === "sent") return "Uploaded: the server is choosing sharp frames from it…";
  return "Video: frames are chosen by the server (sharp ones, spaced by how the view changes).";
}

/**
 * "3 photos", "1 photo and 1 video", "2 videos": what is to be reconstructed.
 * @param {number} photos
 * @param {number} videos
 */
export function filesInWords(photos, videos) {
  if (videos === 0) return plural(photos, "photo");
  if (photos === 0) return plural(videos, "video");
  return `${plural(photos, "photo")} and ${plural(videos, "video")}`;
}

/**
 * A sentence of the server about a file, starting with the file's name: the server names a
 * video's problems by its stem ("clip: ..." for clip.mp4).
 * @param {string} name
 * @param {string} text
 */
export function namedSentence(name, text) {
  if (text.includes(name)) return text;
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const said = text.startsWith(`${stem}: `) ? text.slice(stem.length + 2) : text;
  return `${name}: ${said}`;
}

// ---------------------------------------------------------------- sending

/**
 * How many bytes of the file go in one piece: 4 MiB, less where the server's max_message_mb
 * (MiB, base64 and all) is smaller. `override` (kB; the page's ?video_piece_kb=) makes small
 * pieces for tests.
 * @param {number | undefined} maxMessageMB
 * @param {string | null} [override]
 */
export function pieceBytes(maxMessageMB, override = null) {
  const asked = Number(override) * 1024;
  if (asked >= 3) return Math.floor(asked / 3) * 3;
  const limit = maxMessageMB ? ((maxMessageMB * MIB - 1024) * 3) / 4 : Infinity;
  return Math.max(3, Math.floor(Math.min(PIECE_BYTES, limit) / 3) * 3);
}

/**
 * One video sent in pieces, in order, each after the one before has left the browser; then
 * waited for: its frames (frame()), then video_received (received()) or an error (refused()).
 * After a refusal the server drops the video's later pieces, so they are not sent: an empty
 * last piece ends the video instead.
 */
export class VideoUpload {
  /**
   * @param {any} connection the page's Connection
   * @param {any} item the video's entry in the photo list (file, name, mime)
   * @param {number} pieceBytes
   * @param {() => void} onChange called as bytes go out and frames come back
   */
  constructor(connection, item, pieceBytes, onChange) {
    this.connection = connection;
    this.item = item;
    this.pieceBytes = pieceBytes;
    this.onChange = onChange;
    this.phase = "sending"; // sending | choosing | done | refused | aborted
    this.sentBytes = 0;
    this.piecesSent = 0;
    this.lastSent = false;
    /** @type {string[]} */
    this.frames = []; // the labels of the frames the server took
    /** @type {string[]} */
    this.notes = [];
    this.duration = 0;
    this.refusal = "";
    /** @type {() => void} */
    this._settle = () => {};
    this.answer = new Promise((resolve) => {
      this._settle = () => resolve(undefined);
    });
  }

  get totalBytes() {
    return this.item.file.size;
  }

  /** Send every piece, then wait for the server's answer; throws when the line drops. */
  async run() {
    const file = this.item.file;
    const type = this.item.mime || file.type || "application/octet-stream";
    for (let start = 0; start < file.size && this.phase === "sending"; start += this.pieceBytes) {
      const end = Math.min(file.size, start + this.pieceBytes);
      const data = await readAsDataUrl(file.slice(start, end, type));
      if (this.phase !== "sending") break; // refused (or cancelled) while reading
      if (!this.connection.isOpen) throw new Error(LOST);
      const last = end >= file.size;
      const message = JSON.stringify({ type: "video_data", filename: this.item.name, data, last });
      const before = this.connection.bufferedAmount;
      this.connection.socket.send(message);
      this.piecesSent += 1;
      this.lastSent = last;
      await this.connection.drained(before, (buffered) => {
        const out = Math.max(0, Math.min(1, 1 - (buffered - before) / message.length));
        this._sent(start + out * (end - start));
      });
      if (!this.connection.isOpen) throw new Error(LOST);
      this._sent(end);
    }
    if (this.phase === "refused" && this.piecesSent > 0 && !this.lastSent) {
      // The server drops the rest of a refused video silently, up to its last piece.
      const type = this.item.mime || "video/mp4";
      const data = `data:${type};base64,`;
      this.connection.send({ type: "video_data", filename: this.item.name, data, last: true });
      this.lastSent = true;
    }
    if (this.phase === "sending") {
      this.phase = "choosing";
      this.onChange();
    }
    await this.answer;
    if (this.phase === "aborted" && !this.connection.isOpen) throw new Error(LOST);
  }

  _sent(bytes) {
    this.sentBytes = bytes;
    this.onChange();
  }

  /** A frame of the video was kept as a photo, labelled `label`. */
  frame(label) {
    this.frames.push(label);
    this.onChange();
  }

  /** @param {{frames?: string[], notes?: string[], duration_s?: number}} message video_received */
  received(message) {
    if (this.phase === "done") return;
    if (Array.isArray(message.frames) && message.frames.length >= this.frames.length) {
      this.frames = [...message.frames];
    }
    this.notes = message.notes ?? [];
    this.duration = message.duration_s ?? 0;
    this.phase = "done";
    this._settle();
  }

  /** @param {string} text the server's sentence */
  refused(text) {
    this.refusal = text;
    this.phase = "refused";
    this._settle();
  }

  /** Stop: cancelled, or the line dropped. */
  abort() {
    if (this.phase === "done" || this.phase === "refused") return;
    this.phase = "aborted";
    this._settle();
  }

  /**
   * The stage line while this video is under way: [sentence, fraction or null].
   * @returns {[string, number | null]}
   */
  stage() {
    const name = this.item.name;
    if (this.phase === "sending") {
      const total = this.totalBytes;
      const text = `Uploading ${name}: ${megabytes(this.sentBytes)} of ${megabytes(total)}…`;
      return [text, total > 0 ? this.sentBytes / total : 0];
    }
    const taken = this.frames.length > 0 ? `: ${plural(this.frames.length, "frame")} so far` : "";
    return [`The server is choosing frames of ${name}${taken}…`, null];
  }
}
