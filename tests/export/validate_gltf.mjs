// Runs the Khronos glTF validator (npm: gltf-validator, installed in web/node_modules by
// `make install`) on GLB files: node validate_gltf.mjs <validator folder> <file.glb>...
// Prints one JSON line per file: {"file", "errors", "warnings", "messages"}; exits 1 when a
// file has errors. The tests in this folder run it on every GLB they write (gltf_check.py).
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const [validatorFolder, ...files] = process.argv.slice(2);
const validator = createRequire(import.meta.url)(validatorFolder);
let failed = false;
for (const file of files) {
  const report = await validator.validateBytes(new Uint8Array(await readFile(file)), {
    uri: file,
    maxIssues: 20,
    externalResourceFunction: () => Promise.reject(new Error("a GLB needs no other file")),
  });
  const issues = report.issues;
  const messages = issues.messages.map(
    (m) => `${["error", "warning", "info", "hint"][m.severity]} ${m.code} at ${m.pointer}: ${m.message}`,
  );
  console.log(
    JSON.stringify({ file, errors: issues.numErrors, warnings: issues.numWarnings, messages }),
  );
  failed ||= issues.numErrors > 0;
}
process.exit(failed ? 1 : 0);
