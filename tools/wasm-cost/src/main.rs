//! wasm-cost: the deterministic cost of a request through the release module.
//!
//! Runs `webhook_guard.wasm` in wasmi with fuel metering behind a stub of the proxy-wasm
//! host ([`host`]), request by request as Envoy drives a stream, for every scenario of
//! [`scenarios::SCENARIOS`], and reports per scenario: wasm instructions executed (counted
//! by an instrumented copy of the module), wasmi's fuel, host calls by kind, bytes copied
//! across the boundary, heap allocations and peak linear memory. The figures depend on the module and nothing else: no clock, no scheduler.
//!
//! ```text
//! wasm-cost MODULE BUDGET            check: fails when a figure grows more than the slack
//! wasm-cost MODULE BUDGET --record   rewrites BUDGET with the figures measured
//! wasm-cost ... --markdown FILE      also writes the table as Markdown
//! wasm-cost MODULE BUDGET --profile SCENARIO   its functions by wasm instructions executed
//! ```

mod host;
mod instrument;
mod scenarios;
mod sign;

use host::{serialize_map, Headers, Host, LocalReply, Stream, Tally};
use instrument::Counted;
use scenarios::{Expect, Request, Scenario, SCENARIOS};
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use wasmi::{CompilationMode, Config, Engine, Instance, Linker, Module, Store, TypedFunc, Val};

/// The root context's id, as Envoy gives it.
const ROOT: i32 = 1;
/// The host clock: fixed, so every figure is reproducible (2026-01-01T00:00:00Z).
const NOW_NANOS: u64 = 1_767_225_600_000_000_000;
/// Fuel given before each call: far more than any request takes.
const FUEL: u64 = 1 << 40;
/// Growth over the budget that fails the check, in percent.
const SLACK_PERCENT: f64 = 3.0;
/// Growth of the module's size over its budget that fails the check, in percent.
const SIZE_SLACK_PERCENT: f64 = 2.0;
/// Linear memory grows in pages: one more page than budgeted is not yet a regression.
const PAGE: u64 = 65536;

/// What one measured request cost.
#[derive(Clone)]
struct Cost {
    /// Wasm instructions executed, counted by an instrumented copy ([`instrument`]).
    instructions: u64,
    /// wasmi's fuel: its own (register machine) instructions, on the module as built.
    fuel: u64,
    tally: Tally,
    allocations: u64,
    peak_memory: u64,
}

impl Cost {
    fn host_calls(&self) -> u64 {
        self.tally.calls.values().sum()
    }

    fn bytes_copied(&self) -> u64 {
        self.tally.bytes_in + self.tally.bytes_out
    }

    /// The figures the budget checks, by name, with the absolute growth always allowed.
    fn checked(&self) -> [(&'static str, u64, u64); 6] {
        [
            ("instructions", self.instructions, 0),
            ("fuel", self.fuel, 0),
            ("host_calls", self.host_calls(), 0),
            ("bytes_copied", self.bytes_copied(), 0),
            ("allocations", self.allocations, 0),
            ("peak_memory_bytes", self.peak_memory, PAGE),
        ]
    }
}

/// What the sender and the upstream saw.
struct Outcome {
    status: u16,
    upstream: Option<(Headers, Vec<u8>)>,
    local: Option<LocalReply>,
}

struct Vm {
    store: Store<Host>,
    instance: Instance,
    next_context: i32,
}

impl Vm {
    fn new(engine: &Engine, module: &Module, configuration: &str) -> Result<Vm, String> {
        let mut linker = Linker::new(engine);
        host::link(&mut linker, module).map_err(|e| e.to_string())?;
        let mut store = Store::new(engine, Host::new(configuration.as_bytes().to_vec(), NOW_NANOS));
        store.set_fuel(FUEL).map_err(|e| e.to_string())?;
        let instance = linker.instantiate_and_start(&mut store, module).map_err(|e| e.to_string())?;
        store.data_mut().memory = instance.get_memory(&store, "memory");
        store.data_mut().allocate = instance.get_typed_func::<i32, i32>(&store, "proxy_on_memory_allocate").ok();
        let mut vm = Vm { store, instance, next_context: ROOT + 1 };
        if let Ok(init) = vm.instance.get_typed_func::<(), ()>(&vm.store, "_initialize") {
            init.call(&mut vm.store, ()).map_err(|e| vm.failed("_initialize", e))?;
        }
        vm.call::<(i32, i32), ()>("proxy_on_context_create", (ROOT, 0))?;
        if vm.instance.get_func(&vm.store, "proxy_on_vm_start").is_some() {
            vm.call::<(i32, i32), i32>("proxy_on_vm_start", (ROOT, 0))?;
        }
        if vm.call::<(i32, i32), i32>("proxy_on_configure", (ROOT, configuration.len() as i32))? != 1 {
            return Err(format!("the filter refused the configuration {configuration}: {}", vm.store.data().logs.join(" | ")));
        }
        Ok(vm)
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!("{what}: {e}; log: {}", self.store.data().logs.join(" | "))
    }

    fn call<P: wasmi::WasmParams, R: wasmi::WasmResults>(&mut self, name: &str, params: P) -> Result<R, String> {
        let f: TypedFunc<P, R> = self.instance.get_typed_func(&self.store, name).map_err(|e| format!("{name}: {e}"))?;
        self.store.set_fuel(FUEL).map_err(|e| e.to_string())?;
        f.call(&mut self.store, params).map_err(|e| self.failed(name, e))
    }

    /// Fuel used by the last call.
    fn fuel_used(&self) -> u64 {
        FUEL - self.store.get_fuel().unwrap_or(FUEL)
    }

    /// The calls counted so far of each function of a counting copy ([`instrument`]).
    fn calls(&self, counted: &[Counted]) -> Vec<u64> {
        let count = |c: &Counted| match self.instance.get_global(&self.store, &c.global).map(|g| g.get(&self.store)) {
            Some(Val::I64(n)) => n as u64,
            _ => 0,
        };
        counted.iter().map(count).collect()
    }

    fn memory_bytes(&self) -> u64 {
        self.store.data().memory.map_or(0, |m| m.data_size(&self.store) as u64)
    }

    /// One request through the filter's callbacks as Envoy calls them, with the upstream
    /// (when reached) answering 200. Returns the outcome and the fuel used.
    fn request(&mut self, request: &Request) -> Result<(Outcome, u64), String> {
        let context = self.next_context;
        self.next_context += 1;
        let mut headers = vec![
            (":authority", "guard.example".to_string()),
            (":path", request.target()),
            (":method", request.method.to_string()),
            (":scheme", "https".to_string()),
            ("user-agent", "wasm-cost/1.0".to_string()),
            ("content-type", request.content_type.to_string()),
            ("content-length", request.body.len().to_string()),
            ("x-forwarded-proto", "https".to_string()),
            ("x-request-id", "9b2e4c1a-3f5d-4e6b-8a7c-0d1e2f3a4b5c".to_string()),
        ];
        let own = request.headers.iter().map(|(k, v)| (*k, v.to_string()));
        for (name, value) in own.chain(request.sign.map(|sign| sign(request))) {
            headers.retain(|(k, _)| *k != name);
            headers.push((name, value));
        }
        let request_headers = headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<Headers>();
        let count = request_headers.len() as i32;
        self.store.data_mut().stream = Stream { request_headers, request_body: request.body.to_vec(), ..Stream::default() };
        let mut fuel = 0;
        let mut step = |vm: &mut Vm, name: &str, params: (i32, i32, i32)| -> Result<i32, String> {
            let action = vm.call::<(i32, i32, i32), i32>(name, params)?;
            fuel += vm.fuel_used();
            Ok(action)
        };
        self.call::<(i32, i32), ()>("proxy_on_context_create", (context, ROOT))?;
        let create = self.fuel_used();
        let head = step(self, "proxy_on_request_headers", (context, count, i32::from(request.body.is_empty())))?;
        let mut action = head;
        if self.store.data().stream.local_reply.is_none() && !request.body.is_empty() {
            action = step(self, "proxy_on_request_body", (context, request.body.len() as i32, 1))?;
        }
        let stream = &self.store.data().stream;
        let upstream = match (&stream.local_reply, action == 0 || stream.resumed) {
            (Some(_), _) => None,
            (None, true) => Some((stream.request_headers.clone(), stream.request_body.clone())),
            (None, false) => return Err("the request was left paused without an answer".into()),
        };
        // The answer goes through the filter's response callback: the upstream's 200, or
        // (as in Envoy) the filter's own local reply.
        let (status, details) = match &stream.local_reply {
            Some(reply) => (reply.status, ""),
            None => (200, "via_upstream"),
        };
        let response = vec![(":status".to_string(), status.to_string().into_bytes()), ("content-length".to_string(), b"0".to_vec())];
        let host = self.store.data_mut();
        host.stream.response_headers = response;
        host.stream.code_details = details.to_string();
        step(self, "proxy_on_response_headers", (context, 2, 0))?;
        self.call::<i32, ()>("proxy_on_delete", context)?;
        let delete = self.fuel_used();
        let stream = std::mem::take(&mut self.store.data_mut().stream);
        let answered = stream.response_headers.iter().find(|(k, _)| k == ":status");
        let status = match (&stream.local_reply, answered) {
            (Some(reply), _) => reply.status,
            (None, Some((_, v))) => String::from_utf8_lossy(v).parse().unwrap_or(0),
            (None, None) => 0,
        };
        let upstream = if stream.local_reply.is_some() { None } else { upstream };
        Ok((Outcome { status, upstream, local: stream.local_reply }, create + fuel + delete))
    }
}

/// Runs `scenario` on a fresh VM of `module`: the requests before it, then the measured
/// one. Also returns the calls of the `counted` functions during the measured request.
fn run(engine: &Engine, module: &Module, scenario: &Scenario, counted: &[Counted]) -> Result<(Outcome, Cost, Vec<u64>), String> {
    let mut vm = Vm::new(engine, module, &scenario.configuration())?;
    for request in scenario.before {
        let (outcome, _) = vm.request(request)?;
        if outcome.status != 200 {
            let body = outcome.local.map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
            return Err(format!("a request before the measured one was answered {}: {body}", outcome.status));
        }
    }
    vm.store.data_mut().tally = Tally::default();
    let before = vm.calls(counted);
    let (outcome, fuel) = vm.request(&scenario.request)?;
    let calls = vm.calls(counted).iter().zip(before).map(|(after, before)| after - before).collect();
    let cost = Cost { instructions: 0, fuel, tally: vm.store.data().tally.clone(), allocations: 0, peak_memory: vm.memory_bytes() };
    Ok((outcome, cost, calls))
}

/// Fails unless the sender and the upstream saw what the scenario promises.
fn verify(scenario: &Scenario, outcome: &Outcome) -> Result<(), String> {
    let local = outcome.local.as_ref().map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
    match (&scenario.expect, &outcome.upstream) {
        (Expect::Upstream(prefix), Some((headers, body))) => {
            if outcome.status != 200 {
                return Err(format!("forwarded, but the sender saw {}", outcome.status));
            }
            if !body.starts_with(prefix.as_bytes()) {
                return Err(format!("the upstream got {:?}, expected a body starting {prefix:?}", String::from_utf8_lossy(body)));
            }
            let forwarded = serialize_map(headers);
            if forwarded.windows(6).any(|w| w == b"s3cret") {
                return Err("the secret reached the upstream".into());
            }
            if let Some((name, value)) = scenario.request.sign.map(|sign| sign(&scenario.request)) {
                if forwarded.windows(value.len()).any(|w| w == value.as_bytes()) {
                    return Err(format!("{name} reached the upstream"));
                }
            }
            Ok(())
        }
        (Expect::Upstream(_), None) => Err(format!("answered {} by the filter, expected forwarded: {local}", outcome.status)),
        (Expect::Local(status), None) if outcome.status == *status => Ok(()),
        (Expect::Local(status), _) => Err(format!("the sender saw {} (forwarded: {}), expected {status}: {local}", outcome.status, outcome.upstream.is_some())),
    }
}

fn engine() -> Engine {
    let mut config = Config::default();
    config.consume_fuel(true).compilation_mode(CompilationMode::Eager);
    Engine::new(&config)
}

/// Every scenario's cost, counted on the module as built (fuel, host calls, bytes, memory),
/// on a copy counting the instructions of every function, and on one counting the
/// allocator's calls.
fn measure(module_bytes: &[u8]) -> Result<Vec<(&'static Scenario, Cost)>, String> {
    let engine = engine();
    let module = Module::new(&engine, module_bytes).map_err(|e| e.to_string())?;
    let (counting, allocator) = instrument::count_calls(module_bytes, |name| name == instrument::ALLOCATOR, false)?;
    let counting = Module::new(&engine, counting).map_err(|e| e.to_string())?;
    let (stepping, functions) = instrument::count_calls(module_bytes, |_| true, true)?;
    let stepping = Module::new(&engine, stepping).map_err(|e| e.to_string())?;
    let mut costs = Vec::new();
    for scenario in SCENARIOS {
        let context = |e: String| format!("scenario {}: {e}", scenario.name);
        let (outcome, mut cost, _) = run(&engine, &module, scenario, &[]).map_err(context)?;
        verify(scenario, &outcome).map_err(context)?;
        let (_, _, allocations) = run(&engine, &counting, scenario, &allocator).map_err(context)?;
        cost.allocations = allocations.iter().sum();
        let (_, _, steps) = run(&engine, &stepping, scenario, &functions).map_err(context)?;
        cost.instructions = steps.iter().sum();
        costs.push((scenario, cost));
    }
    Ok(costs)
}

/// The functions a scenario's measured request runs, by wasm instructions executed (an
/// instrumented copy's count, not wasmi's fuel), most first.
fn profile(module_bytes: &[u8], name: &str) -> Result<String, String> {
    let scenario = SCENARIOS.iter().find(|s| s.name == name).ok_or(format!("no scenario {name}"))?;
    let engine = engine();
    let (counting, functions) = instrument::count_calls(module_bytes, |_| true, true)?;
    let module = Module::new(&engine, counting).map_err(|e| e.to_string())?;
    let (_, _, calls) = run(&engine, &module, scenario, &functions)?;
    let mut called: Vec<(u64, &str)> = calls.into_iter().zip(&functions).filter(|(n, _)| *n > 0).map(|(n, f)| (n, f.name.as_str())).collect();
    called.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    Ok(called.iter().map(|(n, f)| format!("{n:>8}  {f}\n")).collect())
}

fn budget_json(module_size: u64, costs: &[(&Scenario, Cost)]) -> Value {
    let mut scenarios = Map::new();
    for (scenario, cost) in costs {
        let mut entry = Map::new();
        entry.insert("header_mode".into(), json!(scenario.header_mode));
        for (name, value, _) in cost.checked() {
            entry.insert(name.into(), json!(value));
        }
        entry.insert("host_calls_by_kind".into(), json!(cost.tally.calls));
        scenarios.insert(scenario.name.into(), Value::Object(entry));
    }
    json!({
        "about": "Written by `make budget` (tools/wasm-cost): per-request figures of the release module (wasm instructions counted by an instrumented copy; fuel: wasmi 2.0.0's). `make test` fails when a figure grows more than 3 % (module size: 2 %) over these. Re-record deliberately, saying why in the commit.",
        "module_bytes": module_size,
        "scenarios": scenarios,
    })
}

/// The regressions against `budget`, and the figures now well under it.
fn compare(budget: &Value, module_size: u64, costs: &[(&Scenario, Cost)]) -> (Vec<String>, Vec<String>) {
    let (mut over, mut under) = (Vec::new(), Vec::new());
    // (what, now, budget, slack in percent, growth always allowed)
    let mut figures = vec![("module size".to_string(), module_size, budget["module_bytes"].as_u64(), SIZE_SLACK_PERCENT, 0)];
    for (scenario, cost) in costs {
        let recorded = &budget["scenarios"][scenario.name];
        if recorded.is_null() {
            over.push(format!("{}: not in the budget (record it with `make budget`)", scenario.name));
            continue;
        }
        for (name, value, floor) in cost.checked() {
            figures.push((format!("{} {name}", scenario.name), value, recorded[name].as_u64(), SLACK_PERCENT, floor));
        }
    }
    for (what, now, was, slack_percent, floor) in figures {
        let Some(was) = was else {
            over.push(format!("{what}: {now}, not in the budget (record it with `make budget`)"));
            continue;
        };
        let allowed = (was as f64 * (1.0 + slack_percent / 100.0)).max((was + floor) as f64);
        if now as f64 > allowed {
            over.push(format!("{what}: {now}, budget {was} ({:+.1} %)", percent(now, was)));
        } else if (now as f64) < was as f64 * (1.0 - slack_percent / 100.0) {
            under.push(format!("{what}: {now}, budget {was} ({:+.1} %)", percent(now, was)));
        }
    }
    (over, under)
}

fn percent(now: u64, was: u64) -> f64 {
    if was == 0 {
        0.0
    } else {
        (now as f64 - was as f64) * 100.0 / was as f64
    }
}

fn short(name: &str) -> &str {
    name.strip_prefix("proxy_").unwrap_or(name)
}

/// The figures as a Markdown table, with the budget's instructions beside them.
fn markdown(module_size: u64, budget: &Value, costs: &[(&Scenario, Cost)]) -> String {
    let mut out = format!(
        "Module: {module_size} bytes (budget {}). Figures for the whole stream (context creation, request \
         head, body, response head, deletion). Instructions: wasm instructions executed (counted per \
         straight-line run by an instrumented copy of the module); fuel: wasmi 2.0.0's own instructions; \
         bytes are copied across the host boundary in either direction (in: headers, body, shared data \
         handed to the module; out: what it writes back, its keys and log lines); host allocations: \
         the host's calls of `proxy_on_memory_allocate`; allocations: heap blocks the module's \
         allocator handed out (both); memory: the linear memory's size after the request.\n\n\
         | scenario | header mode | instructions | budget | fuel | host calls | bytes copied (in / out) | host allocations | allocations | linear memory |\n\
         |---|---|---:|---:|---:|---:|---|---:|---:|---:|\n",
        budget["module_bytes"].as_u64().map_or("none".into(), |b| b.to_string())
    );
    for (scenario, cost) in costs {
        let was = budget["scenarios"][scenario.name]["instructions"].as_u64().map_or("none".into(), |b| b.to_string());
        out.push_str(&format!(
            "| {} | {} | {} | {was} | {} | {} | {} ({} / {}) | {} | {} | {} KiB |\n",
            scenario.name,
            scenario.header_mode,
            cost.instructions,
            cost.fuel,
            cost.host_calls(),
            cost.bytes_copied(),
            cost.tally.bytes_in,
            cost.tally.bytes_out,
            cost.tally.host_allocations,
            cost.allocations,
            cost.peak_memory / 1024
        ));
    }
    out.push_str("\nHost calls by kind:\n\n| scenario | calls |\n|---|---|\n");
    for (scenario, cost) in costs {
        let kinds: Vec<String> = cost.tally.calls.iter().map(|(k, n)| format!("{} {n}", short(k))).collect();
        out.push_str(&format!("| {} | {} |\n", scenario.name, kinds.join(", ")));
    }
    out
}

fn main() -> ExitCode {
    // wasmi translates and runs the instrumented copies deeper than the main thread's stack.
    let worker = std::thread::Builder::new().stack_size(256 << 20).spawn(cli);
    match worker.map(|w| w.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::FAILURE,
    }
}

fn cli() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    let (Some(module_path), Some(budget_path)) = (args.first(), args.get(1)) else {
        eprintln!("usage: wasm-cost MODULE BUDGET [--record] [--markdown FILE]");
        return ExitCode::from(2);
    };
    let markdown_path = flag("--markdown").and_then(|i| args.get(i + 1));
    let module_bytes = match std::fs::read(module_path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("wasm-cost: reading {module_path}: {e}");
            return ExitCode::from(2);
        }
    };
    let module_size = module_bytes.len() as u64;
    if let Some(name) = flag("--profile").and_then(|i| args.get(i + 1)) {
        return match profile(&module_bytes, name) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wasm-cost: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let costs = match measure(&module_bytes) {
        Ok(costs) => costs,
        Err(e) => {
            eprintln!("wasm-cost: {e}");
            return ExitCode::FAILURE;
        }
    };
    let budget: Value = std::fs::read_to_string(budget_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    let table = markdown(module_size, &budget, &costs);
    println!("{table}");
    if let Some(path) = markdown_path {
        if let Err(e) = std::fs::write(path, &table) {
            eprintln!("wasm-cost: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if flag("--record").is_some() {
        let text = serde_json::to_string_pretty(&budget_json(module_size, &costs)).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(budget_path, text) {
            eprintln!("wasm-cost: writing {budget_path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("recorded {} scenarios and the module size in {budget_path}", costs.len());
        return ExitCode::SUCCESS;
    }
    let (over, under) = compare(&budget, module_size, &costs);
    for line in &under {
        println!("under budget (re-record with `make budget` to keep it tight): {line}");
    }
    if over.is_empty() {
        println!("wasm-cost: {} scenarios and the module size within budget ({budget_path})", costs.len());
        return ExitCode::SUCCESS;
    }
    for line in &over {
        eprintln!("over budget: {line}");
    }
    eprintln!("wasm-cost: {} figure(s) over budget; if the growth is intended, run `make budget` and commit {budget_path} saying why", over.len());
    ExitCode::FAILURE
}
