// The photos a person picked: thumbnails with a status each, and their upload over the
// WebSocket (one "image_data" message per photo, acknowledged by "image_received" or "error").

const MIB = 1024 * 1024;

const STATUS_TEXT = {
  ready: "",
  reading: "reading…",
  sending: "uploading…",
  sent: "waiting for the server…",
  saved: "uploaded",
  refused: "refused",
  dropped: "not placed",
};

export class PhotoList {
  constructor(listElement, onChange) {
    this.listElement = listElement;
    this.onChange = onChange;
    this.photos = [];
    this.nextId = 1;
    this.locked = false;
  }

  get size() {
    return this.photos.length;
  }

  get totalBytes() {
    return this.photos.reduce((sum, photo) => sum + photo.file.size, 0);
  }

  /** Add files (from the picker or a drop); names are made unique, as the server keys on them. */
  add(files) {
    if (this.locked) return;
    const taken = new Set(this.photos.map((photo) => photo.name));
    for (const file of files) {
      const name = uniqueName(file.name || "photo", taken);
      taken.add(name);
      const photo = { id: this.nextId++, file, name, status: "ready", fraction: 0, message: "" };
      photo.element = this._render(photo);
      this.listElement.appendChild(photo.element);
      this.photos.push(photo);
    }
    this.onChange();
  }

  remove(photo) {
    if (this.locked) return;
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

  setStatus(photo, status, fraction = 0, message = "") {
    photo.status = status;
    photo.fraction = fraction;
    photo.message = message;
    const item = photo.element;
    item.dataset.status = status;
    item.querySelector(".bar").style.width = `${Math.round(100 * fraction)}%`;
    // The thumbnail shows a word; the whole message is in its tooltip and the message list.
    item.querySelector(".photo-status").textContent = STATUS_TEXT[status];
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
    const image = document.createElement("img");
    photo.thumbnailUrl = URL.createObjectURL(photo.file);
    image.src = photo.thumbnailUrl;
    image.alt = photo.name;
    image.decoding = "async";
    image.loading = "lazy";
    // Formats the browser cannot show (HEIC, RAW, not an image at all) get a name card instead;
    // the server decides whether it can read them.
    image.addEventListener("error", () => {
      preview.classList.add("no-preview");
      preview.textContent = extension(photo.name) || "?";
    });
    preview.appendChild(image);

    const caption = document.createElement("span");
    caption.className = "photo-name";
    caption.textContent = photo.name;
    const status = document.createElement("span");
    status.className = "photo-status";
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

    item.append(preview, remove, progress, caption, status);
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
    for (const photo of this.photoList.photos) {
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
    return this.photoList.photos.filter((photo) => photo.status === "saved");
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
