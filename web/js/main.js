// The AetherScan page: photos in, the point cloud growing on screen, downloads out.
// Wires the photo list, the WebSocket and the 3D view together, and says in plain words what
// is happening and what went wrong.

import { JobClock } from "./clock.js";
import { Connection } from "./connection.js";
import { ViewControls } from "./controls.js";
import { showDownloads } from "./downloads.js";
import { frameFromJsonPoints } from "./frames.js";
import { followAddress, jobInAddress, loadFinishedJob } from "./jobs.js";
import { Notices } from "./notices.js";
import { ENGINE_NAMES, MIN_PHOTOS, newAppState, pageElements, STAGE_NAMES } from "./page.js";
import { revealInPanel } from "./panel.js";
import { listenForFiles, PhotoList, Upload } from "./photos.js";
import { decodePointFrame, FEATURES } from "./protocol.js";
import { RecentScans } from "./recent.js";
import { SceneView } from "./scene.js";
import { SurfaceChoice } from "./surface.js";
import { installSceneTools } from "./tools.js";
import { describeResult } from "./verdict.js";
import { filesInWords, namedSentence, pieceBytes } from "./video.js";

const ui = pageElements();
const app = newAppState(); // what the page knows; also read by the tests through window.aetherscan

// ?points=json asks for the JSON "points" messages instead of binary frames (for comparing).
const pageOptions = new URLSearchParams(location.search);
const features =
  pageOptions.get("points") === "json" ? FEATURES.filter((f) => f !== "binary_points") : FEATURES;
const connection = new Connection(
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
  features,
);
const photos = new PhotoList(
  ui.thumbnails,
  () => updateControls(),
  (text, level) => showMessage(text, level),
);
const clock = new JobClock(ui.clock);
const recent = new RecentScans(ui.recent, ui.recentList);
const view = new SceneView(ui.viewport);
view.waitForGpu = pageOptions.has("timing"); // benchmarks/bench_viewer.py
const notices = new Notices({
  list: ui.messages,
  stageText: ui.stageText,
  stageBar: ui.stageBar,
  verdict: ui.verdict,
  advice: ui.advice,
});
const controls = new ViewControls(
  {
    pointSize: ui.pointSize,
    pointSizeValue: ui.pointSizeValue,
    confidence: ui.confidence,
    confidenceValue: ui.confidenceValue,
    showCameras: ui.showCameras,
    resetView: ui.resetView,
  },
  view,
  () => updateStats(),
);
// Picking photos (frustum or thumbnail) and measuring, in the view (tools.js).
const sceneTools = installSceneTools({
  view,
  viewport: ui.viewport,
  thumbnails: ui.thumbnails,
  photoUrl: (name) => {
    const photo = photos.photos.find((p) => p.name === name);
    return photo?.thumbnailUrl ?? photo?.thumbnail ?? null;
  },
  job: () => ({ id: app.jobId, done: app.phase === "done" }),
  controls,
  engine: () => app.engine,
  onChange: () => updateStats(),
});
// Points / Surface / Both: the job's mesh fetched on first use (surface.js).
const surface = new SurfaceChoice({
  group: ui.surfaceChoice,
  note: ui.surfaceNote,
  view,
  scale: () => sceneTools.measure.metresPerUnit,
  say: (text, level, key) => showMessage(text, level, key),
});
let upload = null;

window.aetherscan = {
  get state() {
    return app.phase;
  },
  get pointsDrawn() {
    return view.cloud.pointsDrawn;
  },
  get pointsReceived() {
    return app.pointsReceived;
  },
  get framesReceived() {
    return app.framesReceived;
  },
  get framesRendered() {
    return view.framesRendered;
  },
  get camerasShown() {
    return view.cameras.length;
  },
  messages: notices.log,
  app,
  view,
  sceneTools,
  surface,
  connection, // the browser test drops the line through it
};

function nowMs() {
  return performance.timeOrigin + performance.now();
}

// What was just said is scrolled into view above step 3 (which stays at the panel's bottom).
const revealStatus = () => revealInPanel(ui.panel, ui.stageText, ui.messages, ui.look);
const showMessage = (text, level, key) => {
  notices.say(text, level, key);
  revealStatus();
};
// While a job runs, a stage line that grows (a longer sentence, the clock appearing) is kept
// in view too; only a change of size moves the panel, so a person scrolling it is left alone.
const statusSizes = new ResizeObserver(() => {
  if (isBusy()) revealStatus();
});
statusSizes.observe(ui.stageText);
statusSizes.observe(ui.clock);
const clearMessages = () => notices.clear();
const setStage = (text, fraction) => notices.stage(text, fraction);

// ---------------------------------------------------------------- the page's state

function isBusy() {
  return ["uploading", "queued", "running"].includes(app.phase);
}

function setPhase(phase) {
  app.phase = phase;
  document.body.dataset.phase = phase;
  // A cancelled or failed job's photos are gone from the server: none is "uploaded" any more.
  if (phase === "failed") photos.forgetUpload();
  updateControls();
}

function updateControls() {
  const busy = isBusy();
  photos.setLocked(busy);
  ui.fileInput.disabled = busy;
  ui.dropzone.classList.toggle("disabled", busy);
  ui.dropzone.classList.toggle("compact", photos.size > 0); // room for the list and step 2
  const usable = photos.stills.length; // the photos the checks did not leave out
  const videos = photos.videos.length; // each gives the photos the server takes from it
  const enough = usable >= MIN_PHOTOS || videos > 0;
  const maxPhotos = app.limits.max_photos_per_job ?? Infinity;
  const tooMany = usable > maxPhotos;
  ui.start.disabled = busy || photos.checking || !enough || tooMany || !app.online;
  ui.start.hidden = app.phase === "done";
  ui.cancel.hidden = !busy;
  ui.newScan.hidden = !["done", "failed"].includes(app.phase);
  ui.refineOption.hidden = !app.jobOptions.includes("refine_poses");
  ui.refinePoses.disabled = busy;

  ui.photoCount.textContent = photos.summary();
  recent.show(app.phase === "idle" && photos.size === 0 && !app.openingJobId);
  if (!busy && app.phase !== "done" && app.phase !== "failed") {
    if (!app.online) setStage(app.offlineNote || "Connecting to the server…", null);
    else if (app.openingJobId) setStage("Opening the scan…", null);
    else if (photos.size === 0) {
      setStage("Add photos (or a video) of one object or scene, then press Start.", 0);
    } else if (photos.checking && (photos.size >= MIN_PHOTOS || videos > 0)) {
      setStage("Checking the photos…", null);
    } else if (!enough) {
      setStage(`Add at least ${MIN_PHOTOS} photos (8 to 50 overlapping ones work best).`, 0);
    } else if (tooMany) {
      setStage(`This server takes at most ${maxPhotos} photos per job: remove some.`, 0);
    } else setStage(`Ready: press Start to reconstruct ${filesInWords(usable, videos)}.`, 0);
  }
}


function updateStats() {
  const parts = [];
  const drawn = view.cloud.pointsDrawn;
  const total = view.cloud.pointsTotal;
  if (total > 0) {
    parts.push(
      drawn === total
        ? `${total.toLocaleString()} points`
        : `${drawn.toLocaleString()} of ${total.toLocaleString()} points`,
    );
  }
  if (app.cameras > 0) parts.push(`${app.cameras} cameras`);
  if (app.framesReceived > 0) {
    const kind = app.binaryFrames > 0 ? "binary" : "JSON";
    parts.push(`${(app.bytesReceived / 1e6).toFixed(2)} MB received (${kind})`);
  }
  ui.stats.textContent = parts.join(" · ");
  ui.emptyHint.hidden = total > 0 || app.cameras > 0;
}

// ---------------------------------------------------------------- the connection

connection.addEventListener("open", () => {
  app.online = true;
  ui.connection.textContent = "connected";
  ui.connection.className = "badge ok";
  if (app.phase === "connecting") setPhase("idle");
  notices.dismiss("connection"); // the line is back: "connection lost" no longer holds
  if (app.reattachJobId) {
    // The server kept the job for a while after the drop: follow it again (docs/protocol.md,
    // Reattaching); its stream starts over, so the scene does too.
    connection.send({ type: "attach", job_id: app.reattachJobId });
  }
  updateControls();
});

connection.addEventListener("closed", (event) => {
  const { retryInSeconds, everConnected } = event.detail;
  const wasOnline = app.online;
  app.online = false;
  ui.connection.textContent = `offline, retrying in ${retryInSeconds} s`;
  ui.connection.className = "badge bad";
  if (upload) upload.abort();
  app.serverUploadOpen = false; // the server drops a connection's photos and job with it
  app.cancelReplies = 0;
  app.openVideos = []; // and a video arriving
  const canReattach =
    connection.features.includes("attach") && app.jobId && ["queued", "running"].includes(app.phase);
  if (wasOnline && canReattach) {
    app.reattachJobId = app.jobId;
    setStage("The connection dropped: the job goes on, and the page follows it again once it reconnects…", null);
  } else if (wasOnline) {
    app.reattachJobId = null;
    if (isBusy()) {
      failJob(
        "The connection to the server was lost, which stops the reconstruction. " +
          "Press Start to try again once the page has reconnected.",
      );
    } else {
      notices.say("The connection to the server was lost. Reconnecting…", "error", "connection");
      revealStatus();
    }
  }
  if (!everConnected) {
    ui.connection.textContent = "server unreachable";
    app.offlineNote =
      `Cannot reach the AetherScan server at ${location.host}. Is \`aetherscan serve\` ` +
      `running? Trying again in ${retryInSeconds} s…`;
  } else {
    app.offlineNote = `Reconnecting to the server (next try in ${retryInSeconds} s)…`;
  }
  updateControls();
});

connection.addEventListener("frame", (event) => {
  if (!app.acceptJobData) return;
  let frame;
  try {
    frame = decodePointFrame(event.detail);
  } catch (error) {
    showMessage(`A point frame from the server could not be read: ${error.message}`);
    return;
  }
  app.binaryFrames += 1;
  addFrame(frame);
});

connection.addEventListener("message", (event) => {
  const message = event.detail;
  if (message.job_id) app.jobId = message.job_id;
  const handler = HANDLERS[message.type];
  if (handler) handler(message, event.size);
});

const HANDLERS = {
  welcome(message) {
    app.engine = message.engine ?? null;
    app.limits = message.limits ?? {};
    // COLMAP takes refine_poses and changes nothing (its cameras always are refined): no choice.
    app.jobOptions = app.engine === "colmap" ? [] : (message.job_options ?? []);
    ui.engine.textContent = `Engine: ${ENGINE_NAMES[app.engine] ?? app.engine ?? "unknown"}`;
    updateControls();
  },
  pong() {},
  attached(message) {
    if (message.job_id !== app.reattachJobId) return;
    app.reattachJobId = null;
    restartStream();
    setStage("Reconnected: following the job again.", null);
    if (message.state === "queued") setPhase("queued");
  },
  image_received(message) {
    app.serverUploadOpen = true;
    if (upload) upload.saved(message.filename);
  },
  video_received(message) {
    if (upload) upload.videoReceived(message);
  },
  cancelled(message) {
    if (app.cancelReplies > 0) {
      app.cancelReplies -= 1; // the answer to a cancel of ours
      return;
    }
    if (isBusy()) {
      app.acceptJobData = false;
      clock.stop("cancelled");
      setPhase("failed");
      setStage(`Cancelled: ${message.message}.`, 0);
    }
  },
  error(message) {
    const text = message.message || "The server reported an error.";
    if (upload?.waiting) {
      const photo = upload.refused(text);
      showMessage(photo ? namedSentence(photo.name, text) : text);
      return;
    }
    if (message.code === "attach" && app.reattachJobId) {
      app.reattachJobId = null;
      failJob(`The job could not be followed again after the connection dropped: ${text}`);
      return;
    }
    if (["queued", "running"].includes(app.phase)) {
      failJob(text);
      return;
    }
    showMessage(text);
  },
  queued(message) {
    if (!app.acceptJobData) return;
    setPhase("queued");
    app.serverUploadOpen = false; // the server took the photos into a job
    const ahead = Math.max(0, message.position ?? 0); // jobs ahead of this one
    setStage(
      ahead === 0
        ? "Queued: your job starts next."
        : `Queued: ${ahead} job${ahead === 1 ? "" : "s"} ahead of yours.`,
      null,
    );
  },
  progress(message) {
    if (!app.acceptJobData) return;
    if (app.phase !== "running") setPhase("running");
    const stage = STAGE_NAMES[message.stage] ?? message.stage ?? "Working";
    const detail = message.message ? `: ${message.message}` : "";
    setStage(`${stage}${detail}`, message.fraction ?? null);
    clock.progress(message.fraction);
    // COLMAP says "sparse points of k of n photos" when dense stereo found nothing.
    if (/^sparse points\b/i.test(message.message ?? "")) app.sparseOnly = true;
  },
  cameras(message) {
    if (!app.acceptJobData) return;
    const cameras = message.cameras ?? [];
    app.cameras = cameras.length;
    view.setCameras(cameras);
    photos.markPlaced(cameras.map((camera) => camera.name));
    showDropped(message.dropped ?? []);
    updateStats();
  },
  preview(message) {
    if (!app.acceptJobData) return;
    view.setPreview(message); // provisional: replaced by the result's points and cameras
    ui.emptyHint.hidden = true;
  },
  points(message, size) {
    if (!app.acceptJobData) return;
    app.jsonMessages += 1;
    addFrame(frameFromJsonPoints(message.data ?? [], size));
  },
  // Feature "restart": the worker running the job stopped and the job runs again from its
  // start. What it sent so far goes; the job, its photos and its clock stay.
  restarted(message) {
    if (!app.acceptJobData) return;
    restartStream();
    setStage("Starting the reconstruction again…", null);
    showMessage(restartNotice(message.message), "warning", "restarted");
  },
  reconstruction_complete(message) {
    if (!app.acceptJobData) return;
    completeJob(message.total_points, message.downloads ?? {}, message);
  },
};

function addFrame(frame) {
  if (app.phase === "queued") setPhase("running");
  app.framesReceived += 1;
  app.pointsReceived += frame.count;
  app.bytesReceived += frame.byteLength;
  app.frameLog.push({ count: frame.count, receivedMs: nowMs(), shownMs: null });
  view.addFrame(frame);
  controls.refresh();
  updateStats();
}

view.onRender = () => {
  // The frames received since the last render are in this one.
  const entries = app.frameLog.slice(app.framesInRenders);
  app.framesInRenders = app.frameLog.length;
  return (drawnMs) => {
    for (const entry of entries) entry.shownMs = drawnMs;
  };
};

// ---------------------------------------------------------------- the job

/** Resolves once the server has answered every cancel sent (or after a few seconds). */
async function cancelsAnswered() {
  for (let waited = 0; app.cancelReplies > 0 && waited < 5000; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  app.cancelReplies = 0;
}

async function start() {
  ui.start.disabled = true;
  // Messages of a job cancelled just now may still be on their way; let them pass first.
  await cancelsAnswered();
  clearMessages();
  resetResult();
  app.acceptJobData = true;
  setPhase("uploading");
  clock.start();
  revealStatus();
  photos.prepareUpload();
  const sending = photos.usable;
  setStage(`Uploading ${filesInWords(photos.stills.length, photos.videos.length)}…`, 0);
  if (app.serverUploadOpen) {
    // Photos of an earlier attempt are still on the server; start from none.
    app.cancelReplies += 1;
    connection.send({ type: "cancel" });
    app.serverUploadOpen = false;
  }
  const piece = pieceBytes(app.limits.max_message_mb, pageOptions.get("video_piece_kb"));
  const current = new Upload(connection, photos, app.limits.max_photo_mb ?? Infinity, piece);
  upload = current;
  let result;
  try {
    const progress = setInterval(() => showUploadProgress(sending), 200);
    try {
      result = await current.run();
    } finally {
      clearInterval(progress);
    }
  } catch (error) {
    upload = null;
    if (app.phase === "uploading") failJob(`The upload stopped: ${error.message}.`);
    return;
  }
  upload = null;
  if (app.phase !== "uploading") return; // cancelled meanwhile
  const { count } = result; // the photos saved and the frames the server took from the videos
  app.photosSent = count;
  updateControls(); // the count of photos says how many frames the videos gave
  if (count < MIN_PHOTOS) {
    failJob(
      `Only ${count} photo${count === 1 ? " was" : "s were"} accepted; at least ` +
        `${MIN_PHOTOS} are needed. Remove the refused ones, add more photos and press Start again.`,
    );
    return;
  }
  setPhase("queued");
  setStage("Starting the reconstruction…", null);
  const refine = app.jobOptions.includes("refine_poses") && ui.refinePoses.checked;
  const options = refine ? { options: { refine_poses: true } } : {}; // the feature "options"
  connection.send({ type: "upload_complete", count, ...options });
}

/** The stage line while uploading: the photos answered, or the bytes of the video under way. */
function showUploadProgress(sending) {
  if (app.phase !== "uploading" || !upload) return;
  if (upload.video) {
    setStage(...upload.video.stage());
    return;
  }
  const done = sending.filter((p) => ["saved", "refused"].includes(p.status)).length;
  const what = sending.some((p) => p.kind === "video") ? "photos and videos" : "photos";
  const frames = upload.frames;
  const taken = frames > 0 ? `, ${frames} frame${frames === 1 ? "" : "s"} taken from videos` : "";
  setStage(`Uploading ${what}: ${done} of ${sending.length}${taken}…`, done / sending.length);
}

function cancel() {
  // The server answers every cancel with one "cancelled", after the last message of the job.
  app.cancelReplies += 1;
  connection.send({ type: "cancel" });
  app.serverUploadOpen = false;
  if (upload) upload.abort();
  app.acceptJobData = false;
  clock.stop("cancelled");
  setPhase("failed");
  setStage("Cancelled.", 0);
}

function failJob(text) {
  app.acceptJobData = false;
  clock.stop("failed");
  setPhase("failed");
  setStage("The reconstruction did not finish.", 0);
  showMessage(text);
}

/** The end of a job: `result` holds the engine's `quality` and `masks`, where the server sent them. */
function completeJob(totalPoints, downloads, result) {
  app.acceptJobData = false;
  app.totalPoints = totalPoints;
  app.quality = result.quality ?? null;
  app.masks = result.masks ?? null;
  clock.stop("done");
  setPhase("done");
  const received = app.pointsReceived;
  const summary =
    `${Number(totalPoints ?? received).toLocaleString()} points from ` +
    `${app.cameras || "the"} cameras`;
  const judged = { cameras: app.cameras, sparseOnly: app.sparseOnly };
  notices.result(describeResult(app.quality, app.masks, summary, judged));
  updateStats();
  revealStatus();
  if (totalPoints !== undefined && totalPoints !== received) {
    showMessage(`The server reported ${totalPoints} points but ${received} arrived.`, "warning");
  }
  app.downloads = downloads;
  showDownloads(ui.downloads, ui.downloadList, downloads);
  controls.choosePointSize(ui.viewport.clientHeight);
  sceneTools.jobDone(result);
  surface.jobDone(downloads);
  if (app.jobId) {
    history.replaceState(null, "", `#job=${app.jobId}`);
    const verdict = app.quality?.verdict ?? null;
    const sent = photos.usable;
    const firstPhoto = sent[0]?.name ?? "";
    const date = result.created_at;
    const count = app.photosSent || sent.length; // a video's frames are photos
    recent.remember({ jobId: app.jobId, photos: count, verdict, firstPhoto, date });
  }
}

/** Forget what the job sent so far (not the job): its stream is about to start over. */
function restartStream() {
  view.clear();
  app.framesReceived = 0;
  app.binaryFrames = 0;
  app.jsonMessages = 0;
  app.pointsReceived = 0;
  app.bytesReceived = 0;
  app.cameras = 0;
  app.sparseOnly = false;
  app.frameLog = [];
  app.framesInRenders = 0;
  controls.reset();
  updateStats();
}

/**
 * What the page says when a job starts over (feature "restart"): the server's reason as a
 * sentence, and what became of the view. A second restart's notice replaces the first's.
 * @param {string | undefined} reason e.g. "the worker running this job stopped (…): the job
 *   runs again from the start (try 2 of 3)"
 */
function restartNotice(reason) {
  const said = (reason ?? "").trim().replace(/\.$/, "") || "the job runs again from the start";
  return `${said.charAt(0).toUpperCase()}${said.slice(1)}. The view was cleared for the new run.`;
}

function resetResult() {
  restartStream();
  app.jobId = null;
  app.reattachJobId = null;
  app.photosSent = 0;
  app.downloads = {};
  app.totalPoints = null;
  app.quality = null;
  app.masks = null;
  clock.reset();
  showDownloads(ui.downloads, ui.downloadList, {});
  if (location.hash) history.replaceState(null, "", location.pathname);
}

function newScan() {
  clearMessages();
  photos.clear();
  resetResult();
  setPhase(app.online ? "idle" : "connecting");
}

/** Mark the photos the engine could not place, and say why. */
function showDropped(dropped) {
  if (dropped.length === 0) return;
  for (const { name, reason } of dropped) {
    const photo = photos.photos.find((p) => p.name === name);
    if (photo) photos.setStatus(photo, "dropped", 1, reason);
  }
  // Each photo's own reason is beside its thumbnail; the message stays short.
  const total = app.cameras + dropped.length;
  const which = dropped.length === 1 ? dropped[0].name : `${dropped.length} of ${total} photos`;
  showMessage(
    `${which} could not be placed in the scene (the reasons are beside the photos). ` +
      "Photos that overlap more with their neighbours help.",
    "warning",
  );
}

/**
 * Show a job made earlier again (the page was loaded at /#job=<id>, or the address changed to
 * it), read over REST: its points, cameras, photos (the server's thumbnails) and the photos
 * the engine could not place, with their reasons.
 */
async function resumeJob(jobId) {
  app.openingJobId = jobId;
  updateControls();
  const { job, frames, cameras } = await loadFinishedJob(jobId, (running) => {
    if (app.openingJobId !== jobId) return;
    if (!clock.running) clock.start(Date.parse(running.created_at) || undefined);
    clock.progress(running.fraction);
    setStage(`${STAGE_NAMES[running.stage] ?? running.stage ?? "Working"}…`, running.fraction);
  });
  if (app.openingJobId !== jobId) return; // another scan was opened meanwhile
  app.openingJobId = null;
  clearMessages();
  resetResult();
  photos.showJob(job);
  app.acceptJobData = true;
  app.jobId = jobId;
  for (const frame of frames) {
    app.binaryFrames += 1;
    addFrame(frame);
  }
  app.cameras = cameras.length;
  view.setCameras(cameras);
  completeJob(job.num_points, job.downloads ?? {}, job);
  showDropped(job.dropped ?? []);
  const tookMs = Date.parse(job.finished_at) - Date.parse(job.created_at);
  if (tookMs >= 0) clock.showTotal(tookMs);
}

function openJob(jobId) {
  const open = () =>
    resumeJob(jobId).catch((error) => {
      if (app.openingJobId !== jobId) return;
      app.openingJobId = null;
      clock.reset();
      // The address names what is on screen again, so that a reload does not try once more.
      history.replaceState(null, "", app.jobId ? `#job=${app.jobId}` : location.pathname);
      updateControls();
      showMessage(`Could not show the scan: ${error.message}.`);
    });
  if (app.online) {
    open();
    return;
  }
  const onOpen = () => {
    connection.removeEventListener("open", onOpen);
    open();
  };
  connection.addEventListener("open", onOpen);
}

// A link to another scan (the recent list, a pasted address) changes the hash of an open tab.
followAddress({
  shown: () => [app.jobId, app.openingJobId],
  open: (jobId) => {
    if (isBusy()) {
      showMessage(
        "A reconstruction is running: open the other scan when it has finished (or in another tab).",
        "warning",
      );
      return false;
    }
    openJob(jobId);
    return true;
  },
});

// ---------------------------------------------------------------- buttons, picking and dropping

ui.start.addEventListener("click", () => start());
ui.cancel.addEventListener("click", () => cancel());
ui.newScan.addEventListener("click", () => newScan());

function addPhotos(files) {
  if (isBusy()) {
    showMessage("Photos cannot be added while a reconstruction runs.", "warning");
    return;
  }
  if (app.phase === "done") newScan();
  photos.add(files);
  if (app.phase === "failed") setPhase("idle");
}

listenForFiles(ui.fileInput, ui.dropzone, addPhotos, isBusy);

// ---------------------------------------------------------------- start

showDownloads(ui.downloads, ui.downloadList, {});
controls.reset();
updateStats();
setPhase("connecting");
connection.connect();
const resumeId = jobInAddress();
if (resumeId) openJob(resumeId);
