// The photos a person picked: thumbnails with a status each, checked as they are added
// (checks.js), and their upload over the WebSocket (one "image_data" message per photo,
// acknowledged by "image_received" or "error"). A video is one tile among them, sent in pieces
// (video.js), its frames counted as photos. A job reopened from its address shows its photos
// too, with the server's thumbnails.

import { checkPhoto, readAsDataUrl } from "./checks.js";
import {
  checkVideo,
  looksLikeVideo,
  namedSentence,
  pieceBytes,
  showVideoPreview,
  sniffVideo,
  VIDEO_TYPES,
  VideoUpload,
  videoSentence,
  videoStatusText,
} from "./video.js";

const MIB = 1024 * 1024;

const STATUS_TEXT = {
  checking: "checking…",
  ready: "",
  excluded: "left out",
  reading: "reading…",
  sending: "uploading…",
  sent: "waiting for the server…",
  saved: "uploaded",
  refused: "refused",
  placed: "placed",
  dropped: "not placed",
};
// Statuses whose sentence is shown beside the thumbnail, not only in its tooltip.
const SAYS_WHY = new Set(["excluded", "refused", "dropped"]);
// What an upload leaves on a photo; forgotten when the server lets go of the photos.
const UPLOAD_STATUSES = new Set(["reading", "sending", "sent", "saved"]);

export class PhotoList {
  /**
   * @param {HTMLElement} listElement the <ul> of thumbnails
   * @param {() => void} onChange called whenever a photo is added, removed or checked
   * @param {(text: string, level: string) => void} say tells people something (a duplicate)
   */
  constructor(listElement, onChange, say = () => {}) {
    this.listElement = listElement;
    this.onChange = onChange;
    this.say = say;
    this.photos = [];
    this.nextId = 1;
    this.locked = false;
    this.checks = Promise.resolve(); // one photo is checked at a time, in the order added
  }

  get size() {
    return this.photos.length;
  }

  /** The photos to upload: all but those the checks left out (videos among them). */
  get usable() {
    return this.photos.filter((photo) => photo.status !== "excluded");
  }

  /** The usable photos that are photos, not videos. */
  get stills() {
    return this.usable.filter((photo) => photo.kind !== "video");
  }

  /** The usable videos. */
  get videos() {
    return this.usable.filter((photo) => photo.kind === "video");
  }

  /** The frames the server took from the videos of the last upload. */
  get videoFrames() {
    return this.videos.reduce((sum, video) => sum + video.frames.length, 0);
  }

  get excludedCount() {
    return this.photos.length - this.usable.length;
  }

  /** Whether some photos are still being checked. */
  get checking() {
    return this.photos.some((photo) => photo.status === "checking");
  }

  get totalBytes() {
    return this.usable.reduce((sum, photo) => sum + (photo.file?.size ?? 0), 0);
  }

  /**
   * "14 photos, 1 left out, 38.2 MB": the photos to upload, and those the checks left out;
   * "1 photo, 1 video (33 frames), 3.0 MB" with a video whose frames the server took.
   */
  summary() {
    if (this.size === 0) return "";
    const stills = this.stills.length;
    const videos = this.videos.length;
    const parts = [];
    if (stills > 0 || videos === 0) parts.push(`${stills} photo${stills === 1 ? "" : "s"}`);
    if (videos > 0) {
      const frames = this.videoFrames;
      const taken = frames > 0 ? ` (${frames} frame${frames === 1 ? "" : "s"})` : "";
      parts.push(`${videos} video${videos === 1 ? "" : "s"}${taken}`);
    }
    if (this.excludedCount > 0) parts.push(`${this.excludedCount} left out`);
    const megabytes = this.totalBytes / 1e6;
    if (megabytes > 0) parts.push(`${megabytes.toFixed(1)} MB`);
    return parts.join(", ");
  }

  /** Add files (from the picker or a drop); names are made unique, as the server keys on them. */
  add(files) {
    if (this.locked) return;
    const taken = new Set(this.photos.map((photo) => photo.name));
    const added = [];
    for (const file of files) {
      const name = uniqueName(file.name || "photo", taken);
      taken.add(name);
      const kind = looksLikeVideo(file) ? "video" : "photo"; // until its bytes are read
      added.push(this._append({ file, name, kind, status: "checking" }));
    }
    this.onChange();
    this.checks = this.checks.then(() => this._check(added));
  }

  /**
   * Show the photos of a job made earlier (the status of GET /api/jobs/{id}): the server's
   * thumbnail where it gives one (a name card otherwise), and whether the engine placed it.
   */
  showJob(job) {
    this.clear();
    const placed = (job.views ?? []).map((view) => view.name);
    const dropped = new Map((job.dropped ?? []).map((d) => [d.name, d.reason]));
    for (const { name, thumbnail } of job.photos ?? []) {
      const fields = { file: null, name, thumbnail: thumbnail ?? null, status: "ready" };
      const photo = this._append(fields);
      if (dropped.has(name)) this.setStatus(photo, "dropped", 1, dropped.get(name));
    }
    this.markPlaced(placed);
    this.onChange();
  }

  _append(fields) {
    const photo = {
      id: this.nextId++,
      kind: "photo", // or "video"
      fraction: 0,
      message: "",
      digest: null,
      frames: [], // a video's: the labels of the frames the server took
      ...fields,
    };
    photo.element = this._render(photo);
    this.setStatus(photo, photo.status);
    this.listElement.appendChild(photo.element);
    this.photos.push(photo);
    return photo;
  }

  async _check(added) {
    for (const photo of added) {
      if (!this.photos.includes(photo)) continue; // removed meanwhile
      let outcome;
      try {
        outcome = await this._checkFile(photo);
      } catch (error) {
        outcome = { problem: `the file cannot be read here (${error.message})`, digest: null };
      }
      if (!this.photos.includes(photo)) continue;
      const twin = outcome.digest && this.photos.find((p) => p.digest === outcome.digest);
      if (twin) {
        this.remove(photo, true);
        const what = photo.kind === "video" ? "video" : "photo";
        this.say(`${photo.name} is the same ${what} as ${twin.name}: kept once.`, "warning");
        continue;
      }
      photo.digest = outcome.digest;
      if (outcome.problem) this.setStatus(photo, "excluded", 0, outcome.problem);
      else this.setStatus(photo, "ready");
      this.onChange();
    }
  }

  /** Check a file as a video where its first bytes say it is one, else as a photo. */
  async _checkFile(photo) {
    const head = new Uint8Array(await photo.file.slice(0, 64).arrayBuffer());
    const format = sniffVideo(head);
    const kind = format ? "video" : "photo";
    Object.assign(photo, { format, mime: format ? VIDEO_TYPES[format] : null });
    if (kind !== photo.kind) {
      photo.kind = kind;
      this._rerender(photo);
    } else if (format) {
      photo.element.querySelector(".video-kind")?.replaceChildren(`${format} video`);
    }
    if (format) return checkVideo(photo.file, format);
    const outcome = await checkPhoto(photo.file);
    if (outcome.problem && outcome.format === null && photo.file.type.startsWith("video/")) {
      outcome.problem = "not a video in a format the server takes (MP4, MOV or WebM)";
    }
    return outcome;
  }

  /** A tile made again (a file that turned out to be a video, or not one). */
  _rerender(photo) {
    if (photo.thumbnailUrl) URL.revokeObjectURL(photo.thumbnailUrl);
    photo.thumbnailUrl = null;
    const element = this._render(photo);
    photo.element.replaceWith(element);
    photo.element = element;
    this.setStatus(photo, photo.status, photo.fraction, photo.message);
  }

  remove(photo, evenIfLocked = false) {
    if (this.locked && !evenIfLocked) return;
    this.photos = this.photos.filter((p) => p !== photo);
    photo.element.remove();
    if (photo.thumbnailUrl) URL.revokeObjectURL(photo.thumbnailUrl);
    this.onChange();
  }

  clear() {
    this.locked = false;
    for (const photo of [...this.photos]) this.remove(photo);
  }

  /** While locked (uploading, reconstructing) photos can be neither added nor removed. */
  setLocked(locked) {
    this.locked = locked;
    this.listElement.classList.toggle("locked", locked);
  }

  /** The engine placed the photos called `names` in the scene (a video: some of its frames). */
  markPlaced(names) {
    const placed = new Set(names);
    for (const photo of this.photos) {
      if (placed.has(photo.name)) this.setStatus(photo, "placed", 1);
      if (photo.kind !== "video" || photo.status !== "saved") continue;
      photo.placedFrames = photo.frames.filter((frame) => placed.has(frame)).length;
      if (photo.placedFrames > 0) this.setStatus(photo, "placed", 1);
    }
  }

  /** Before an upload: every photo but those left out is to be sent again. */
  prepareUpload() {
    for (const photo of this.usable) {
      Object.assign(photo, { frames: [], sentBytes: 0, placedFrames: 0, duration: 0 });
      this.setStatus(photo, "ready");
    }
  }

  /** The server let go of the photos (cancelled, failed): none of them counts as uploaded. */
  forgetUpload() {
    for (const photo of this.photos) {
      if (!UPLOAD_STATUSES.has(photo.status)) continue;
      photo.frames = [];
      this.setStatus(photo, "ready");
    }
  }

  setStatus(photo, status, fraction = 0, message = "") {
    photo.status = status;
    photo.fraction = fraction;
    photo.message = message;
    const item = photo.element;
    item.dataset.status = status;
    item.querySelector(".bar").style.width = `${Math.round(100 * fraction)}%`;
    const video = photo.kind === "video";
    const label = video ? videoStatusText(photo, status) : STATUS_TEXT[status];
    item.querySelector(".photo-status").textContent = label;
    // Why a photo is left out, refused or not placed is said beside it, in words; a video's
    // tile always has a sentence (what becomes of it, how many frames were taken).
    const why = video ? videoSentence(photo, status, message) : SAYS_WHY.has(status) ? message : "";
    item.querySelector(".photo-reason").textContent = why;
    item.classList.toggle("says-why", why !== "" && !video);
    const text = message || label;
    item.title = text ? `${photo.name}: ${text}` : photo.name;
  }

  /** The picture of a tile: the photo (or the server's thumbnail), a video's frame or card. */
  _preview(photo) {
    const preview = document.createElement("div");
    preview.className = "preview";
    if (photo.kind === "video") {
      showVideoPreview(preview, photo, (url) => {
        const shown = this.photos.includes(photo) && photo.element.contains(preview);
        if (shown) photo.thumbnailUrl = url;
        else URL.revokeObjectURL(url); // the tile went meanwhile
      });
      return preview;
    }
    const nameCard = () => {
      preview.classList.add("no-preview");
      preview.textContent = extension(photo.name) || "?";
    };
    if (photo.file) photo.thumbnailUrl = URL.createObjectURL(photo.file);
    const source = photo.thumbnailUrl ?? photo.thumbnail;
    if (source) {
      const image = document.createElement("img");
      image.src = source;
      image.alt = photo.name;
      image.decoding = "async";
      image.loading = "lazy";
      // Formats the browser cannot show (HEIC, RAW, not an image at all) and a server without
      // thumbnails get a name card instead.
      image.addEventListener("error", nameCard);
      preview.appendChild(image);
    } else {
      nameCard();
    }
    return preview;
  }

  _render(photo) {
    const item = document.createElement("li");
    item.className = photo.kind === "video" ? "photo video" : "photo";
    item.dataset.status = "ready";
    item.title = photo.name;

    const preview = this._preview(photo);

    const caption = document.createElement("span");
    caption.className = "photo-name";
    caption.textContent = photo.name;
    const status = document.createElement("span");
    status.className = "photo-status";
    const reason = document.createElement("span");
    reason.className = "photo-reason";
    const progress = document.createElement("div");
    progress.className = "progress small";
    const bar = document.createElement("div");
    bar.className = "bar";
    progress.appendChild(bar);

    const remove = document.createElement("button");
    remove.className = "remove";
    remove.type = "button";
    remove.textContent = "×";
    remove.title = `Remove ${photo.name}`;
    remove.setAttribute("aria-label", `Remove ${photo.name}`);
    remove.addEventListener("click", () => this.remove(photo));

    item.append(preview, remove, progress, caption, status, reason);
    return item;
  }
}

function uniqueName(name, taken) {
  if (!taken.has(name)) return name;
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const suffix = dot > 0 ? name.slice(dot) : "";
  for (let n = 2; ; n++) {
    const candidate = `${stem} (${n})${suffix}`;
    if (!taken.has(candidate)) return candidate;
  }
}

function extension(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toUpperCase() : "";
}

/**
 * Send every photo as "image_data", one at a time, showing each one's progress as the socket's
 * buffer drains. The server answers each photo in order with "image_received" or "error";
 * `saved` and `refused` (called by the message handler) settle them. A video goes in its place
 * in the list, once the photos before it are answered: in pieces (VideoUpload), its frames
 * answered as photos, then "video_received" (`videoReceived`) or an "error". Resolves with the
 * photos saved and the frames taken (`count`, for upload_complete), or throws when the
 * connection drops.
 */
export class Upload {
  /**
   * @param {number} maxPhotoMB the server's limit (MiB) per photo
   * @param {number} videoPieceBytes bytes of a video in one message (video.js pieceBytes)
   */
  constructor(connection, photoList, maxPhotoMB = Infinity, videoPieceBytes = pieceBytes()) {
    this.connection = connection;
    this.photoList = photoList;
    this.maxPhotoMB = maxPhotoMB; // the server's limit (MiB), checked here to save the upload
    this.videoPieceBytes = videoPieceBytes;
    this.awaiting = []; // photos sent, in order, without an answer yet
    this.settled = null;
    this.video = null; // the VideoUpload under way
    this.frames = 0; // frames the server took from the videos so far
    this.aborted = false;
  }

  /** @returns {Promise<{saved: object[], frames: number, count: number}>} */
  async run() {
    const photos = this.photoList.usable;
    for (const photo of photos) {
      if (this.aborted) break;
      if (!this.connection.isOpen) throw new Error("the connection to the server was lost");
      if (photo.kind === "video") {
        await this._sendVideo(photo);
        continue;
      }
      const sizeMB = photo.file.size / MIB;
      if (sizeMB > this.maxPhotoMB) {
        const text =
          `${photo.name} has ${sizeMB.toFixed(1)} MB, more than the server's limit of ` +
          `${this.maxPhotoMB} MB per photo`;
        this.photoList.setStatus(photo, "refused", 1, text);
        continue;
      }
      this.photoList.setStatus(photo, "reading", 0);
      const data = await readAsDataUrl(photo.file);
      const message = JSON.stringify({ type: "image_data", data, filename: photo.name });
      if (!this.connection.isOpen) throw new Error("the connection to the server was lost");
      const before = this.connection.bufferedAmount;
      this.connection.socket.send(message);
      this.awaiting.push(photo);
      this.photoList.setStatus(photo, "sending", 0);
      await this.connection.drained(before, (buffered) => {
        const sent = 1 - (buffered - before) / message.length;
        this.photoList.setStatus(photo, "sending", Math.max(0, Math.min(1, sent)));
      });
      if (photo.status === "sending") this.photoList.setStatus(photo, "sent", 1);
    }
    await this._answered();
    if (!this.connection.isOpen) throw new Error("the connection to the server was lost");
    const saved = photos.filter((photo) => photo.kind !== "video" && photo.status === "saved");
    return { saved, frames: this.frames, count: saved.length + this.frames };
  }

  /** Resolves once every photo sent has its answer. */
  async _answered() {
    if (this.awaiting.length === 0) return;
    await new Promise((resolve) => {
      this.settled = resolve;
    });
  }

  /**
   * One video: after the photos before it are answered (so that what comes next is its own),
   * its pieces, then the server's answer. Frames it took count even where it is refused later
   * (the server keeps them).
   */
  async _sendVideo(item) {
    await this._answered();
    if (this.aborted) return;
    if (!this.connection.isOpen) throw new Error("the connection to the server was lost");
    const list = this.photoList;
    const video = new VideoUpload(this.connection, item, this.videoPieceBytes, () => {
      item.sentBytes = video.sentBytes;
      item.frames = video.frames;
      const total = video.totalBytes || 1;
      if (video.phase === "sending") list.setStatus(item, "sending", video.sentBytes / total);
      else if (video.phase === "choosing") list.setStatus(item, "sent", 1);
    });
    this.video = video;
    list.setStatus(item, "reading", 0);
    try {
      await video.run();
    } finally {
      this.video = null;
      item.frames = video.frames;
      this.frames += video.frames.length;
    }
    if (video.phase === "refused") {
      list.setStatus(item, "refused", 1, video.refusal);
    } else if (video.phase === "done") {
      item.duration = video.duration;
      list.setStatus(item, "saved", 1);
      for (const note of video.notes) list.say(namedSentence(item.name, note), "warning");
    }
  }

  /** The server kept the photo called `filename` (a frame, while a video is answered). */
  saved(filename) {
    if (this.video) {
      this.video.frame(filename);
      return;
    }
    const index = this.awaiting.findIndex((photo) => photo.name === filename);
    const photo = this.awaiting.splice(index >= 0 ? index : 0, 1)[0];
    if (photo) this.photoList.setStatus(photo, "saved", 1);
    this._maybeDone();
  }

  /** The server's summary of the video under way. */
  videoReceived(message) {
    if (this.video) this.video.received(message);
  }

  /** The server refused the oldest photo (or the video) not yet answered; returns it (or null). */
  refused(message) {
    if (this.video) {
      this.video.refused(message);
      return this.video.item;
    }
    const photo = this.awaiting.shift() ?? null;
    if (photo) this.photoList.setStatus(photo, "refused", 1, message);
    this._maybeDone();
    return photo;
  }

  get waiting() {
    return this.awaiting.length > 0 || this.video !== null;
  }

  /** Stop sending and waiting (cancelled, connection lost). */
  abort() {
    this.aborted = true;
    if (this.video) this.video.abort();
    this.awaiting = [];
    this._maybeDone();
  }

  _maybeDone() {
    if (this.awaiting.length === 0 && this.settled) {
      this.settled();
      this.settled = null;
    }
  }
}

/**
 * Files picked with `input` or dropped anywhere on the page go to onFiles(files). Dropped files
 * never make the browser navigate away; while isBusy() the drop zone refuses them.
 */
export function listenForFiles(input, dropzone, onFiles, isBusy) {
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = ""; // picking the same files again adds them again
    if (files.length > 0) onFiles(files);
  });
  window.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = isBusy() ? "none" : "copy";
    dropzone.classList.toggle("dragging", !isBusy());
  });
  window.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropzone.classList.remove("dragging");
  });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    const files = [...(event.dataTransfer?.files ?? [])];
    if (files.length > 0) onFiles(files);
  });
}
