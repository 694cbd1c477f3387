// The checks of examples/ (make examples-check): schemas, the wiring rule, digest pinning
// and the "Checked against" header. check.mjs runs them on the repository; check.test.mjs
// shows each one failing on a broken example.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const MODULES = new URL("./node_modules/@kubernetes-models/", import.meta.url);

/** The npm package holding the schemas of each API group the examples use. */
export const PACKAGES = {
  "extensions.istio.io": "istio",
  "networking.istio.io": "istio",
  "gateway.networking.k8s.io": "gateway-api",
  "gateway.envoyproxy.io": "envoy-gateway",
  "monitoring.coreos.com": "prometheus-operator",
};

/** The installed version of each schema package, as the headers must name it. */
export function packageVersion(pkg) {
  return JSON.parse(readFileSync(new URL(`${pkg}/package.json`, MODULES), "utf8")).version;
}

export function parseDocuments(text, where) {
  return parseAllDocuments(text).map((doc, i) => {
    if (doc.errors.length) throw new Error(`${where}: document ${i + 1}: ${doc.errors[0].message}`);
    return doc.toJS();
  }).filter((doc) => doc !== null && doc !== undefined);
}

/** Core kinds (no group, or a Kubernetes group without a dot) go to kubernetes-validate. */
export function isCore(apiVersion) {
  const parts = apiVersion.split("/");
  return parts.length === 1 || !parts[0].includes(".");
}

/** The compiled JSON-schema validator of a custom resource kind, from its npm package. */
export async function schemaValidator(apiVersion, kind) {
  const [group, version] = apiVersion.split("/");
  const pkg = PACKAGES[group];
  if (!pkg) throw new Error(`no schema package for API group ${group}`);
  let model;
  try {
    model = readFileSync(new URL(`${pkg}/${group}/${version}/${kind}.js`, MODULES), "utf8");
  } catch {
    throw new Error(`@kubernetes-models/${pkg} has no ${apiVersion} ${kind}`);
  }
  // The model module imports its validator from _schemas/, which the package does not export.
  const schema = model.match(/_schemas\/(\w+)\.js/);
  return (await import(new URL(`${pkg}/_schemas/${schema[1]}.js`, MODULES))).validate;
}

/**
 * Validates `doc` and also reports fields the schema does not know. The packaged schemas
 * leave unknown fields alone (the API server prunes them silently), so the document is
 * handed to the validator behind proxies that record which keys it looks up: a key of an
 * object the schema describes that it never looked up is unknown to the schema. Objects
 * the validator never looks into (free-form fields such as a plugin configuration) are
 * not judged.
 */
export function validateStrictly(validate, doc) {
  const objects = [];
  const track = (value, path) => {
    if (value === null || typeof value !== "object") return value;
    const seen = { path, keys: Array.isArray(value) ? [] : Object.keys(value), read: new Set(), listed: false };
    objects.push(seen);
    const copy = Array.isArray(value)
      ? value.map((v, i) => track(v, `${path}/${i}`))
      : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, track(v, `${path}/${k}`)]));
    return new Proxy(copy, {
      get(target, key, receiver) {
        if (typeof key === "string") seen.read.add(key);
        return Reflect.get(target, key, receiver);
      },
      ownKeys(target) {
        seen.listed = true;
        return Reflect.ownKeys(target);
      },
    });
  };
  const errors = [];
  if (!validate(track(doc, ""))) {
    for (const e of validate.errors) errors.push(`${e.instancePath || "/"}: ${e.keyword} ${JSON.stringify(e.params)}`);
  }
  for (const o of objects) {
    if (o.read.size === 0 && !o.listed) continue;
    for (const key of o.keys.filter((k) => !o.read.has(k))) errors.push(`${o.path || "/"}: unknown field ${key}`);
  }
  return errors;
}

// The wiring rule. A set of examples applied together sends requests to the backend along
// routes; every path a route sends must be guarded by an endpoint of the webhook-guard
// configuration on that route, or that configuration must say "unguarded": "reject".

/** What the rule needs of a plugin configuration (the JSON the filter parses). */
export function guard(config, where) {
  const json = typeof config === "string" ? JSON.parse(config) : config;
  return { where, reject: json.unguarded === "reject", paths: new Set((json.endpoints ?? []).map((e) => e.path)) };
}

const WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/** Every object under `value` (depth first), with `value` itself. */
function* objectsIn(value) {
  if (value === null || typeof value !== "object") return;
  yield value;
  for (const child of Object.values(value)) yield* objectsIn(child);
}

/** The guards of the Wasm filters installing webhook-guard anywhere under `value`. */
function wasmGuards(value, where) {
  return [...objectsIn(value)]
    .filter((o) => o["@type"] === WASM && o.config?.configuration?.value)
    .map((o) => guard(o.config.configuration.value, where));
}

/** A route: the path it sends to the backend (null: any path) and the guards on it. */
function route(where, path, guards) {
  return { where, path, guards };
}

/** Envoy: each HTTP connection manager's forwarding routes, under its own filters. */
function envoyRoutes(doc, file) {
  const routes = [];
  for (const hcm of objectsIn(doc)) {
    if (!hcm.route_config || !hcm.http_filters) continue;
    const guards = wasmGuards(hcm.http_filters, `${file} (http_filters)`);
    for (const vhost of hcm.route_config.virtual_hosts ?? []) {
      for (const r of (vhost.routes ?? []).filter((r) => r.route)) {
        const exact = r.match?.path;
        routes.push(route(`${file}: virtual host ${vhost.name}, route ${JSON.stringify(r.match)}`, exact ?? null, guards));
      }
    }
  }
  return routes;
}

/** Istio: a sidecar hands its workload every path, so the filter sees any path. */
function istioRoutes(doc, file) {
  const where = `${file}: ${doc.kind} ${doc.metadata?.name}`;
  if (doc.kind === "WasmPlugin" && doc.spec?.pluginConfig) {
    return [route(`${where} (the sidecar's workload)`, null, [guard(doc.spec.pluginConfig, where)])];
  }
  if (doc.kind === "EnvoyFilter") {
    const guards = wasmGuards(doc.spec, where);
    return guards.length ? [route(`${where} (the sidecar's workload)`, null, guards)] : [];
  }
  return [];
}

/** Gateway API: each HTTPRoute rule with a backend, under the EnvoyExtensionPolicies that target the route or its Gateway. */
function gatewayRoutes(docs) {
  const policies = docs.filter(({ doc }) => doc.kind === "EnvoyExtensionPolicy");
  const routes = [];
  for (const { doc, file } of docs.filter(({ doc }) => doc.kind === "HTTPRoute")) {
    const ns = doc.metadata?.namespace;
    const parents = (doc.spec?.parentRefs ?? []).map((p) => p.name);
    const targets = (ref) => (ref.kind === "HTTPRoute" && ref.name === doc.metadata?.name) || (ref.kind === "Gateway" && parents.includes(ref.name));
    const guards = policies
      .filter(({ doc: p }) => p.metadata?.namespace === ns && [...(p.spec?.targetRefs ?? []), ...(p.spec?.targetRef ? [p.spec.targetRef] : [])].some(targets))
      .flatMap(({ doc: p, file: pf }) => (p.spec?.wasm ?? []).filter((w) => w.config).map((w) => guard(w.config, `${pf}: EnvoyExtensionPolicy ${p.metadata.name}`)));
    for (const rule of (doc.spec?.rules ?? []).filter((r) => r.backendRefs?.length)) {
      // No match, or a match without a path, is PathPrefix "/": every path.
      const matches = rule.matches?.length ? rule.matches : [{}];
      for (const m of matches) {
        const exact = m.path && (m.path.type ?? "PathPrefix") === "Exact" ? m.path.value : null;
        routes.push(route(`${file}: HTTPRoute ${doc.metadata?.name} ${JSON.stringify(m.path ?? "every path")}`, exact, guards));
      }
    }
  }
  return routes;
}

/** The identity under which the API server stores a document: a later one replaces it. */
function identity(doc) {
  return [doc.apiVersion?.split("/")[0], doc.kind, doc.metadata?.namespace, doc.metadata?.name].join("|");
}

/** Every backend route of a set, given each file's documents in the set's order. */
export function setRoutes(files) {
  const applied = new Map();
  const routes = [];
  for (const { file, docs } of files) {
    for (const doc of docs) {
      if (doc.apiVersion && doc.kind) applied.set(identity(doc), { doc, file });
      else routes.push(...envoyRoutes(doc, file));
    }
  }
  const resources = [...applied.values()];
  for (const { doc, file } of resources) routes.push(...istioRoutes(doc, file));
  return routes.concat(gatewayRoutes(resources));
}

/** The wiring rule's violations in a set. */
export function wiringErrors(name, files) {
  const routes = setRoutes(files);
  if (routes.length === 0) return [`${name}: no route to the backend found (a set must guard something)`];
  return routes.flatMap((r) => {
    if (r.guards.length === 0) return [`${name}: ${r.where}: no webhook-guard configuration applies to this route`];
    const guarded = r.guards.some((g) => g.reject || (r.path !== null && g.paths.has(r.path)));
    const what = r.path === null ? "every path" : r.path;
    return guarded ? [] : [`${name}: ${r.where} sends ${what} to the backend, but no endpoint of ${r.guards.map((g) => g.where).join(", ")} guards it and it does not say "unguarded": "reject"`];
  });
}

/** Every example must be in a set, and every file a set names must exist. */
export function membershipErrors(files, sets) {
  const inSet = new Set(sets.flatMap((s) => s.files));
  return [
    ...files.filter((f) => !inSet.has(f)).map((f) => `${f}: in no set of tools/examples-check/sets.json (declare which examples it is applied with)`),
    ...sets.flatMap((s) => s.files.filter((f) => !files.includes(f)).map((f) => `set ${s.name}: no such example ${f}`)),
  ];
}

/** An OCI image pulled by a resource must be pinned by a digest of 64 hex characters. */
export function pinningErrors(doc, where) {
  const pins = [];
  if (doc.kind === "WasmPlugin") pins.push(["spec.sha256", doc.spec?.sha256]);
  if (doc.kind === "EnvoyExtensionPolicy") {
    (doc.spec?.wasm ?? []).forEach((w, i) => {
      if (w.code?.type === "Image") pins.push([`spec.wasm[${i}].code.image.sha256`, w.code.image?.sha256]);
    });
  }
  return pins.filter(([, v]) => !/^[0-9a-f]{64}$/.test(String(v ?? ""))).map(([at, v]) => `${where}: ${at} is ${JSON.stringify(v ?? null)}, not a pinned digest`);
}

/**
 * The "# Checked against:" header (the leading comment lines that follow it) must exist
 * and name, with its version, each schema package that validated the file's documents.
 */
export function headerErrors(file, text, packages) {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.startsWith("# Checked against:"));
  if (start < 0) return [`${file}: no "# Checked against:" line naming the versions it was checked against`];
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => !l.startsWith("#   "));
  const header = [lines[start], ...rest.slice(0, end < 0 ? rest.length : end)].join(" ");
  return packages.filter((p) => !header.includes(p)).map((p) => `${file}: "# Checked against:" does not name ${p}`);
}
