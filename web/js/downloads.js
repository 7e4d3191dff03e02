// The Download menu: one link per file the server lists for a finished job.

const FORMAT_NAMES = {
  ply: "Point cloud (.ply)",
  glb: "3D model (.glb)",
  colmap: "COLMAP model",
  transforms: "transforms.json (NeRF / Gaussian splatting)",
  cameras: "Cameras (.json)",
  zip: "Everything (.zip)",
};

/** Fill the menu (a <details> around `list`) from {format: url}; hidden when there are none. */
export function showDownloads(menu, list, downloads) {
  const entries = Object.entries(downloads);
  list.replaceChildren(
    ...entries.map(([format, url]) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = url;
      link.download = "";
      link.textContent = FORMAT_NAMES[format] ?? format;
      link.dataset.format = format;
      item.appendChild(link);
      return item;
    }),
  );
  menu.hidden = entries.length === 0;
  if (entries.length === 0) menu.open = false;
}
