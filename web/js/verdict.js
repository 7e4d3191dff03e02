// The engine's verdict on a finished result, in words. An uncertain result is said to be
// possibly wrong, with the engine's reasons, on the stage line itself: a wrong model shown as a
// plain success is the worst outcome for a user. A good one gets a quiet note.

const MASK_NOTES = {
  given: "The masks given with the photos were used.",
  automatic: "The engine masked out the background itself.",
  mixed: "Masks: given for some photos, estimated by the engine for the others.",
};

// How an engine's reasons say that dense stereo found nothing and only sparse points remain.
const SPARSE_ONLY = /\bsparse\b|\bno dense\b/i;

const sentence = (text) => text.trim().replace(/[.;:\s]+$/, "");
const capitalize = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/**
 * What the page says when a job is done.
 * @param {import("./protocol.js").QualityInfo | null | undefined} quality the verdict (absent
 *   from servers without the "quality" feature)
 * @param {string | null | undefined} masks where the masks came from
 * @param {string} summary what was made, e.g. "1,200 points from 2 cameras"
 * @param {{cameras?: number, sparseOnly?: boolean}} result how many photos were placed, and
 *   whether only sparse points came (the engine's progress said so)
 * @returns {{verdict: "good" | "uncertain" | "", stage: string, note: string, advice: string}}
 */
export function describeResult(quality, masks, summary, { cameras = 0, sparseOnly = false } = {}) {
  const maskNote = MASK_NOTES[masks] ?? "";
  const sparse = sparseOnly || (quality?.reasons ?? []).some((reason) => SPARSE_ONLY.test(reason));
  const advice = adviceFor(cameras, sparse);
  if (!quality) return { verdict: "", stage: `Done: ${summary}.`, note: maskNote, advice };
  const reasons = (quality.reasons ?? []).map(sentence).filter(Boolean);
  if (quality.verdict === "good") {
    const notes = reasons.length > 0 ? ` Note: ${reasons.join("; ")}.` : "";
    return {
      verdict: "good",
      stage: `Done: ${summary}.`,
      note: `✓ The engine's checks passed.${notes} ${maskNote}`.trim(),
      advice,
    };
  }
  const why = reasons.length > 0 ? reasons.join("; ") : "the engine gave no reason";
  return {
    verdict: "uncertain",
    stage: `Done — the result may be wrong: ${why}.`,
    note: `${capitalize(summary)}: check them before relying on them. ${maskNote}`.trim(),
    advice,
  };
}

/**
 * Why a result is rough and what to do, or "": two placed photos see each point from two
 * angles only, and without dense points there are only the few that SfM matched.
 */
export function adviceFor(cameras, sparseOnly) {
  const closer = "15-20 degrees apart, and reconstruct again.";
  if (cameras === 2) {
    const why = sparseOnly
      ? "Two photos give a rough scene: dense stereo matched no pixels between them, so only " +
        "the few points matched between the two photos are shown."
      : "Two photos give a rough scene: each point is seen from only two angles, so its depth " +
        "rests on one pair of rays, and what only one photo sees is missing.";
    return `${why} Add photos between these two, ${closer}`;
  }
  if (sparseOnly) {
    return (
      "Only sparse points were found: dense stereo matched no pixels between neighbouring " +
      `photos (too far apart or too different). Add photos between them, ${closer}`
    );
  }
  return "";
}
