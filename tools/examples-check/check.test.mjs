// Each check of check.mjs failing on a broken example, and tools/fill-examples.sh refusing
// what a bare envsubst would have let through (node --test).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { headerErrors, membershipErrors, parseDocuments, pinningErrors, schemaValidator, validateStrictly, wiringErrors } from "./lib.mjs";

const root = fileURLToPath(new URL("../..", import.meta.url));
const example = (file) => ({ file, docs: parseDocuments(readFileSync(join(root, file), "utf8"), file) });
const gateway = () => example("examples/envoy-gateway/gateway.yaml");
const digest = "0123456789abcdef".repeat(4);

test("the fleet Envoy Gateway policy guarding only /api/resource leaves /hooks/store unguarded", () => {
  const fleet = example("examples/fleet/envoy-gateway.yaml");
  assert.deepEqual(wiringErrors("fleet", [gateway(), fleet]), []);
  const config = fleet.docs[0].spec.wasm[0].config;
  config.endpoints = config.endpoints.filter((e) => e.path === "/api/resource");
  const errors = wiringErrors("fleet", [gateway(), fleet]);
  assert.equal(errors.length, 1);
  assert.match(errors[0], /HTTPRoute webhooks .* sends \/hooks\/store to the backend/);
  // "unguarded": "reject" makes the same set safe: the filter answers 404.
  config.unguarded = "reject";
  assert.deepEqual(wiringErrors("fleet", [gateway(), fleet]), []);
});

test("a prefix route sends every path: only a rejecting configuration guards it", () => {
  const routes = gateway();
  routes.docs[2].spec.rules[0].matches.push({ path: { type: "PathPrefix", value: "/hooks" } });
  const policy = example("examples/envoy-gateway/extension-policy.yaml");
  assert.match(wiringErrors("s", [routes, policy]).join("\n"), /PathPrefix.*sends every path/);
  policy.docs[0].spec.wasm[0].config.unguarded = "reject";
  assert.deepEqual(wiringErrors("s", [routes, policy]), []);
  // A rule without matches routes every path too.
  delete routes.docs[2].spec.rules[0].matches;
  policy.docs[0].spec.wasm[0].config.unguarded = "pass";
  assert.match(wiringErrors("s", [routes, policy]).join("\n"), /"every path" sends every path/);
});

test("a route no policy targets, or a set without routes, fails", () => {
  const policy = example("examples/envoy-gateway/extension-policy.yaml");
  policy.docs[0].spec.targetRefs[0].name = "elsewhere";
  assert.match(wiringErrors("s", [gateway(), policy]).join("\n"), /no webhook-guard configuration applies/);
  assert.match(wiringErrors("s", [example("examples/tls/sds.yaml")]).join("\n"), /no route to the backend/);
});

test("a later file's resource replaces an earlier one of the same name, as kubectl apply does", () => {
  const stream = example("examples/envoy-gateway/extension-policy.yaml");
  const narrow = example("examples/envoy-gateway/extension-policy.yaml");
  narrow.docs[0].spec.wasm[0].config.endpoints.pop();
  assert.equal(wiringErrors("s", [gateway(), stream, narrow]).length, 1);
  assert.deepEqual(wiringErrors("s", [gateway(), narrow, stream]), []);
});

test("plain Envoy: a forwarding route outside the endpoints fails, a direct response does not", () => {
  const envoy = example("examples/envoy-production.yaml");
  assert.deepEqual(wiringErrors("s", [envoy]), []);
  const routes = envoy.docs[0].static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes;
  routes.push({ match: { prefix: "/" }, direct_response: { status: 404 } });
  assert.deepEqual(wiringErrors("s", [envoy]), []);
  routes.push({ match: { path: "/health" }, route: { cluster: "backend" } });
  assert.match(wiringErrors("s", [envoy]).join("\n"), /sends \/health to the backend/);
});

test("an Istio sidecar's workload gets every path: its configuration must reject the unguarded ones", () => {
  for (const file of ["examples/istio/wasmplugin.yaml", "examples/istio/envoyfilter.yaml"]) {
    const istio = example(file);
    assert.deepEqual(wiringErrors("s", [istio]), []);
    const text = readFileSync(join(root, file), "utf8").replace('"unguarded": "reject",', "");
    assert.match(wiringErrors("s", [{ file, docs: parseDocuments(text, file) }]).join("\n"), /sends every path to the backend/);
  }
});

test("the packaged schemas, made strict: an unknown or mistyped field fails, free-form configuration does not", async () => {
  const { docs: [plugin] } = example("examples/istio/wasmplugin.yaml");
  plugin.spec.sha256 = digest;
  const validate = await schemaValidator(plugin.apiVersion, plugin.kind);
  assert.deepEqual(validateStrictly(validate, plugin), []);
  assert.deepEqual(validateStrictly(validate, { ...plugin, spec: { ...plugin.spec, sha265: digest } }), ["/spec: unknown field sha265"]);
  assert.match(validateStrictly(validate, { ...plugin, spec: { ...plugin.spec, failStrategy: "FAIL_SHUT" } }).join(), /\/spec\/failStrategy: enum/);
  const { docs: [policy] } = example("examples/envoy-gateway/extension-policy.yaml");
  policy.spec.wasm[0].code.image.sha256 = digest;
  policy.spec.wasm[0].env.hostkeys = ["X"];
  assert.deepEqual(validateStrictly(await schemaValidator(policy.apiVersion, policy.kind), policy), ["/spec/wasm/0/env: unknown field hostkeys"]);
  await assert.rejects(schemaValidator("gateway.envoyproxy.io/v1alpha1", "EnvoyNothing"), /has no gateway.envoyproxy.io\/v1alpha1 EnvoyNothing/);
});

test("an image without its digest (envsubst with the variable unset) is refused", () => {
  const text = readFileSync(join(root, "examples/istio/wasmplugin.yaml"), "utf8");
  const [unset] = parseDocuments(text.replace("${WEBHOOK_GUARD_IMAGE_SHA256}", ""), "x");
  assert.match(pinningErrors(unset, "x").join(), /spec.sha256 is null, not a pinned digest/);
  const [pinned] = parseDocuments(text.replace("${WEBHOOK_GUARD_IMAGE_SHA256}", digest), "x");
  assert.deepEqual(pinningErrors(pinned, "x"), []);
  const [policy] = parseDocuments(readFileSync(join(root, "examples/envoy-gateway/extension-policy.yaml"), "utf8"), "x");
  assert.match(pinningErrors(policy, "x").join(), /spec.wasm\[0\].code.image.sha256 is "\$\{WEBHOOK_GUARD_IMAGE_SHA256\}"/);
});

test("a new example must declare its set, and a set names only existing examples", () => {
  const sets = JSON.parse(readFileSync(join(root, "tools/examples-check/sets.json"), "utf8")).sets;
  const files = [...new Set(sets.flatMap((s) => s.files))];
  assert.deepEqual(membershipErrors(files, sets), []);
  assert.deepEqual(membershipErrors([...files, "examples/new/gateway.yaml"], sets), [
    "examples/new/gateway.yaml: in no set of tools/examples-check/sets.json (declare which examples it is applied with)",
  ]);
  assert.match(membershipErrors(files.filter((f) => f !== "examples/tls/sds.yaml"), sets).join(), /set plain Envoy: no such example examples\/tls\/sds.yaml/);
});

test("the header must name the versions of the schemas that checked the file", () => {
  assert.match(headerErrors("f", "# An example\nkind: X\n", []).join(), /no "# Checked against:" line/);
  const header = "# Checked against: Istio's CRD schemas\n#   (@kubernetes-models/istio 3.0.1).\n# More.\n";
  assert.deepEqual(headerErrors("f", header, ["@kubernetes-models/istio 3.0.1"]), []);
  assert.match(headerErrors("f", header, ["@kubernetes-models/istio 3.0.2"]).join(), /does not name @kubernetes-models\/istio 3.0.2/);
});

const scratch = mkdtempSync(join(tmpdir(), "fill-examples-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

/** Runs tools/fill-examples.sh with `file` as dist/image-digest and `variable` as WEBHOOK_GUARD_IMAGE_SHA256 (unset when undefined). */
function fill({ file, variable } = {}) {
  const dist = mkdtempSync(join(scratch, "dist-"));
  if (file !== undefined) writeFileSync(join(dist, "image-digest"), file);
  const env = { ...process.env };
  delete env.WEBHOOK_GUARD_IMAGE_SHA256;
  if (variable !== undefined) env.WEBHOOK_GUARD_IMAGE_SHA256 = variable;
  const run = spawnSync(join(root, "tools/fill-examples.sh"), [dist], { env, encoding: "utf8" });
  return { ...run, out: join(dist, "examples") };
}

test("fill-examples refuses an unset, empty or malformed digest and writes nothing", () => {
  const refused = [
    {},
    { variable: "" },
    { file: "" },
    { file: "sha256:\n" },
    { file: `sha256:${digest.slice(1)}\n` },
    { file: `sha256:${digest}0\n` },
    { file: `sha256:${digest.toUpperCase()}\n` },
    { file: `sha512:${digest}\n` },
    { variable: `${digest.slice(2)}zz` },
    // The variable, once set, decides: an empty one never falls back to dist/.
    { file: `sha256:${digest}\n`, variable: "" },
  ];
  for (const setup of refused) {
    const run = fill(setup);
    assert.equal(run.status, 1, `${JSON.stringify(setup)} was accepted`);
    assert.match(run.stderr, /nothing written/);
    assert.equal(existsSync(run.out), false, `${JSON.stringify(setup)} wrote files`);
  }
});

test("fill-examples fills every example that pins the image, from dist/ or the variable", () => {
  for (const setup of [{ file: `sha256:${digest}\n` }, { variable: digest }, { variable: `sha256:${digest}` }]) {
    const run = fill(setup);
    assert.equal(run.status, 0, run.stderr);
    const written = run.stdout.trim().split("\n");
    assert.deepEqual(written.map((p) => p.slice(run.out.length + 1)).sort(), [
      "envoy-gateway/extension-policy.yaml", "envoy-gateway/patch-policy.yaml", "fleet/envoy-gateway-global-rate-limit.yaml",
      "fleet/envoy-gateway.yaml", "fleet/istio-wasmplugin.yaml", "istio/wasmplugin.yaml",
    ]);
    for (const path of written) {
      const text = readFileSync(path, "utf8");
      assert.ok(text.includes(`sha256: ${digest}\n`) && !text.includes("${"), path);
      for (const doc of parseDocuments(text, path)) assert.deepEqual(pinningErrors(doc, path), []);
    }
    assert.deepEqual(readdirSync(run.out).sort(), ["envoy-gateway", "fleet", "istio"]);
  }
});
