// The page's parts that do not change: the elements it works with, the names it shows for
// engines and stages, and the state it starts from (main.js wires them together).

export const MIN_PHOTOS = 2;

export const ENGINE_NAMES = {
  fast3r: "Fast3R (learned, one pass)",
  colmap: "COLMAP (classical structure from motion)",
};

export const STAGE_NAMES = {
  load: "Reading photos",
  inference: "Running the neural network",
  features: "Finding features",
  matching: "Matching photos",
  mapping: "Placing the cameras",
  poses: "Estimating camera poses",
  densify: "Densifying",
  points: "Gathering points",
  done: "Done",
};

const $ = (id) => document.getElementById(id);

/** The page's elements that the code reads or changes, by role. */
export function pageElements() {
  return {
    engine: $("engine"),
    connection: $("connection"),
    dropzone: $("dropzone"),
    fileInput: $("file-input"),
    thumbnails: $("thumbnails"),
    photoCount: $("photo-count"),
    start: $("start"),
    cancel: $("cancel"),
    newScan: $("new-scan"),
    refineOption: $("refine-option"),
    refinePoses: $("refine-poses"),
    stageBar: $("stage-bar"),
    stageText: $("stage-text"),
    clock: $("clock"),
    verdict: $("verdict"),
    advice: $("advice"),
    recent: $("recent"),
    recentList: $("recent-list"),
    messages: $("messages"),
    pointSize: $("point-size"),
    pointSizeValue: $("point-size-value"),
    confidence: $("confidence"),
    confidenceValue: $("confidence-value"),
    showCameras: $("show-cameras"),
    surfaceChoice: $("surface-choice"),
    surfaceNote: $("surface-note"),
    resetView: $("reset-view"),
    downloads: $("downloads"),
    downloadList: $("download-list"),
    viewport: $("viewport"),
    panel: document.querySelector(".panel"),
    look: document.querySelector(".step.look"),
    stats: $("stats"),
    emptyHint: $("empty-hint"),
  };
}

/** What the page knows when it opens: its phase, its job, and what the job sent so far. */
export function newAppState() {
  return {
    phase: "connecting", // connecting | idle | uploading | queued | running | done | failed
    online: false,
    engine: null,
    limits: {},
    jobOptions: [], // the job options the engine takes (welcome.job_options)
    jobId: null,
    downloads: {},
    framesReceived: 0,
    binaryFrames: 0,
    jsonMessages: 0,
    pointsReceived: 0,
    bytesReceived: 0,
    totalPoints: null,
    cameras: 0,
    sparseOnly: false, // the engine said it kept its sparse points only (no dense ones)
    quality: null, // the engine's verdict on the result: {verdict, reasons}
    masks: null, // where the result's masks came from
    frameLog: [], // {count, receivedMs, shownMs}: epoch milliseconds, for the benchmark
    framesInRenders: 0, // frameLog entries already handed to a render
    acceptJobData: false,
    offlineNote: "", // what the stage line says while there is no connection
    serverUploadOpen: false, // the server holds photos of this connection not yet reconstructed
    reattachJobId: null, // a queued or running job to follow again once the line is back
    openingJobId: null, // a job being read over REST to be shown (/#job=<id>)
    cancelReplies: 0, // "cancelled" answers still to come for cancels sent to clear an upload
    photosSent: 0, // in the last upload_complete: the photos and the frames taken from videos
  };
}
