// make examples-check: every Kubernetes document under examples/ against its schema (the
// custom resources with the @kubernetes-models packages, the core kinds with
// kubernetes-validate on Kubernetes 1.30 to 1.37), images pinned by digest once
// tools/fill-examples.sh filled them in, each set of sets.json by the wiring rule, and
// each file's "# Checked against:" header. Prints every failure, exits 1 if any.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  PACKAGES, headerErrors, isCore, membershipErrors, packageVersion, parseDocuments, pinningErrors, schemaValidator, validateStrictly, wiringErrors,
} from "./lib.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = join(here, "..", "..");
const manifest = JSON.parse(readFileSync(join(here, "sets.json"), "utf8"));
const coreValidator = `kubernetes-validate ${readFileSync(join(here, "requirements.txt"), "utf8").match(/^kubernetes-validate==(\S+)/m)[1]}`;

const yamlFiles = (dir) => readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
  const path = `${dir}/${e.name}`;
  if (e.isDirectory()) return yamlFiles(path);
  return /\.ya?ml$/.test(e.name) ? [path] : [];
});

// The examples as a user applies them: through tools/fill-examples.sh, with a digest.
const scratch = mkdtempSync(join(tmpdir(), "examples-check-"));
const digest = "0123456789abcdef".repeat(4);
writeFileSync(join(scratch, "image-digest"), `sha256:${digest}\n`);
const filled = new Set(
  execFileSync(join(root, "tools/fill-examples.sh"), [scratch, join(scratch, "examples")], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    .trim().split("\n").map((p) => `examples/${relative(join(scratch, "examples"), p)}`),
);
const read = (file) => readFileSync(filled.has(file) ? join(scratch, file) : join(root, file), "utf8");

const errors = [];
const docsOf = new Map();
const core = [];
let custom = 0;
for (const file of yamlFiles("examples")) {
  const format = manifest.formats[file];
  let docs;
  try {
    docs = parseDocuments(read(file), file);
  } catch (e) {
    errors.push(e.message);
    continue;
  }
  docsOf.set(file, docs);
  const used = new Set();
  if (format?.startsWith("patch ")) {
    // A strategic-merge patch of a workload: checked merged into a minimal one.
    const [, apiVersion, kind] = format.split(" ");
    docs.forEach((patch, i) => {
      const doc = { apiVersion, kind, metadata: { name: "patched" }, spec: { selector: { matchLabels: { app: "patched" } }, ...patch.spec } };
      core.push({ where: `${file} (patch ${i + 1}, merged into a ${kind})`, doc });
    });
    used.add(coreValidator);
  } else if (!format) {
    for (const [i, doc] of docs.entries()) {
      const where = `${file}: document ${i + 1} (${doc.kind ?? "no kind"})`;
      if (!doc.apiVersion || !doc.kind) {
        errors.push(`${where}: not a Kubernetes resource; declare its format in tools/examples-check/sets.json`);
      } else if (isCore(doc.apiVersion)) {
        core.push({ where, doc });
        used.add(coreValidator);
      } else {
        try {
          errors.push(...validateStrictly(await schemaValidator(doc.apiVersion, doc.kind), doc).map((e) => `${where}: ${e}`));
          const pkg = `@kubernetes-models/${PACKAGES[doc.apiVersion.split("/")[0]]}`;
          used.add(`${pkg} ${packageVersion(pkg.split("/")[1])}`);
          custom += 1;
        } catch (e) {
          errors.push(`${where}: ${e.message}`);
        }
        errors.push(...pinningErrors(doc, where));
      }
    }
  }
  errors.push(...headerErrors(file, readFileSync(join(root, file), "utf8"), [...used]));
}

const python = spawnSync(process.env.PYTHON || "python3", [join(here, "core.py")], {
  input: JSON.stringify(core), encoding: "utf8", env: { ...process.env, PYTHONPATH: join(here, ".python") },
});
if (python.status !== 0) errors.push(...`${python.stdout}${python.stderr}`.trim().split("\n"));

errors.push(...membershipErrors([...docsOf.keys()], manifest.sets));
let sets = 0;
for (const set of manifest.sets.filter((s) => s.files.every((f) => docsOf.has(f)))) {
  errors.push(...wiringErrors(set.name, set.files.map((file) => ({ file, docs: docsOf.get(file) }))));
  sets += 1;
}
rmSync(scratch, { recursive: true });

if (errors.length) {
  for (const e of errors) console.error(e);
  console.error(`examples-check: ${errors.length} failure(s)`);
  process.exit(1);
}
console.log(`examples-check: ${docsOf.size} files; ${custom} custom resources against their packaged schemas, ${core.length} core documents with ${coreValidator} on Kubernetes 1.30-1.37; ${sets} example sets wired with every backend path guarded`);
