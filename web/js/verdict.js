// The engine's verdict on a finished result, in words. An uncertain result is said to be
// possibly wrong, with the engine's reasons, on the stage line itself: a wrong model shown as a
// plain success is the worst outcome for a user. A good one gets a quiet note.

const MASK_NOTES = {
  given: "The masks given with the photos were used.",
  automatic: "The engine masked out the background itself.",
  mixed: "Masks: given for some photos, estimated by the engine for the others.",
};

const sentence = (text) => text.trim().replace(/[.;:\s]+$/, "");
const capitalize = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/**
 * What the page says when a job is done.
 * @param {import("./protocol.js").QualityInfo | null | undefined} quality the verdict (absent
 *   from servers without the "quality" feature)
 * @param {string | null | undefined} masks where the masks came from
 * @param {string} summary what was made, e.g. "1,200 points from 2 cameras"
 * @returns {{verdict: "good" | "uncertain" | "", stage: string, note: string}}
 */
export function describeResult(quality, masks, summary) {
  const maskNote = MASK_NOTES[masks] ?? "";
  if (!quality) return { verdict: "", stage: `Done: ${summary}.`, note: maskNote };
  const reasons = (quality.reasons ?? []).map(sentence).filter(Boolean);
  if (quality.verdict === "good") {
    const notes = reasons.length > 0 ? ` Note: ${reasons.join("; ")}.` : "";
    return {
      verdict: "good",
      stage: `Done: ${summary}.`,
      note: `✓ The engine's checks passed.${notes} ${maskNote}`.trim(),
    };
  }
  const why = reasons.length > 0 ? reasons.join("; ") : "the engine gave no reason";
  return {
    verdict: "uncertain",
    stage: `Done — the result may be wrong: ${why}.`,
    note: `${capitalize(summary)}: check them before relying on them. ${maskNote}`.trim(),
  };
}
