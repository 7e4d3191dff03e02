// Cameras from the "cameras" message, drawn as frustums.
//
// The engines give `cam_from_world` in OpenCV camera axes (x right, y down, z forward) and K in
// pixels of the original photo. three.js cameras look down -z with y up (OpenGL axes).
// `worldFromCameraGL` is the one place where one becomes the other.

import * as THREE from "three";

const OPENCV_TO_OPENGL = new THREE.Matrix4().makeScale(1, -1, -1);

/**
 * The pose of an OpenCV camera as a three.js object matrix: world_from_camera with the camera's
 * axes flipped to OpenGL (y up, looking down -z). `camFromWorld` is a 4x4 nested array.
 */
export function worldFromCameraGL(camFromWorld) {
  const camFromWorldCV = new THREE.Matrix4().set(...camFromWorld.flat()); // row-major in
  return camFromWorldCV.invert().multiply(OPENCV_TO_OPENGL);
}

/**
 * Line segments of a frustum in OpenGL camera axes, `depth` world units deep: apex to the four
 * image corners, the image rectangle, and a small triangle on the top edge to show which way is up.
 */
function frustumGeometry(camera, depth) {
  const [[fx, , cx], [, fy, cy]] = camera.K;
  const corner = (u, v) => [((u - cx) / fx) * depth, (-(v - cy) / fy) * depth, -depth];
  const { width: w, height: h } = camera;
  const tl = corner(0, 0);
  const tr = corner(w, 0);
  const br = corner(w, h);
  const bl = corner(0, h);
  const apex = [0, 0, 0];
  const up = corner(w / 2, -0.15 * h);
  const upLeft = corner(0.4 * w, 0);
  const upRight = corner(0.6 * w, 0);
  const segments = [
    apex, tl, apex, tr, apex, br, apex, bl,
    tl, tr, tr, br, br, bl, bl, tl,
    upLeft, up, up, upRight,
  ];
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.Float32BufferAttribute(segments.flat(), 3));
  return geometry;
}

/** Camera centres in world coordinates, one [x, y, z] per camera. */
export function cameraCentres(cameras) {
  return cameras.map((camera) => {
    const e = worldFromCameraGL(camera.cam_from_world).elements;
    return [e[12], e[13], e[14]];
  });
}

/**
 * The average "up" direction of the photos in world coordinates: people hold cameras roughly
 * level, so this is close to gravity's opposite. Returns a THREE.Vector3 (unit) or null.
 */
export function meanCameraUp(cameras) {
  const sum = new THREE.Vector3();
  const up = new THREE.Vector3();
  for (const camera of cameras) {
    const pose = worldFromCameraGL(camera.cam_from_world);
    sum.add(up.set(0, 1, 0).transformDirection(pose));
  }
  return sum.lengthSq() > 1e-12 ? sum.normalize() : null;
}

const FRUSTUM_COLOUR = 0xffb020;
const PICKED_COLOUR = 0x4fe0ff;

/**
 * A group of frustums for `cameras`, each `depth` world units deep; child `i` is camera `i`.
 * `colour`: the lines' colour (preview cameras are drawn dimmer).
 */
export function createFrustums(cameras, depth, colour = FRUSTUM_COLOUR) {
  const group = new THREE.Group();
  group.name = "cameras";
  const material = new THREE.LineBasicMaterial({ color: colour });
  const picked = new THREE.LineBasicMaterial({ color: PICKED_COLOUR });
  group.userData.materials = { plain: material, picked };
  cameras.forEach((camera, index) => {
    const lines = new THREE.LineSegments(frustumGeometry(camera, depth), material);
    lines.name = camera.name ?? `camera ${index}`;
    lines.matrixAutoUpdate = false;
    lines.matrix.copy(worldFromCameraGL(camera.cam_from_world));
    group.add(lines);
  });
  return group;
}

/** Draw frustum `index` of a group made by createFrustums in the picked colour (null: none). */
export function setPickedFrustum(group, index) {
  const { plain, picked } = group.userData.materials;
  group.children.forEach((lines, i) => {
    lines.material = i === index ? picked : plain;
  });
}

/** Free the GPU buffers of a group made by createFrustums. */
export function disposeFrustums(group) {
  group.traverse((object) => {
    if (object.geometry) object.geometry.dispose();
  });
  for (const material of Object.values(group.userData.materials)) material.dispose();
}
