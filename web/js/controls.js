// The view's controls: point size, confidence, cameras on or off, reset view.
// None of them fetches anything: they change uniforms and draw ranges (see cloud.js).
//
// The confidence slider is a percentile: "keep the N % most confident points", from all of
// them at the left to the most confident 1 % at the right, whatever the engine's confidence
// scale (COLMAP's counts of agreeing photos, 2, 3, ..., or Fast3R's open-ended values). Points
// that tie are kept or dropped together, and the label says the share really kept.

const MIN_SHARE = 0.01;
const TIE_NOTE_SHARE = 0.02;

export class ViewControls {
  constructor(elements, view, onChange) {
    Object.assign(this, elements); // pointSize, pointSizeValue, confidence, ...
    this.view = view;
    this.onChange = onChange;
    this.pointSizeChosen = false; // the person moved the point size slider
    // The engine whose confidence the slider shows ("colmap": photos that agree on a point).
    this.engineName = () => null;

    this.pointSize.addEventListener("input", () => {
      this.pointSizeChosen = true;
      this._setPointSize(Number(this.pointSize.value));
    });
    this.confidence.addEventListener("input", () => {
      this.refresh();
      this.onChange();
    });
    this.showCameras.addEventListener("change", () => {
      view.setCamerasVisible(this.showCameras.checked);
    });
    this.resetView.addEventListener("click", () => view.resetView());
  }

  /** After new points: the threshold follows the points received for the share chosen. */
  refresh() {
    const cloud = this.view.cloud;
    const range = cloud.confidenceRange();
    // All points alike: nothing to choose between (the slider stays, and says so).
    const alike = range !== null && range[0] === range[1];
    this.confidence.disabled = !range;
    const share = this.share();
    const { threshold } = range && !alike ? cloud.thresholdForShare(share) : { threshold: -Infinity };
    if (threshold !== cloud.threshold) this.view.setThreshold(threshold);
    let text;
    if (!range) {
      text = cloud.pointsTotal > 0 ? "not sent by the server" : "once points arrive";
    } else if (alike) {
      text = describeAlike(range[0], this.engineName());
    } else if (threshold === -Infinity) {
      text = "keeps all points";
    } else {
      text = describeKept(cloud.pointsKept / cloud.pointsTotal, share, threshold, this.engineName());
    }
    this.confidenceValue.textContent = text;
    this.confidence.setAttribute("aria-valuetext", text);
  }

  /** The share of the points the slider asks to keep, 0.01 to 1. */
  share() {
    const position = Number(this.confidence.value) / Number(this.confidence.max);
    return 1 - (1 - MIN_SHARE) * Math.min(1, Math.max(0, position));
  }

  /** A new cloud: all points again. */
  reset() {
    this.confidence.value = 0;
    this.refresh();
  }

  /** Until a person picks a size: bigger points for sparse clouds, so that they read as shapes. */
  choosePointSize(viewportHeightPx) {
    const total = this.view.cloud.pointsTotal;
    if (this.pointSizeChosen || total === 0) return;
    const spacingPx = viewportHeightPx / Math.sqrt(total);
    this._setPointSize(Math.min(6, Math.max(1.5, Math.round(2 * spacingPx) / 2)));
  }

  _setPointSize(pixels) {
    this.pointSize.value = pixels;
    this.pointSizeValue.textContent = `${pixels} px`;
    this.view.setPointSize(pixels);
  }
}

/** A share (0..1) as people read it: "40 %", "<1 %", never "100 %" for less than all. */
function percent(share) {
  if (share < 0.01) return "<1\u00a0%";
  const rounded = Math.round(100 * share);
  return `${share < 1 ? Math.min(rounded, 99) : rounded}\u00a0%`; // never broken from its number
}

/**
 * What the slider keeps, in words: "keeps 40 % of the points: those seen by at least 3 photos".
 * `kept` is the share really drawn: more than `asked` where points tie at the threshold.
 */
export function describeKept(kept, asked, threshold, engine) {
  let which;
  if (engine === "colmap") {
    // COLMAP's confidence: its whole part counts the photos that see a point consistently,
    // its fraction (below 1) grades how well they agree (sparse points: the reprojection
    // error; dense points: a half when no photo sees through the point). A threshold between
    // two counts keeps every point seen by more photos, and the best of those seen by as many.
    const photos = Math.floor(threshold);
    const plural = (n) => `${n} photo${n === 1 ? "" : "s"}`;
    which = Number.isInteger(threshold)
      ? `those seen by at least ${plural(photos)}`
      : `those seen by ${photos + 1}+ photos, or by ${photos} that agree best ` +
        `(confidence ≥ ${round(threshold)})`;
  } else {
    which = `confidence at least ${round(threshold)}`;
  }
  // Draw ranges come from each frame's table of 64 levels, so the share kept may pass the one
  // asked by a little (under 1/64 of a frame); more than that is points that tie.
  const tie = kept - asked > TIE_NOTE_SHARE ? ` (not ${percent(asked)}: ties stay together)` : "";
  return `keeps ${percent(kept)} of the points${tie}: ${which}`;
}

/** Every point has the same confidence: the slider has nothing to choose between. */
export function describeAlike(confidence, engine) {
  if (engine === "colmap" && Number.isInteger(confidence)) {
    return `all points alike: each seen by ${confidence} photo${confidence === 1 ? "" : "s"}`;
  }
  return `all points alike: confidence ${round(confidence)}`;
}

function round(value) {
  return Number(value.toPrecision(3)).toString();
}
