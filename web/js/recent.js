// This browser's recent scans, kept in localStorage: each finished job's id, when it was made,
// how many photos it had and the engine's verdict, listed as links to /#job=<id> while the page
// is idle. A job the server no longer has (deleted, expired: 404) is said to be gone and can be
// removed from the list. Job ids are secrets (docs/protocol.md): they stay in this browser.

const STORAGE_KEY = "aetherscan.recentScans";
const MAX_SCANS = 12;

const VERDICT_WORDS = {
  good: "checks passed",
  uncertain: "may be wrong",
};

/**
 * @typedef {object} RecentScan
 * @property {string} jobId
 * @property {string} date ISO time the scan was made (or first shown here)
 * @property {number} photos how many photos it had
 * @property {string} [firstPhoto] the name of its first photo, to tell scans apart
 * @property {string | null} verdict the engine's verdict: "good", "uncertain" or null
 */

/** The scans stored, newest first; [] where the browser keeps no storage for the page. */
export function loadScans(storage = globalThis.localStorage) {
  try {
    const scans = JSON.parse(storage.getItem(STORAGE_KEY) ?? "[]");
    return Array.isArray(scans) ? scans.filter((scan) => typeof scan?.jobId === "string") : [];
  } catch {
    return [];
  }
}

function saveScans(scans, storage = globalThis.localStorage) {
  try {
    storage.setItem(STORAGE_KEY, JSON.stringify(scans.slice(0, MAX_SCANS)));
  } catch {
    // Storage full or turned off: the list is a convenience, the scan itself is on the server.
  }
}

export class RecentScans {
  /**
   * @param {HTMLElement} section shown while there are scans to list and the page is idle
   * @param {HTMLElement} list the <ul> of scans
   */
  constructor(section, list) {
    this.section = section;
    this.list = list;
    this.gone = new Set(); // ids the server answered 404 for, in this page's life
    this.asked = new Set(); // ids already asked about
    this.visible = false;
  }

  /** Put a finished scan first in the list (once per job). */
  remember({ jobId, photos, verdict, firstPhoto = "", date = new Date().toISOString() }) {
    const scans = loadScans();
    const known = scans.find((scan) => scan.jobId === jobId);
    const scan = { jobId, date: known?.date ?? date, photos, verdict: verdict ?? null, firstPhoto };
    saveScans([scan, ...scans.filter((other) => other.jobId !== jobId)]);
    if (this.visible) this.render();
  }

  forget(jobId) {
    saveScans(loadScans().filter((scan) => scan.jobId !== jobId));
    this.render();
  }

  /** Show the list (when the page is idle) or hide it. */
  show(visible) {
    if (visible === this.visible) return;
    this.visible = visible;
    this.render();
  }

  render() {
    const scans = this.visible ? loadScans() : [];
    this.section.hidden = scans.length === 0;
    this.list.replaceChildren(...scans.map((scan) => this._item(scan)));
    for (const scan of scans) this._ask(scan.jobId);
  }

  _item(scan) {
    const item = document.createElement("li");
    item.className = "recent-scan";
    item.dataset.jobId = scan.jobId;
    const link = document.createElement("a");
    link.href = `#job=${encodeURIComponent(scan.jobId)}`;
    const when = new Date(scan.date);
    const parts = [`${scan.photos} photo${scan.photos === 1 ? "" : "s"}`];
    if (VERDICT_WORDS[scan.verdict]) parts.push(VERDICT_WORDS[scan.verdict]);
    link.textContent = parts.join(" · ");
    const time = document.createElement("time");
    time.dateTime = scan.date;
    time.textContent = Number.isNaN(when.getTime())
      ? ""
      : when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    const details = document.createElement("span");
    details.className = "details";
    details.append(time);
    if (typeof scan.firstPhoto === "string" && scan.firstPhoto) {
      details.append(` · ${scan.firstPhoto}${scan.photos > 1 ? ", …" : ""}`);
    }
    if (scan.verdict) link.dataset.verdict = scan.verdict;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "forget";
    remove.textContent = "×";
    remove.title = "Remove from this list (the scan stays on the server)";
    remove.setAttribute("aria-label", "Remove from the list");
    remove.addEventListener("click", () => this.forget(scan.jobId));
    item.append(link, details, remove);
    if (this.gone.has(scan.jobId)) this._markGone(item);
    return item;
  }

  _markGone(item) {
    item.classList.add("gone");
    const note = document.createElement("span");
    note.className = "gone-note";
    note.textContent = "no longer on the server (deleted or expired)";
    const remove = item.querySelector(".forget");
    remove.textContent = "Remove";
    remove.title = "Remove from this list";
    item.insertBefore(note, remove);
  }

  /** Ask the server once whether it still has the job. */
  async _ask(jobId) {
    if (this.asked.has(jobId)) return;
    this.asked.add(jobId);
    let response;
    try {
      response = await fetch(`/api/jobs/${encodeURIComponent(jobId)}`);
    } catch {
      this.asked.delete(jobId); // the server is unreachable: ask again next time
      return;
    }
    if (response.status !== 404) return;
    this.gone.add(jobId);
    const item = [...this.list.children].find((li) => li.dataset.jobId === jobId);
    if (item && !item.classList.contains("gone")) this._markGone(item);
  }
}
