// The Download menu: one link per file the server lists for a finished job, with a name and a
// hint of what it is for. The keys are those of aetherscan.export.FORMATS (the `downloads` of
// a job); the browser names each file as the server's Content-Disposition says.

const FORMATS = {
  ply: { label: "Point cloud (PLY)", hint: "for MeshLab, CloudCompare, Blender" },
  ply_ascii: {
    label: "Point cloud (PLY, text)",
    hint: "the same points as plain text, for scripts",
  },
  glb: { label: "Points and cameras (GLB)", hint: "for Blender, three.js, web viewers" },
  colmap: { label: "COLMAP model with photos", hint: "for COLMAP, OpenMVS, Gaussian splatting" },
  colmap_text: {
    label: "COLMAP model with photos (text)",
    hint: "the same, in readable text files",
  },
  nerfstudio: {
    label: "transforms.json with photos",
    hint: "for nerfstudio / Gaussian splatting, instant-ngp",
  },
  cameras: {
    label: "Cameras (cameras.json)",
    hint: "each photo's pose and lens, for your own code",
  },
  depth: { label: "Depth and confidence maps", hint: "one map per photo, as images" },
  all: { label: "Everything (zip)", hint: "all of the above in one archive" },
  // Listed after the archive, which does not hold them: the server makes the mesh on the
  // first request of any of them (seconds for a large cloud), then keeps it.
  mesh_ply: {
    label: "Mesh (PLY, vertex colours)",
    hint: "the surface of the points, for MeshLab, Blender, CloudCompare",
  },
  mesh_glb: { label: "Mesh (GLB)", hint: "the coloured surface for three.js, web viewers, Blender" },
  mesh_obj: {
    label: "Mesh (OBJ)",
    hint: "for most 3D programs; vertex colours as MeshLab and Blender read them",
  },
};

/** The words for a format key; a key this page does not know is shown as it is. */
export function describeFormat(format) {
  return FORMATS[format] ?? { label: format, hint: "" };
}

/** Fill the menu (a <details> around `list`) from {format: url}; hidden when there are none. */
export function showDownloads(menu, list, downloads) {
  const entries = Object.entries(downloads);
  list.replaceChildren(
    ...entries.map(([format, url]) => {
      const { label, hint } = describeFormat(format);
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = url;
      link.setAttribute("download", ""); // no value: the server's file name is kept
      link.dataset.format = format;
      const name = document.createElement("span");
      name.className = "format-label";
      name.textContent = label;
      link.appendChild(name);
      if (hint) {
        const note = document.createElement("small");
        note.className = "format-hint";
        note.textContent = hint;
        link.appendChild(note);
      }
      item.appendChild(link);
      return item;
    }),
  );
  menu.hidden = entries.length === 0;
  if (entries.length === 0) menu.open = false;
}
