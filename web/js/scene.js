// The 3D view: renderer, orbit camera, and the content (points, camera frustums and, once asked
// for, the surface) placed so that "up" on screen is "up" in the photos. Renders only when
// something changed, and while points stream in under a still camera it draws only the new
// frames over the last picture (the drawing buffer and its depth are kept), so a frame costs
// its own points, not the cloud's.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import {
  cameraCentres,
  createFrustums,
  disposeFrustums,
  meanCameraUp,
  setPickedFrustum,
} from "./cameras.js";
import { PointCloudLayer } from "./cloud.js";
import { PreviewLayer } from "./preview.js";
import { SurfaceLayer } from "./surface.js";

// Engine worlds use OpenCV axes (y down, z forward from the first photo). Turned half a turn
// about x, the first photo's view looks down -z with y up, as three.js expects.
const INCREMENT_LAYER = 1;
const OPENCV_WORLD_TO_VIEW = new THREE.Quaternion().setFromAxisAngle(
  new THREE.Vector3(1, 0, 0),
  Math.PI,
);

export class SceneView {
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.renderer.setClearColor(0x15171c);
    container.appendChild(this.renderer.domElement);

    this.camera = new THREE.PerspectiveCamera(50, 1, 0.01, 1000);
    this.camera.position.set(0, 0, 3);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener("change", () => {
      if (!this.fitting) this.requestRender();
    });
    // Once a person moves the view, new points no longer move it for them.
    this.controls.addEventListener("start", () => {
      this.autoFit = false;
      // A view chosen for a preview frames the preview's own world, not the result's.
      if (this.preview.shown && this.cloud.frames.length === 0) this.movedOnPreview = true;
    });

    this.scene = new THREE.Scene();
    this.content = new THREE.Group();
    this.content.quaternion.copy(OPENCV_WORLD_TO_VIEW);
    this.scene.add(this.content);
    this.cloud = new PointCloudLayer();
    this.cloud.uniforms.pixelRatio.value = this.renderer.getPixelRatio();
    this.content.add(this.cloud.group);
    this.preview = new PreviewLayer(); // a job's provisional look while it runs
    this.content.add(this.preview.group);
    // The job's mesh, in the world's axes like the points, and its lights, in the scene's.
    this.surface = new SurfaceLayer();
    this.content.add(this.surface.group);
    this.scene.add(this.surface.lights);
    this.look = "points"; // "points", "surface" or "both" (surface.js)
    this.frustums = null;
    this.camerasVisible = true;
    this.cameras = [];
    this.pickedPhoto = null; // the camera index picked (its photo shown, its points highlighted)
    // "select" (detail: the index or null), "cameras", "preview" (detail: its message, or null
    // once it is gone), "clear", and "render" after each picture.
    this.events = new EventTarget();

    this.autoFit = true;
    this.movedOnPreview = false;
    this.fitPending = false;
    this.renderPending = false;
    this.redrawAll = true; // false: only newFrames need drawing over the last picture
    this.fitting = false;
    this.fitted = null; // the box the camera frames: {centre, radius}
    this.newFrames = [];
    this.framesRendered = 0;
    // Called after each render; may return a function to call with the time (epoch ms) at
    // which the picture was drawn: when the GPU is done with waitForGpu, else at once.
    this.onRender = null;
    this.waitForGpu = false;

    const placeholders = this.cloud.placeholders();
    this.content.add(...placeholders);
    this.renderer.render(this.scene, this.camera);
    this.renderer.clear();
    this.content.remove(...placeholders);
    for (const placeholder of placeholders) placeholder.geometry.dispose();

    new ResizeObserver(() => this._resize()).observe(container);
    this._resize();
  }

  /** Add a decoded point frame; the view follows the cloud until the person takes over. */
  addFrame(frame) {
    this.newFrames.push(this.cloud.add(frame));
    if (this.autoFit) this.fitPending = true;
    // The result's first points replace the preview's.
    const replaces = this.preview.points !== null;
    if (replaces) this.preview.hidePoints();
    if (replaces && this.movedOnPreview) {
      // The person moved the view around a preview, whose world is not the result's: the
      // result's first points are framed once, then it is theirs again.
      this.movedOnPreview = false;
      this.resetView();
    }
    this.requestRender(replaces);
    if (replaces) this._previewChanged();
  }

  /**
   * Show a "preview" message (feature "preview"): provisional cameras and sparse points,
   * replacing the preview before. The view follows them until the person moves it.
   */
  setPreview(message) {
    this.preview.show(message, (cameras, box) => this._frustumDepth(cameras, box));
    // Once the result's points are here, a late preview's points are not shown.
    if (this.cloud.frames.length > 0) this.preview.hidePoints();
    if (this.cameras.length > 0) this.preview.hideCameras();
    if (this.preview.frustums) this.preview.frustums.visible = this.camerasVisible;
    if (this.cameras.length === 0) this._level();
    if (this.autoFit) this.fitPending = true;
    this.requestRender();
    this._previewChanged();
  }

  _previewChanged() {
    const detail = this.preview.shown ? this.preview.message : null;
    this.events.dispatchEvent(new CustomEvent("preview", { detail }));
  }

  /** Show the cameras of a "cameras" message (replacing earlier ones). */
  setCameras(cameras) {
    this.cameras = cameras;
    // The result's cameras replace the preview's.
    const hadPreview = this.preview.frustums !== null;
    if (hadPreview) this.preview.hideCameras();
    const before = this.content.quaternion.clone();
    this._level();
    // Frustums added to an unchanged picture are drawn over it, like new points.
    let redraw = hadPreview || this.content.quaternion.angleTo(before) > 1e-9;
    if (this.frustums) {
      this.content.remove(this.frustums);
      disposeFrustums(this.frustums);
      this.frustums = null;
      redraw = true;
    }
    if (cameras.length > 0) {
      this.frustums = createFrustums(cameras, this._frustumDepth());
      this.frustums.visible = this.camerasVisible;
      if (this.pickedPhoto !== null) setPickedFrustum(this.frustums, this.pickedPhoto);
      this.content.add(this.frustums);
      this.newFrames.push(this.frustums);
    }
    if (this.autoFit) this.fitPending = true;
    this.requestRender(redraw);
    this.events.dispatchEvent(new Event("cameras"));
    if (hadPreview) this._previewChanged();
  }

  setCamerasVisible(visible) {
    this.camerasVisible = visible;
    if (this.frustums) this.frustums.visible = visible;
    if (this.preview.frustums) this.preview.frustums.visible = visible;
    if (this.autoFit) this.fitPending = true;
    this.requestRender();
  }

  /**
   * Pick the photo of camera `index` (null: none): its frustum and points stand out, and
   * listeners of "select" show the photo. Changes materials only, uploads nothing.
   */
  selectPhoto(index) {
    const picked = Number.isInteger(index) && index >= 0 && index < this.cameras.length ? index : null;
    this.pickedPhoto = picked;
    this.cloud.setPickedView(picked);
    if (this.frustums) setPickedFrustum(this.frustums, picked);
    this.requestRender();
    this.events.dispatchEvent(new CustomEvent("select", { detail: picked }));
  }

  /** Hide the points of the views whose indices are given; all others are drawn. */
  setHiddenViews(indices) {
    this.cloud.setHiddenViews(indices);
    this.requestRender();
  }

  setPointSize(pixels) {
    this.cloud.setPointSize(pixels);
    this.requestRender();
  }

  setThreshold(threshold) {
    this.cloud.setThreshold(threshold);
    this.requestRender();
  }

  /**
   * Show the points, the surface (where one is set: surface.js) or both; without a surface,
   * the points. Uploads nothing.
   * @param {"points" | "surface" | "both"} look
   */
  setLook(look) {
    const surface = this.surface.object !== null && look !== "points";
    this.look = surface ? look : "points";
    this.surface.group.visible = surface;
    this.cloud.group.visible = this.look !== "surface";
    this.requestRender();
  }

  /** Back to the automatic view of the whole cloud. */
  resetView() {
    this.autoFit = true;
    this.fitted = null;
    this.fitPending = true;
    this.requestRender();
  }

  clear() {
    this.newFrames = [];
    this.movedOnPreview = false;
    this.cloud.clear();
    this.preview.clear();
    this.surface.clear();
    this.setLook("points");
    this._previewChanged();
    const hadPick = this.pickedPhoto !== null;
    this.pickedPhoto = null;
    this.setCameras([]);
    this.content.quaternion.copy(OPENCV_WORLD_TO_VIEW);
    this.resetView();
    if (hadPick) this.events.dispatchEvent(new CustomEvent("select", { detail: null }));
    this.events.dispatchEvent(new Event("clear"));
  }

  /** Draw at the next animation frame; `everything` false: only frames added since the last. */
  requestRender(everything = true) {
    if (everything) this.redrawAll = true;
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => this._render());
  }

  _render() {
    this.renderPending = false;
    if (this.fitPending) {
      this.fitPending = false;
      this._fit();
    }
    if (this.controls.update()) this.redrawAll = true;
    if (this.redrawAll) {
      if (this.surface.group.visible) this.surface.followCamera(this.camera);
      this.renderer.render(this.scene, this.camera);
    } else {
      this._drawOver(this.newFrames);
    }
    this.redrawAll = false;
    this.newFrames = [];
    this.framesRendered += 1;
    this.events.dispatchEvent(new Event("render"));
    const whenDrawn = this.onRender ? this.onRender() : null;
    if (!whenDrawn) return;
    if (this.waitForGpu) {
      this._whenGpuDone(whenDrawn);
    } else {
      whenDrawn(performance.timeOrigin + performance.now());
    }
  }

  /**
   * Timing runs: call `done(epochMs)` once the GPU has finished the commands issued so far,
   * watched through a fence so that the page goes on receiving meanwhile.
   */
  _whenGpuDone(done) {
    const gl = this.renderer.getContext();
    const fence = gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
    gl.flush();
    const poll = () => {
      if (gl.getSyncParameter(fence, gl.SYNC_STATUS) !== gl.SIGNALED) {
        setTimeout(poll, 2);
        return;
      }
      gl.deleteSync(fence);
      done(performance.timeOrigin + performance.now());
    };
    poll();
  }

  /** Draw only `objects` over the picture and depth left by the last render. */
  _drawOver(objects) {
    const setLayer = (layer) => {
      for (const object of objects) object.traverse((child) => child.layers.set(layer));
    };
    setLayer(INCREMENT_LAYER);
    this.camera.layers.set(INCREMENT_LAYER);
    this.renderer.autoClear = false;
    try {
      this.renderer.render(this.scene, this.camera);
    } finally {
      this.renderer.autoClear = true;
      this.camera.layers.set(0);
      setLayer(0);
    }
  }

  /**
   * Turn the content so that the photos' average up direction points up on screen (the
   * preview's cameras until the result's come).
   */
  _level() {
    const up = meanCameraUp(this.cameras.length > 0 ? this.cameras : this.preview.cameras);
    this.content.quaternion.copy(OPENCV_WORLD_TO_VIEW);
    if (!up) return;
    const upInView = up.clone().applyQuaternion(OPENCV_WORLD_TO_VIEW);
    const tilt = new THREE.Quaternion().setFromUnitVectors(upInView, new THREE.Vector3(0, 1, 0));
    this.content.quaternion.premultiply(tilt);
  }

  /** How deep to draw the frustums of `cameras` near the points in `box`, in world units. */
  _frustumDepth(cameras = this.cameras, box = this.cloud.robustBox()) {
    const centres = cameraCentres(cameras).map((c) => new THREE.Vector3(...c));
    const median = (values) => {
      const sorted = values.filter((v) => v > 0 && Number.isFinite(v)).sort((a, b) => a - b);
      return sorted.length > 0 ? sorted[Math.floor(sorted.length / 2)] : null;
    };
    // A quarter of the spacing of neighbouring cameras, so that frustums do not overlap (a
    // long lens's narrow frustums may go deeper by its focal length in image widths) ...
    const lens = median(cameras.map((camera) => camera.K[0][0] / camera.width)) ?? 1;
    const neighbours = median(
      centres.map((c, i) => Math.min(...centres.filter((_, j) => j !== i).map((d) => c.distanceTo(d)))),
    );
    const spacing = neighbours && neighbours * Math.max(1, lens);
    // ... and a tenth of the distance to the cloud, so that they do not hide it.
    const reach = box ? median(centres.map((c) => c.distanceTo(box.getCenter(new THREE.Vector3())))) : null;
    const depths = [spacing && 0.25 * spacing, reach && 0.1 * reach].filter((d) => d);
    return depths.length > 0 ? Math.min(...depths) : 0.1;
  }

  /**
   * Box (view coordinates) around the bulk of the points and, while they are shown, the
   * cameras: a long lens's cameras stand far from what they see, and are framed too.
   */
  _contentBox() {
    const box = this.cloud.robustBox() ?? new THREE.Box3();
    const previewBox = this.preview.box();
    if (previewBox) box.union(previewBox);
    const cameras = [...this.cameras, ...this.preview.cameras];
    if (this.camerasVisible && cameras.length > 0) {
      for (const centre of cameraCentres(cameras)) box.expandByPoint(new THREE.Vector3(...centre));
    }
    if (box.isEmpty()) return null;
    this.content.updateMatrixWorld();
    return box.applyMatrix4(this.content.matrixWorld);
  }

  /**
   * Frame the bulk of the cloud. While points stream in, the camera moves only when the cloud
   * outgrew the view or shrank well inside it: a calm view, and new frames drawn over the last.
   */
  _fit() {
    const box = this._contentBox();
    if (!box) return;
    const centre = box.getCenter(new THREE.Vector3());
    const radius = Math.max(box.getSize(new THREE.Vector3()).length() / 2, 1e-6);
    const fitted = this.fitted;
    if (
      fitted &&
      !this.redrawAll &&
      centre.distanceTo(fitted.centre) < 0.1 * fitted.radius &&
      radius < 1.1 * fitted.radius &&
      radius > 0.7 * fitted.radius
    ) {
      return;
    }
    this.fitted = { centre, radius };
    const halfFov = THREE.MathUtils.degToRad(this.camera.fov / 2);
    const fitHorizontally = Math.atan(Math.tan(halfFov) * this.camera.aspect);
    const distance = (1.15 * radius) / Math.sin(Math.min(halfFov, fitHorizontally));

    // Look the way the first photo looked, from a little above.
    const direction = new THREE.Vector3(0, 0.35, 1);
    const cameras = this.cameras.length > 0 ? this.cameras : this.preview.cameras;
    if (cameras.length > 0) {
      const first = new THREE.Vector3(...cameraCentres(cameras)[0]);
      first.applyMatrix4(this.content.matrixWorld).sub(centre);
      first.y = Math.max(first.y, 0) + 0.35 * first.length();
      if (first.lengthSq() > 1e-12) direction.copy(first);
    }
    direction.normalize();
    this.camera.position.copy(centre).addScaledVector(direction, distance);
    this.camera.near = distance / 200;
    this.camera.far = distance * 50;
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(centre);
    this.fitting = true; // this render is already under way
    this.controls.update();
    this.fitting = false;
    this.cloud.uniforms.referenceDistance.value = distance;
    this.redrawAll = true;
  }

  _resize() {
    const { clientWidth: width, clientHeight: height } = this.container;
    if (width === 0 || height === 0) return;
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.requestRender();
  }
}
