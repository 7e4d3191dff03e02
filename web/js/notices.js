// What the page tells people: the stage line with its progress bar, the verdict on a finished
// result with advice on what to do about a rough one, and a list of messages (errors stay until
// dismissed or, for a message about a passing condition, until it has passed; information fades).

export class Notices {
  constructor({ list, stageText, stageBar, verdict, advice = null }) {
    this.list = list;
    this.stageText = stageText;
    this.stageBar = stageBar;
    this.verdictNote = verdict;
    this.adviceNote = advice;
    this.log = []; // every message shown: {level, text}
  }

  /**
   * Show a message; level is "error", "warning" or "info". A message with a `key` (say
   * "connection") replaces the one shown with that key, and `dismiss(key)` takes it away.
   */
  say(text, level = "error", key = "") {
    this.log.push({ level, text });
    if (key) this.dismiss(key);
    const item = document.createElement("div");
    item.className = `message ${level}`;
    if (key) item.dataset.key = key;
    const body = document.createElement("span");
    body.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.textContent = "×";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", () => item.remove());
    item.append(body, close);
    this.list.appendChild(item);
    if (level === "info") setTimeout(() => item.remove(), 8000);
  }

  /** Take away the message shown with `key` (its condition has passed). */
  dismiss(key) {
    for (const item of this.list.querySelectorAll(".message[data-key]")) {
      if (item.dataset.key === key) item.remove();
    }
  }

  clear() {
    this.list.replaceChildren();
  }

  /** The stage line: a sentence and a fraction done (null: working, amount unknown). */
  stage(text, fraction = null) {
    this.stageText.textContent = text;
    delete this.stageText.dataset.verdict;
    this.verdictNote.hidden = true;
    this.verdictNote.textContent = "";
    this.advise("");
    this.stageBar.parentElement.classList.toggle("indeterminate", fraction === null);
    this.stageBar.style.width = fraction === null ? "100%" : `${Math.round(100 * fraction)}%`;
  }

  /** What to do about a rough result ("" for none), below its verdict. */
  advise(text) {
    if (!this.adviceNote) return;
    this.adviceNote.textContent = text;
    this.adviceNote.hidden = text === "";
  }

  /**
   * The stage line and a note for a finished result, marked "good" or "uncertain" (or ""),
   * and advice where it is rough.
   */
  result({ verdict, stage, note, advice = "" }) {
    this.stage(stage, 1);
    this.advise(advice);
    if (verdict) this.stageText.dataset.verdict = verdict;
    this.verdictNote.textContent = note;
    this.verdictNote.hidden = note === "";
    if (verdict) this.verdictNote.dataset.verdict = verdict;
    else delete this.verdictNote.dataset.verdict;
  }
}
