// One photo at a time: picked by clicking its frustum or its thumbnail (or through
// `view.selectPhoto(index)`), it is shown in a small panel over the view, its points stand out
// from the others, and the points of any photo can be hidden or shown again ("only this
// photo's points", "all photos' points", or one photo's own switch). Everything here changes
// materials and visibility: nothing is uploaded to the GPU again.

/** The panel over the 3D view that shows the picked photo and its switches. */
export class PhotoInspector {
  /**
   * @param {import("./scene.js").SceneView} view
   * @param {HTMLElement} viewport the element the panel goes in
   * @param {(name: string) => (string | null)} photoUrl where the browser has the photo called
   *   `name` (an object URL of its thumbnail), or null
   * @param {() => void} onChange called when the points drawn changed (for the page's counts)
   */
  constructor(view, viewport, photoUrl, onChange = () => {}) {
    this.view = view;
    this.photoUrl = photoUrl;
    this.onChange = onChange;
    this.hidden = new Set(); // view indices whose points are hidden
    this.panel = this._build();
    viewport.appendChild(this.panel);
    view.events.addEventListener("select", () => this._show());
    view.events.addEventListener("cameras", () => this._show());
    // The photo's count of points follows the threshold and the frames still arriving.
    view.events.addEventListener("render", () => {
      if (!this.panel.hidden) this._show();
    });
    view.events.addEventListener("clear", () => {
      this.hidden = new Set();
      this._show();
    });
  }

  /** Hide (or show) the points of view `index`. */
  setHidden(index, hidden) {
    if (hidden) this.hidden.add(index);
    else this.hidden.delete(index);
    this._apply();
  }

  /** Only the points of view `index`; null: every photo's points again. */
  showOnly(index) {
    this.hidden = new Set();
    if (index !== null) {
      for (const other of this._viewIndices()) if (other !== index) this.hidden.add(other);
    }
    this._apply();
  }

  /** Pick the next (step 1) or previous (step -1) photo. */
  step(step) {
    const count = this.view.cameras.length;
    if (count === 0) return;
    const current = this.view.pickedPhoto ?? (step > 0 ? -1 : 0);
    this.view.selectPhoto((current + step + count) % count);
  }

  _viewIndices() {
    const indices = new Set(this.view.cloud.viewIndices());
    this.view.cameras.forEach((_, index) => indices.add(index));
    return [...indices];
  }

  _apply() {
    this.view.setHiddenViews(this.hidden);
    this._show();
    this.onChange();
  }

  _build() {
    const panel = document.createElement("aside");
    panel.id = "photo-panel";
    panel.className = "photo-panel";
    panel.hidden = true;
    panel.setAttribute("aria-label", "The photo picked");
    panel.innerHTML = `
      <header>
        <button type="button" class="previous" title="The previous photo" aria-label="Previous photo">‹</button>
        <strong class="name"></strong>
        <button type="button" class="next" title="The next photo" aria-label="Next photo">›</button>
        <button type="button" class="close" title="Close" aria-label="Close">×</button>
      </header>
      <figure><img alt="" /><figcaption class="no-image" hidden></figcaption></figure>
      <p class="points"></p>
      <label class="check"><input type="checkbox" class="shown" /> Show this photo's points</label>
      <div class="buttons">
        <button type="button" class="only">Only this photo's points</button>
        <button type="button" class="all">All photos' points</button>
      </div>`;
    const $ = (selector) => panel.querySelector(selector);
    this.parts = {
      name: $(".name"),
      image: $("img"),
      noImage: $(".no-image"),
      points: $(".points"),
      shown: $(".shown"),
      only: $(".only"),
      all: $(".all"),
    };
    $(".close").addEventListener("click", () => this.view.selectPhoto(null));
    $(".previous").addEventListener("click", () => this.step(-1));
    $(".next").addEventListener("click", () => this.step(1));
    this.parts.shown.addEventListener("change", () => {
      this.setHidden(this.view.pickedPhoto, !this.parts.shown.checked);
    });
    this.parts.only.addEventListener("click", () => this.showOnly(this.view.pickedPhoto));
    this.parts.all.addEventListener("click", () => this.showOnly(null));
    return panel;
  }

  /** The panel says what it knows of the picked photo (hidden when none is picked). */
  _show() {
    const index = this.view.pickedPhoto;
    const camera = index === null ? undefined : this.view.cameras[index];
    this.panel.hidden = camera === undefined;
    if (!camera) return;
    const name = camera.name ?? `photo ${index + 1}`;
    const { parts } = this;
    this.panel.dataset.index = String(index);
    parts.name.textContent = name;
    parts.name.title = name;
    const url = this.photoUrl(name);
    parts.image.hidden = !url;
    parts.noImage.hidden = Boolean(url);
    if (url) {
      if (parts.image.getAttribute("src") !== url) parts.image.src = url;
      parts.image.alt = name;
    } else {
      parts.image.removeAttribute("src");
      parts.noImage.textContent = "This browser does not hold the photo (the job was opened from the server).";
    }
    let own = 0;
    for (const entry of this.view.cloud.frames) if (entry.frame.viewIndex === index) own += entry.count;
    const hidden = this.hidden.has(index);
    parts.points.textContent =
      `Photo ${index + 1} of ${this.view.cameras.length}: ${own.toLocaleString()} ` +
      `point${own === 1 ? "" : "s"}${hidden ? " (hidden)" : ""}.`;
    parts.shown.checked = !hidden;
    const others = this._viewIndices().filter((other) => other !== index);
    parts.only.disabled = hidden === false && others.every((other) => this.hidden.has(other));
    parts.all.disabled = this.hidden.size === 0;
  }
}
