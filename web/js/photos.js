// The photos a person picked: thumbnails with a status each, checked as they are added
// (checks.js), and their upload over the WebSocket (one "image_data" message per photo,
// acknowledged by "image_received" or "error"). A job reopened from its address shows its
// photos too, with the server's thumbnails.

import { checkPhoto } from "./checks.js";

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

  /** The photos to upload: all but those the checks left out. */
  get usable() {
    return this.photos.filter((photo) => photo.status !== "excluded");
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

  /** "14 photos, 1 left out, 38.2 MB": the photos to upload, and those the checks left out. */
  summary() {
    if (this.size === 0) return "";
    const usable = this.usable.length;
    const parts = [`${usable} photo${usable === 1 ? "" : "s"}`];
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
      added.push(this._append({ file, name, status: "checking" }));
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
    const photo = { id: this.nextId++, fraction: 0, message: "", digest: null, ...fields };
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
        outcome = await checkPhoto(photo.file);
      } catch (error) {
        outcome = { problem: `the file cannot be read here (${error.message})`, digest: null };
      }
      if (!this.photos.includes(photo)) continue;
      const twin = outcome.digest && this.photos.find((p) => p.digest === outcome.digest);
      if (twin) {
        this.remove(photo, true);
        this.say(`${photo.name} is the same photo as ${twin.name}: kept once.`, "warning");
        continue;
      }
      photo.digest = outcome.digest;
      if (outcome.problem) this.setStatus(photo, "excluded", 0, outcome.problem);
      else this.setStatus(photo, "ready");
      this.onChange();
    }
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

  /** The engine placed the photos called `names` in the scene. */
  markPlaced(names) {
    const placed = new Set(names);
    for (const photo of this.photos) {
      if (placed.has(photo.name)) this.setStatus(photo, "placed", 1);
    }
  }

  /** Before an upload: every photo but those left out is to be sent again. */
  prepareUpload() {
    for (const photo of this.usable) this.setStatus(photo, "ready");
  }

  /** The server let go of the photos (cancelled, failed): none of them counts as uploaded. */
  forgetUpload() {
    for (const photo of this.photos) {
      if (UPLOAD_STATUSES.has(photo.status)) this.setStatus(photo, "ready");
    }
  }

  setStatus(photo, status, fraction = 0, message = "") {
    photo.status = status;
    photo.fraction = fraction;
    photo.message = message;
    const item = photo.element;
    item.dataset.status = status;
    item.querySelector(".bar").style.width = `${Math.round(100 * fraction)}%`;
    item.querySelector(".photo-status").textContent = STATUS_TEXT[status];
    // Why a photo is left out, refused or not placed is said beside it, in words.
    const why = SAYS_WHY.has(status) ? message : "";
    item.querySelector(".photo-reason").textContent = why;
    item.classList.toggle("says-why", why !== "");
    const text = message || STATUS_TEXT[status];
    item.title = text ? `${photo.name}: ${text}` : photo.name;
  }

  _render(photo) {
    const item = document.createElement("li");
    item.className = "photo";
    item.dataset.status = "ready";
    item.title = photo.name;

    const preview = document.createElement("div");
    preview.className = "preview";
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

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(reader.result));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(file);
  });
}

/**
 * Send every photo as "image_data", one at a time, showing each one's progress as the socket's
 * buffer drains. The server answers each photo in order with "image_received" or "error";
 * `acknowledge` (called by the message handler) settles them. Resolves with the photos saved,
 * or throws when the connection drops.
 */
export class Upload {
  constructor(connection, photoList, maxPhotoMB = Infinity) {
    this.connection = connection;
    this.photoList = photoList;
    this.maxPhotoMB = maxPhotoMB; // the server's limit (MiB), checked here to save the upload
    this.awaiting = []; // photos sent, in order, without an answer yet
    this.settled = null;
  }

  async run() {
    const photos = this.photoList.usable;
    for (const photo of photos) {
      if (!this.connection.isOpen) throw new Error("the connection to the server was lost");
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
    if (this.awaiting.length > 0) {
      await new Promise((resolve) => {
        this.settled = resolve;
      });
    }
    if (!this.connection.isOpen) throw new Error("the connection to the server was lost");
    return photos.filter((photo) => photo.status === "saved");
  }

  /** The server kept the photo called `filename`. */
  saved(filename) {
    const index = this.awaiting.findIndex((photo) => photo.name === filename);
    const photo = this.awaiting.splice(index >= 0 ? index : 0, 1)[0];
    if (photo) this.photoList.setStatus(photo, "saved", 1);
    this._maybeDone();
  }

  /** The server refused the oldest photo not yet answered; returns it (or null). */
  refused(message) {
    const photo = this.awaiting.shift() ?? null;
    if (photo) this.photoList.setStatus(photo, "refused", 1, message);
    this._maybeDone();
    return photo;
  }

  get waiting() {
    return this.awaiting.length > 0;
  }

  /** Stop waiting (connection lost). */
  abort() {
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
