// What the page tells people: the stage line with its progress bar, the verdict on a finished
// result, and a list of messages (errors stay until dismissed; information fades).

export class Notices {
  constructor({ list, stageText, stageBar, verdict }) {
    this.list = list;
    this.stageText = stageText;
    this.stageBar = stageBar;
    this.verdictNote = verdict;
    this.log = []; // every message shown: {level, text}
  }

  /** Show a message; level is "error", "warning" or "info". */
  say(text, level = "error") {
    this.log.push({ level, text });
    const item = document.createElement("div");
    item.className = `message ${level}`;
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

  clear() {
    this.list.replaceChildren();
  }

  /** The stage line: a sentence and a fraction done (null: working, amount unknown). */
  stage(text, fraction = null) {
    this.stageText.textContent = text;
    delete this.stageText.dataset.verdict;
    this.verdictNote.hidden = true;
    this.verdictNote.textContent = "";
    this.stageBar.parentElement.classList.toggle("indeterminate", fraction === null);
    this.stageBar.style.width = fraction === null ? "100%" : `${Math.round(100 * fraction)}%`;
  }

  /** The stage line and a note for a finished result, marked "good" or "uncertain" (or ""). */
  result({ verdict, stage, note }) {
    this.stage(stage, 1);
    if (verdict) this.stageText.dataset.verdict = verdict;
    this.verdictNote.textContent = note;
    this.verdictNote.hidden = note === "";
    if (verdict) this.verdictNote.dataset.verdict = verdict;
    else delete this.verdictNote.dataset.verdict;
  }
}
