// A finished job read back over REST (GET /api/jobs/{id}, its points and cameras), for showing
// it again after the page is reloaded (address /#job=<id>), and the address followed when it
// names another job in an open tab.

import { decodeFrames } from "./frames.js";

const POLL_MS = 1000;

/**
 * Wait for the job to finish (onProgress(job) while it runs), then load its result:
 * {job, frames, cameras}. Throws an Error whose message is for people.
 */
export async function loadFinishedJob(jobId, onProgress) {
  const base = `/api/jobs/${encodeURIComponent(jobId)}`;
  let job;
  for (;;) {
    const response = await fetch(base);
    if (response.status === 404) throw new Error("that reconstruction is no longer on the server");
    if (!response.ok) throw new Error(`the server could not return the job (HTTP ${response.status})`);
    job = await response.json();
    if (!["uploading", "queued", "running"].includes(job.state)) break;
    onProgress(job);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  if (job.state !== "done") throw new Error(job.error || `the job ended as ${job.state}`);

  const points = await fetch(`${base}/points?format=binary`);
  if (!points.ok) throw new Error(`its points could not be loaded (HTTP ${points.status})`);
  const frames = decodeFrames(await points.arrayBuffer());
  let cameras = [];
  if (job.downloads?.cameras) {
    const document = await fetch(job.downloads.cameras).then((r) => (r.ok ? r.json() : null));
    if (Array.isArray(document?.cameras)) cameras = document.cameras;
  }
  return { job, frames, cameras };
}

/** The job named by the address (/#job=<id>), or null. */
export function jobInAddress() {
  return new URLSearchParams(location.hash.slice(1)).get("job");
}

/**
 * Show the job the address names when it changes (a link, a pasted address, Back): `open(id)`
 * for a job not already shown (`shown()` lists the ids on screen or being opened). Where
 * `open` refuses (returns false), the address goes back to what is shown.
 */
export function followAddress({ shown, open }) {
  window.addEventListener("hashchange", () => {
    const jobId = jobInAddress();
    const [current] = shown();
    if (!jobId || shown().includes(jobId)) return;
    if (open(jobId) !== false) return;
    history.replaceState(null, "", current ? `#job=${current}` : location.pathname);
  });
}
