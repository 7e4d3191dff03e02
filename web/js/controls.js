// The view's controls: point size, confidence threshold, cameras on or off, reset view.
// None of them fetches anything: they change uniforms and draw ranges (see cloud.js).

export class ViewControls {
  constructor(elements, view, onChange) {
    Object.assign(this, elements); // pointSize, pointSizeValue, confidence, ...
    this.view = view;
    this.onChange = onChange;
    this.pointSizeChosen = false; // the person moved the point size slider

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

  /** After new points: the slider's range and the threshold follow the confidence received. */
  refresh() {
    const cloud = this.view.cloud;
    const range = cloud.confidenceRange();
    this.confidence.disabled = !range;
    const threshold = this._threshold(range);
    if (threshold !== cloud.threshold) this.view.setThreshold(threshold);
    if (!range) {
      this.confidenceValue.textContent =
        cloud.pointsTotal > 0 ? "not sent by the server" : "once points arrive";
    } else if (threshold === -Infinity) {
      this.confidenceValue.textContent = "all points";
    } else {
      const share = Math.round((100 * cloud.pointsDrawn) / cloud.pointsTotal);
      this.confidenceValue.textContent = `≥ ${threshold.toPrecision(3)} (${share}% shown)`;
    }
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

  /** The slider's confidence threshold: logarithmic (confidence is heavy-tailed). */
  _threshold(range) {
    const position = Number(this.confidence.value) / Number(this.confidence.max);
    if (position <= 0 || !range) return -Infinity;
    const [low, high] = range;
    if (low > 0) return low * (high / low) ** position;
    return low + (high - low) * position;
  }
}
