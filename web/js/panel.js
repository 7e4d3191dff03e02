// The side panel scrolls; step 3 (sliders, Download) stays in view at its bottom while a job
// runs or is shown (viewer.css), so it can cover the end of step 2. What the page has just said
// (the stage line, the verdict, a new message) is scrolled into the part that stays clear.

const MARGIN_PX = 14; // clear of step 3's shadow too

/**
 * Scroll `panel` so that the run of elements from `first` to `last` shows above `cover` (the
 * sticky step 3), `first`'s top winning where they do not all fit.
 * @param {HTMLElement} panel the scrolling side panel
 * @param {HTMLElement} first
 * @param {HTMLElement} last
 * @param {HTMLElement | null} cover what may lie over the panel's bottom
 */
export function revealInPanel(panel, first, last = first, cover = null) {
  const box = panel.getBoundingClientRect();
  const coverTop = cover ? cover.getBoundingClientRect().top : box.bottom;
  const clearBottom = Math.min(box.bottom, coverTop) - MARGIN_PX;
  const top = first.getBoundingClientRect().top;
  const bottom = last.getBoundingClientRect().bottom;
  let by = 0;
  if (bottom > clearBottom) by = bottom - clearBottom;
  if (top - by < box.top + MARGIN_PX) by = top - box.top - MARGIN_PX;
  if (Math.abs(by) >= 1) panel.scrollTop += by;
}
