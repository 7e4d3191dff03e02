// The time a job takes: a counter that ticks every second from Start, and an estimate of the
// time left once the progress is steady, from the engine's fraction of the whole job (which
// follows time, so a straight line through the first and the latest fraction is a fair guess).
// At the end it shows the total.

const TICK_MS = 1000;
const STEADY_FRACTION = 0.1; // an estimate before this much is done is mostly noise
const STEADY_MS = 3000; // ... and before this long
// Reports this close to the first are one burst (a stream that starts over after a reconnect
// replays its progress at once): the line starts at the burst's last.
const BURST_MS = 250;

/** "0:07", "2:05", "1:02:09". */
export function formatDuration(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  if (hours === 0) return `${minutes}:${seconds}`;
  return `${hours}:${String(minutes).padStart(2, "0")}:${seconds}`;
}

/**
 * The milliseconds left, from progress samples `first` and `latest` ({fraction, atMs}), at
 * `nowMs`; null while the progress is not steady enough to say.
 */
export function estimateLeftMs(first, latest, nowMs) {
  if (!first || !latest) return null;
  const done = latest.fraction - first.fraction;
  const spentMs = latest.atMs - first.atMs;
  if (latest.fraction < STEADY_FRACTION || spentMs < STEADY_MS || done <= 0) return null;
  const endMs = latest.atMs + (spentMs * (1 - latest.fraction)) / done;
  return Math.max(0, endMs - nowMs);
}

const ENDINGS = {
  done: (time) => `Took ${time}.`,
  failed: (time) => `Stopped after ${time}.`,
  cancelled: (time) => `Cancelled after ${time}.`,
};

export class JobClock {
  /**
   * @param {HTMLElement} element where the time is shown (hidden while there is no job)
   * @param {() => number} now epoch milliseconds (tests give their own)
   */
  constructor(element, now = () => Date.now()) {
    this.element = element;
    this.now = now;
    this.timer = null;
    this.reset();
  }

  get running() {
    return this.timer !== null;
  }

  /** Start counting, from `startMs` (now by default; a reopened job: when it was made). */
  start(startMs = this.now()) {
    this.reset();
    this.startMs = startMs;
    this.timer = setInterval(() => this.render(), TICK_MS);
    this.render();
  }

  /** A progress report: the fraction of the whole job done. */
  progress(fraction) {
    if (!this.running || typeof fraction !== "number") return;
    const sample = { fraction, atMs: this.now() };
    // A fraction that goes back (a job followed again from its start) starts the line over.
    const back = this.latest !== null && fraction < this.latest.fraction;
    if (this.first === null || back || sample.atMs - this.first.atMs < BURST_MS) {
      this.first = sample;
    }
    this.latest = sample;
    this.render();
  }

  /** The job ended: "done", "failed" or "cancelled"; the total time stays on show. */
  stop(outcome) {
    if (!this.running) return;
    clearInterval(this.timer);
    this.timer = null;
    this.ending = ENDINGS[outcome] ?? ENDINGS.failed;
    this.endMs = this.now();
    this.render();
  }

  /** A finished job's total time, known from its record (a job opened from its address). */
  showTotal(totalMs, outcome = "done") {
    this.reset();
    this.startMs = 0;
    this.endMs = totalMs;
    this.ending = ENDINGS[outcome] ?? ENDINGS.done;
    this.render();
  }

  /** No job: nothing shown. */
  reset() {
    clearInterval(this.timer);
    this.timer = null;
    this.startMs = null;
    this.endMs = null;
    this.ending = null;
    this.first = null;
    this.latest = null;
    this.render();
  }

  /** What the clock says now ("" without a job). */
  text() {
    if (this.startMs === null) return "";
    if (this.ending) return this.ending(formatDuration(this.endMs - this.startMs));
    const nowMs = this.now();
    const elapsed = `${formatDuration(nowMs - this.startMs)} elapsed`;
    const leftMs = estimateLeftMs(this.first, this.latest, nowMs);
    if (leftMs === null) return elapsed;
    if (leftMs < 1000) return `${elapsed} · finishing…`;
    // Whole 5 s steps: a countdown that jumps by single seconds reads as exact.
    const roundedMs = Math.max(5000, Math.round(leftMs / 5000) * 5000);
    return `${elapsed} · about ${formatDuration(roundedMs)} left`;
  }

  render() {
    const text = this.text();
    this.element.textContent = text;
    this.element.hidden = text === "";
  }
}
