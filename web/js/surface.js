// @ts-check
// The job's surface: the triangle mesh the server makes of its points (screened Poisson, on
// the first request of mesh.glb, then kept), shown instead of the points or with them.
//
// mesh.glb is in glTF's axes: the reconstruction's world turned half a turn about x (x, y, z ->
// x, -y, -z, as the points' own GLB, aetherscan.export.glb). The view's points are in the
// world's own axes inside SceneView.content, so the mesh is turned back by the same half turn
// (it is its own inverse) and put in content beside them: both then get the content's turn to
// the screen. A job with a scale has its downloads in metres; the points stay as streamed,
// so the mesh is scaled back to them.
//
// SurfaceLayer is the scene's part (the mesh and the lights it needs: a hemisphere light for
// up and down and a light from just behind the viewer, so that the shape reads from any side);
// SurfaceChoice is the control in step 3 (Points / Surface / Both) that fetches it once.

import * as THREE from "three";
import { serverDetail } from "./measure.js";

const GLTF_TO_WORLD = new THREE.Quaternion().setFromAxisAngle(new THREE.Vector3(1, 0, 0), Math.PI);
// Where the headlight comes from, in the camera's axes: behind the viewer, above and to the left.
const HEADLIGHT_FROM = new THREE.Vector3(-0.55, 0.65, 0.8).normalize();

const BACK_FACE_SHADE = 0.35; // the share of the light the side no photo saw gets

/** @typedef {"points" | "surface" | "both"} Look */

/** sRGB bytes (0-255) to linear light, once for every byte value. */
const SRGB_TO_LINEAR = Float32Array.from({ length: 256 }, (_, byte) => {
  const c = byte / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});

/**
 * The vertex colours of a mesh from mesh.glb as linear floats. The server writes the photos'
 * sRGB bytes as they are (as it does for the points, which the page draws unconverted), and
 * three.js takes COLOR_0 as linear: converted here, a surface in full light shows the photos'
 * own colours, the same as its points.
 * @param {THREE.BufferAttribute} colours RGB or RGBA, normalized (0..1 as read)
 * @returns {THREE.BufferAttribute} RGB floats
 */
function linearColours(colours) {
  const rgb = new Float32Array(3 * colours.count);
  for (let i = 0; i < colours.count; i++) {
    for (let c = 0; c < 3; c++) {
      const byte = Math.round(255 * Math.min(1, Math.max(0, colours.getComponent(i, c))));
      rgb[3 * i + c] = SRGB_TO_LINEAR[byte];
    }
  }
  return new THREE.BufferAttribute(rgb, 3);
}

/**
 * Fetch and read a job's mesh.glb: a group holding the mesh in the world's axes and units
 * (`metresPerUnit`: the job's scale, or null for the engine's units). Throws an Error whose
 * message is a sentence for people: the server's own where it refused, with its `status`
 * (409: no surface can be made of these points, and the message says why).
 * @param {string} url
 * @param {number | null} metresPerUnit
 * @returns {Promise<{object: THREE.Group, triangles: number}>}
 */
export async function loadSurface(url, metresPerUnit = null) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new Error(`the server could not be reached (${error.message})`);
  }
  if (!response.ok) {
    // 409: the server cannot make a surface of these points, and says why.
    throw Object.assign(new Error(await serverDetail(response)), { status: response.status });
  }
  const bytes = await response.arrayBuffer();
  // Loaded on first use only: a page that never shows a surface never fetches the loader.
  const { GLTFLoader } = await import("three/addons/loaders/GLTFLoader.js");
  let gltf;
  try {
    gltf = await new GLTFLoader().parseAsync(bytes, "");
  } catch (error) {
    throw new Error(`the server's mesh.glb could not be read (${error.message})`);
  }
  const object = new THREE.Group();
  object.name = "surface";
  object.quaternion.copy(GLTF_TO_WORLD);
  if (metresPerUnit) object.scale.setScalar(1 / metresPerUnit);
  object.add(gltf.scene);
  let triangles = 0;
  object.traverse((child) => {
    if (!(child instanceof THREE.Mesh)) return;
    const geometry = child.geometry;
    const colours = geometry.getAttribute("color");
    if (colours) geometry.setAttribute("color", linearColours(colours));
    for (const material of [child.material].flat()) shadeForTheView(material);
    triangles += (geometry.index?.count ?? geometry.getAttribute("position").count) / 3;
  });
  if (triangles === 0) {
    disposeObject(object);
    throw new Error("the server's surface has no triangles");
  }
  return { object, triangles };
}

/**
 * The mesh's material as the view wants it. With the points drawn too ("both"), the points on
 * the surface stay in front of it. Its back faces, the side that no photo saw (the normals face
 * the cameras), are drawn darker: through a hole the inside reads as an inside, not as paint.
 * @param {THREE.Material} material
 */
function shadeForTheView(material) {
  material.polygonOffset = true;
  material.polygonOffsetFactor = 1;
  material.polygonOffsetUnits = 1;
  material.onBeforeCompile = (shader) => {
    shader.fragmentShader = shader.fragmentShader.replace(
      "#include <color_fragment>",
      `#include <color_fragment>\n  if (!gl_FrontFacing) diffuseColor.rgb *= ${BACK_FACE_SHADE.toFixed(2)};`,
    );
  };
  material.customProgramCacheKey = () => "aetherscan surface";
}

/** Free the GPU buffers and materials of an object made by loadSurface. */
function disposeObject(object) {
  object.traverse((child) => {
    if (!(child instanceof THREE.Mesh)) return;
    child.geometry.dispose();
    for (const material of [child.material].flat()) material.dispose();
  });
}

/** The scene's part of the surface: the mesh (in SceneView.content) and its lights. */
export class SurfaceLayer {
  constructor() {
    /** In the content: the world's axes, beside the points. */
    this.group = new THREE.Group();
    this.group.name = "surface";
    this.group.visible = false;
    /** In the scene itself: "up" is the screen's up once the content is levelled. */
    this.lights = new THREE.Group();
    this.lights.name = "surface lights";
    const sky = new THREE.HemisphereLight(0xffffff, 0x30343e, 0.8);
    sky.position.set(0, 1, 0);
    this.headlight = new THREE.DirectionalLight(0xffffff, 2.8);
    this.lights.add(sky, this.headlight, this.headlight.target);
    /** @type {THREE.Group | null} the mesh shown, as loadSurface made it */
    this.object = null;
    this.triangles = 0;
  }

  /** Show this surface (from loadSurface) in place of any before. */
  set({ object, triangles }) {
    this.clear();
    this.object = object;
    this.triangles = triangles;
    this.group.add(object);
  }

  clear() {
    if (this.object) {
      this.group.remove(this.object);
      disposeObject(this.object);
    }
    this.object = null;
    this.triangles = 0;
  }

  /** Aim the headlight from just behind `camera`, before each picture. */
  followCamera(camera) {
    const from = HEADLIGHT_FROM.clone().applyQuaternion(camera.quaternion);
    this.headlight.target.position.copy(camera.position);
    this.headlight.position.copy(camera.position).add(from);
    this.headlight.target.updateMatrixWorld();
    this.headlight.updateMatrixWorld();
  }
}

const LOOKS = /** @type {Look[]} */ (["points", "surface", "both"]);

/**
 * The Points / Surface / Both choice of step 3, shown once a job is done and its downloads
 * include mesh_glb. The first choice of a surface fetches mesh.glb (the server may take seconds
 * to make it: the note says so meanwhile); later choices only show or hide what was fetched. A
 * refusal (409: these points make no surface) or any failure is said in the server's words,
 * and the points stay. A new job, or another job opened, drops the surface (the view's "clear").
 */
export class SurfaceChoice {
  /**
   * @param {object} options
   * @param {HTMLElement} options.group the element around the choice's buttons (hidden until usable)
   * @param {HTMLElement} options.note what the choice is doing ("Making the surface…")
   * @param {import("./scene.js").SceneView} options.view
   * @param {() => (number | null)} options.scale the job's metres per unit (null: none set)
   * @param {(text: string, level: string, key: string) => void} options.say a notice to people
   */
  constructor({ group, note, view, scale, say }) {
    this.group = group;
    this.note = note;
    this.view = view;
    this.scale = scale;
    this.say = say;
    /** @type {Map<Look, HTMLButtonElement>} */
    this.buttons = new Map();
    for (const look of LOOKS) {
      const button = /** @type {HTMLButtonElement} */ (group.querySelector(`[data-look="${look}"]`));
      this.buttons.set(look, button);
      button.addEventListener("click", () => this.choose(look));
    }
    /** @type {string | null} the job's mesh.glb, while one is offered */
    this.url = null;
    /** @type {Look} what was chosen (the view shows it once the surface is here) */
    this.look = "points";
    /** @type {Promise<boolean> | null} the fetch under way or done, for this job */
    this.loading = null;
    this.fetches = 0; // mesh.glb requests sent
    this.refused = false; // the server said these points make no surface
    this.generation = 0; // a fetch for a job no longer shown is dropped on arrival
    view.events.addEventListener("clear", () => this.jobDone({}));
    this.jobDone({});
  }

  /**
   * A job is done with these downloads ({} for none: a new job, or none shown): the choice
   * is offered where they include mesh_glb, and the surface of another job is dropped.
   * @param {Record<string, string>} downloads
   */
  jobDone(downloads) {
    const url = downloads.mesh_glb ?? null;
    this.group.hidden = url === null;
    if (url === this.url) return;
    this.url = url;
    this.generation += 1;
    this.loading = null;
    this.refused = false;
    this.look = "points";
    this.view.surface.clear();
    this._show("points");
    this._note("");
  }

  /**
   * Show the points, the surface or both: the surface fetched first where it is not yet here.
   * Resolves once that is done (the points shown instead after a failure).
   * @param {Look} look
   */
  async choose(look) {
    this.look = look;
    this._press(look);
    if (look === "points" || this.view.surface.object) {
      this._show(look);
      return;
    }
    if (this.refused || !this.url) {
      this._show("points");
      return;
    }
    // Meanwhile another job may be shown, or another choice made: what is chosen then shows.
    if (await this._load()) this._show(this.look);
  }

  /** Fetch the surface, once per job; resolves true once it is in the view. */
  _load() {
    if (this.loading) return this.loading;
    const generation = this.generation;
    const url = /** @type {string} */ (this.url);
    this._note("Making the surface…");
    this.fetches += 1;
    this.loading = loadSurface(url, this.scale()).then(
      (surface) => {
        if (generation !== this.generation) {
          disposeObject(surface.object);
          return false;
        }
        this.view.surface.set(surface);
        this._note(`${Math.round(surface.triangles).toLocaleString()} triangles`);
        return true;
      },
      (error) => {
        if (generation !== this.generation) return false;
        // A 409 will say the same again; another failure (a lost line) may pass: try again then.
        this.refused = error.status === 409;
        this.loading = null;
        this.look = "points";
        this._show("points");
        this._note(this.refused ? "No surface for these points." : "");
        this.say(`No surface to show: ${error.message}.`, "warning", "surface");
        return false;
      },
    );
    return this.loading;
  }

  /** @param {Look} look */
  _show(look) {
    this.view.setLook(look);
    this._press(look);
  }

  /** @param {Look} look */
  _press(look) {
    for (const [name, button] of this.buttons) {
      button.setAttribute("aria-pressed", String(name === look));
      if (name !== "points") button.disabled = this.refused;
    }
  }

  /** @param {string} text */
  _note(text) {
    this.note.textContent = text;
  }
}
