#!/usr/bin/env python3
"""Analysis half of benches/run.sh (standard library only).

  report.py record --kind throughput|latency|memory ...   one JSON line on stdout
  report.py progress < lines                               one human line per variant run
  report.py report RAW.jsonl --meta META.json --out FILE   the markdown report

The report is regenerated on every run; anything below NOTES_MARKER in the existing
output file is kept, so hand-written notes survive a re-run.
"""

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

# variant -> (label, header mode, filter, request, expected status)
VARIANTS = {
    "v1_router": ("1. router only", "—", "none (router only)", "valid notification", 200),
    "v2_empty_hold": ("2h. empty WASM filter, hold", "hold",
                      "`benches/empty-filter`: proxy-wasm 0.2.5, pauses the head, buffers the body, inspects nothing", "valid", 200),
    "v2_empty_stream": ("2s. empty WASM filter, stream", "stream",
                        "`benches/empty-filter`: lets the head go on, buffers the body, inspects nothing", "valid", 200),
    "v3_lua": ("3. Lua sig + substring check", "hold",
               "`benches/guard.lua`: `sig` equals a constant, whole body read, four field names found with `string.find`", "valid", 200),
    "v4_wg_hold": ("4h. webhook-guard, valid → CloudEvent, hold", "hold",
                   "webhook-guard, `azure_managed_app`, forwarded as a CloudEvent, global rate limit", "valid", 200),
    "v4_wg_stream": ("4s. webhook-guard, valid → CloudEvent, stream", "stream", "the same", "valid", 200),
    "v10_replay_hold": ("10h. replay of 4h's host calls and rewritten request, no checks, hold", "hold",
                        "`benches/empty-filter`, `replay-hold`: the host calls of 4h's accepted path (its rate limit's excepted) and "
                        "the same CloudEvent upstream, from constants; checks and parses nothing", "valid", 200),
    "v10_replay_stream": ("10s. replay of 4s's host calls and rewritten request, no checks, stream", "stream",
                          "the same, `replay-stream`: 4s's host calls", "valid", 200),
    "v5_wg_reject_hold": ("5h. webhook-guard, invalid → 400, hold", "hold", "the same as 4h", "invalid (no `eventType`)", 400),
    "v5_wg_reject_stream": ("5s. webhook-guard, invalid → 400, stream", "stream", "the same as 4s", "invalid (no `eventType`)", 400),
    "v8_wg_head_reject": ("8. webhook-guard, no secret → 401", "stream", "the same as 4s", "valid, without `sig`", 401),
    "v9_ext_authz": ("9. ext_authz + service, valid → 200", "hold",
                     "Envoy's `ext_authz` (`http_service`, whole body) asking `benches/ext-authz-verifier`: webhook-guard's checks, "
                     "native, same configuration; forwarded as sent", "valid", 200),
    "v9r_ext_authz_reject": ("9r. ext_authz + service, invalid → 400", "hold", "the same as 9", "invalid (no `eventType`)", 400),
    "v9h_ext_authz_head_reject": ("9h. ext_authz + service, no secret → 401", "hold", "the same as 9", "valid, without `sig`", 401),
    "v6_wg_original": ("6. webhook-guard, forward original, no rate limit, hold", "hold",
                       "webhook-guard, `forward: original`, no `rate_limit` (diagnostic)", "valid", 200),
    "v7_wg_no_rate_limit": ("7. webhook-guard, CloudEvent, no rate limit, hold", "hold",
                            "webhook-guard, CloudEvent, no `rate_limit` (diagnostic)", "valid", 200),
}
# (variant, baseline, at most this ratio of CPU per request, floor): the targets of the
# design; floor: the variant that makes the same host calls and forwards the same request
# with no checks, the least any implementation pays (its ratio to the same baseline).
TARGETS = [
    ("v4_wg_hold", "v2_empty_hold", 1.05, "accepted → CloudEvent within 1.05 × the empty filter's CPU/req, hold", "v10_replay_hold"),
    ("v4_wg_stream", "v2_empty_stream", 1.05, "accepted → CloudEvent within 1.05 × the empty filter's CPU/req, stream", "v10_replay_stream"),
    ("v8_wg_head_reject", "v1_router", 1.05, "refusal on the head within 1.05 × the router-only CPU/req", None),
    ("v5_wg_reject_hold", "v2_empty_hold", 1.00, "refusal after the body (hold) no dearer than the empty filter", None),
]
# The empty filter replaying the accepted path's host calls and request, no checks.
REPLAY = ("v10_replay_hold", "v10_replay_stream")
# The variants whose checks run in the ext_authz service: its CPU time counts with Envoy's.
SERVICE = ("v9_ext_authz", "v9r_ext_authz_reject", "v9h_ext_authz_head_reject")
# (request, webhook-guard variant, ext_authz variant): the same answer, in-proxy or asked.
AGAINST_EXT_AUTHZ = [
    ("valid → 200", "v4_wg_hold", "v9_ext_authz"),
    ("invalid → 400", "v5_wg_reject_hold", "v9r_ext_authz_reject"),
    ("no secret → 401", "v8_wg_head_reject", "v9h_ext_authz_head_reject"),
]
NOTES_MARKER = "<!-- Notes below this line are kept when benches/run.sh regenerates this file. -->"
MODULE_LIMIT = 400_000
# oha ends a -z run by aborting the requests still in flight: not errors of the server.
DEADLINE_ERRORS = re.compile(r"deadline|aborted", re.I)


# ---------------------------------------------------------------------------- record
def read_stats(path, variant):
    """Envoy admin /stats text -> {"completed": n, "2xx": n, ...} for one listener."""
    out = {}
    prefix = f"http.{variant}.downstream_rq_"
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name.startswith(prefix) and value.strip().isdigit():
                out[name[len(prefix):]] = int(value)
    return out


def stats_delta(before, after, variant):
    b, a = read_stats(before, variant), read_stats(after, variant)
    return {k: a.get(k, 0) - b.get(k, 0) for k in sorted(set(a) | set(b))}


def read_oha(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    summary = doc.get("summary", {})
    statuses = {str(k): int(v) for k, v in (doc.get("statusCodeDistribution") or {}).items()}
    errors = {str(k): int(v) for k, v in (doc.get("errorDistribution") or {}).items()}
    real_errors = {k: v for k, v in errors.items() if not DEADLINE_ERRORS.search(k)}
    pct = doc.get("latencyPercentiles") or {}

    def us(key):
        v = pct.get(key)
        return None if v is None else round(float(v) * 1e6, 1)

    responses = sum(statuses.values())
    wall = float(summary.get("total") or 0.0)
    return {
        "responses": responses,
        "wall_s": round(wall, 3),
        "rps": round(responses / wall, 1) if wall > 0 else 0.0,
        "oha_rps": summary.get("requestsPerSec"),
        "p50_us": us("p50"),
        "p90_us": us("p90"),
        "p99_us": us("p99"),
        "p999_us": us("p99.9"),
        "statuses": statuses,
        "errors": real_errors,
        "deadline_aborts": sum(v for k, v in errors.items() if DEADLINE_ERRORS.search(k)),
    }


def read_times(path):
    """Children's user + system seconds from the output of bash's `times`."""
    if not path:
        return 0.0
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    total = 0.0
    for m, sec in re.findall(r"(\d+)m([\d.]+)s", lines[1] if len(lines) > 1 else ""):
        total += int(m) * 60 + float(sec)
    return total


def unexpected(oha, envoy, expect):
    """Responses that were not the expected status, plus transport errors."""
    wrong = sum(v for k, v in oha["statuses"].items() if k != str(expect))
    wrong += sum(oha["errors"].values())
    klass = f"{str(expect)[0]}xx"
    envoy_wrong = envoy.get("completed", 0) - envoy.get(klass, 0)
    return wrong + max(envoy_wrong, 0)


def cmd_record(a):
    line = {"ts": round(time.time(), 3), "round": a.round, "variant": a.variant, "kind": a.kind}
    if a.kind in ("throughput", "latency"):
        oha = read_oha(a.oha)
        envoy = stats_delta(a.stats_before, a.stats_after, a.variant)
        line.update(oha)
        line["connections"] = a.concurrency
        line["envoy"] = envoy
        line["expect"] = a.expect
        line["unexpected"] = unexpected(oha, envoy, a.expect)
        # --cpu-before/--cpu-after: "utime stime cpu_busy cpu_total all_busy all_total
        # service_utime service_stime", in clock ticks (cpu_*: the CPU Envoy is pinned to;
        # all_*: the whole machine; service_*: the ext_authz service, pinned with Envoy)
        b = [int(x) for x in a.cpu_before.split()]
        e = [int(x) for x in a.cpu_after.split()]
        user, sys_, busy, total, all_busy, all_total, s_user, s_sys = (e[i] - b[i] for i in range(8))
        gen_s = read_times(a.times_after) - read_times(a.times_before)
        line["oha_cpu_s"] = round(gen_s, 3)
        # Other processes' CPU use anywhere on the machine, in CPUs (oha, Envoy and the
        # ext_authz service excluded).
        ncpu = os.cpu_count() or 1
        own = user + sys_ + s_user + s_sys
        others = all_busy - own - gen_s * a.clk_tck
        line["others_cpus"] = round(max(others, 0) * ncpu / all_total, 3) if all_total else None
        cpu_s = (user + sys_) / a.clk_tck
        done = envoy.get("completed", 0)
        line["envoy_cpu_s"] = round(cpu_s, 3)
        line["envoy_user_s"] = round(user / a.clk_tck, 3)
        line["envoy_sys_s"] = round(sys_ / a.clk_tck, 3)
        line["cpu_us_per_req"] = round(cpu_s * 1e6 / done, 2) if done else None
        if a.variant in SERVICE:
            service_s = (s_user + s_sys) / a.clk_tck
            line["service_cpu_s"] = round(service_s, 3)
            line["service_cpu_us_per_req"] = round(service_s * 1e6 / done, 2) if done else None
        # Share of Envoy's CPU (or of the machine when not pinned) used by anything else.
        line["interference_pct"] = round(100 * max(busy - own, 0) / total, 1) if total else None
        if a.kind == "latency":
            line["target_rate"] = a.rate
    else:
        with open(a.admin_memory, encoding="utf-8") as f:
            mem = json.load(f)
        rss = None
        with open(a.proc_status, encoding="utf-8") as f:
            for l in f:
                if l.startswith("VmRSS:"):
                    rss = int(l.split()[1]) * 1024
        line["rss_bytes"] = rss
        if a.variant in SERVICE and a.service_status:
            with open(a.service_status, encoding="utf-8") as f:
                line["service_rss_bytes"] = next((int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:")), None)
        line["allocated_bytes"] = int(mem.get("allocated", 0))
        line["heap_bytes"] = int(mem.get("heap_size", 0))
    print(json.dumps(line, sort_keys=True))


def cmd_noise(a):
    """Exit 0 when no measurement in FILE saw more than --max % interference, else 3."""
    with open(a.file, encoding="utf-8") as f:
        rows = [json.loads(l) for l in f if l.strip()]
    # Throughput runs only: at a fixed rate below saturation Envoy is mostly idle, and other
    # processes using that idle time take nothing from it.
    tp = [r for r in rows if r["kind"] == "throughput"]
    worst = max((r.get("interference_pct") or 0 for r in tp), default=0)
    others = max((r.get("others_cpus") or 0 for r in tp), default=0)
    if worst > a.max or others * 100 > a.max:
        r = rows[0]
        print(f"  round {r['round']} {r['variant']}: other processes took {worst:.0f}% of Envoy's CPU and"
              f" {others:.2f} CPU on the machine; measuring again", file=sys.stderr)
        sys.exit(3)


def cmd_discard(a):
    with open(a.file, encoding="utf-8") as f:
        for l in f:
            if l.strip():
                r = json.loads(l)
                r["discarded"] = True
                print(json.dumps(r, sort_keys=True))


def cmd_progress(_a):
    rows = [json.loads(l) for l in sys.stdin if l.strip()]
    by = {r["kind"]: r for r in rows}
    tp, lat, mem = by.get("throughput", {}), by.get("latency", {}), by.get("memory", {})
    v = tp.get("variant") or lat.get("variant") or mem.get("variant")
    bad = tp.get("unexpected", 0) + lat.get("unexpected", 0)
    print(
        f"  round {tp.get('round')} {v:<24} {tp.get('rps', 0):>9.0f} req/s  "
        f"{tp.get('cpu_us_per_req') or 0:>6.1f} µs CPU/req "
        + (f"+ service {tp.get('service_cpu_us_per_req') or 0:.1f} " if "service_cpu_s" in tp else "") +
        f"({100 * tp.get('envoy_sys_s', 0) / (tp.get('envoy_cpu_s') or 1):.0f}% sys, "
        f"{tp.get('interference_pct') or 0:.0f}% other, others {tp.get('others_cpus') or 0:.2f} CPU)  "
        f"p50 {lat.get('p50_us') or 0:>6.0f} µs  p99 {lat.get('p99_us') or 0:>6.0f} µs  "
        f"RSS {(mem.get('rss_bytes') or 0) / 2**20:.1f} MiB" + (f"  UNEXPECTED {bad}" if bad else "")
    )


# ---------------------------------------------------------------------------- report
def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "memory": mem}


def ratio(a, b):
    return None if a is None or not b else a / b


def diff(a, b):
    return None if a is None or b is None else a - b


def fnum(x, fmt):
    return "n/a" if x is None else fmt.format(x)


def total_cpu(row):
    """CPU µs per request of Envoy and, for the ext_authz variants, of the service."""
    cpu, service = row.get("cpu_us_per_req"), row.get("service_cpu_us_per_req")
    if cpu is None or ("service_cpu_s" in row and service is None):
        return None
    return cpu + (service or 0)


def against_ext_authz(w, agg, med, round_ratios, present):
    """webhook-guard's variants against ext_authz asking a service with the same checks."""
    pairs = [(what, wg, ext) for what, wg, ext in AGAINST_EXT_AUTHZ if wg in present and ext in present]
    if not pairs:
        return
    w("## webhook-guard against ext_authz")
    w("")
    w("The same checks, in the proxy (webhook-guard) or asked by Envoy's `ext_authz` of a service")
    w("on loopback (9, 9r, 9h). CPU per request is Envoy's plus the service's; the ratio is")
    w("taken within each round, median (min–max).")
    w("")
    w("| request | webhook-guard CPU µs/req | ext_authz: Envoy + service = total µs/req | ext_authz ÷ webhook-guard (CPU/req) "
      "| p50 µs webhook-guard / ext_authz | p99 µs webhook-guard / ext_authz | service RSS MiB |")
    w("|---|---|---|---|---|---|---|")
    said = []
    for what, wg, ext in pairs:
        d, e = med[wg], med[ext]
        ratios = round_ratios(ext, wg)
        w(f"| {what} ({VARIANTS[wg][0].split('.')[0]} / {VARIANTS[ext][0].split('.')[0]}) | {spread(agg[wg]['total'], '{:.1f}')} "
          f"| {fnum(e['cpu'], '{:.1f}')} + {fnum(e['service'], '{:.1f}')} = {spread(agg[ext]['total'], '{:.1f}')} "
          f"| {spread(ratios, '{:.2f}')} | {fnum(d['p50'], '{:.0f}')} / {fnum(e['p50'], '{:.0f}')} "
          f"| {fnum(d['p99'], '{:.0f}')} / {fnum(e['p99'], '{:.0f}')} | {fnum(e['service_rss'], '{:.1f}')} |")
        if ratios:
            said.append(f"{spread(ratios, '{:.2f}')} × for {what}")
    w("")
    if said:
        w(f"Per request, ext_authz with the same checks takes {', '.join(said)} of")
        w("webhook-guard's CPU (Envoy's and the service's together).")
    valid = round_ratios("v9_ext_authz", "v4_wg_hold")
    if valid:
        r, p50 = median(valid), diff(med["v9_ext_authz"]["p50"], med["v4_wg_hold"]["p50"])
        if min(valid) <= 1 <= max(valid):
            verdict = f"On an accepted notification the two cost the same CPU within the spread of the rounds ({spread(valid, '{:.2f}')} ×)"
        elif r > 1:
            verdict = f"In the proxy, webhook-guard saves {100 * (1 - 1 / r):.0f} % of the CPU an accepted notification costs with ext_authz"
        else:
            verdict = f"On an accepted notification webhook-guard costs {100 * (1 / r - 1):.0f} % more CPU than ext_authz"
        w(verdict + ("." if p50 is None else f"; ext_authz answers it {abs(p50):.0f} µs {'later' if p50 >= 0 else 'sooner'} at p50."))
    if "v9h_ext_authz_head_reject" in present:
        w("A request without its secret is refused on its head in the proxy, but only after its whole")
        w("body with ext_authz, which buffers the body before it asks.")
    w("")


def cmd_report(a):
    with open(a.raw, encoding="utf-8") as f:
        rows = [json.loads(l) for l in f if l.strip()]
    discarded = sum(1 for r in rows if r.get("discarded") and r["kind"] == "throughput")
    rows = [r for r in rows if not r.get("discarded")]
    with open(a.meta, encoding="utf-8") as f:
        meta = json.load(f)
    m = machine()

    present = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    agg = {}
    for v in VARIANTS:
        tp = [r for r in rows if r["variant"] == v and r["kind"] == "throughput"]
        lat = [r for r in rows if r["variant"] == v and r["kind"] == "latency"]
        mem = [r for r in rows if r["variant"] == v and r["kind"] == "memory"]
        agg[v] = {
            "rps": [r["rps"] for r in tp],
            "cpu": [r.get("cpu_us_per_req") for r in tp],
            "service": [r.get("service_cpu_us_per_req") for r in tp if "service_cpu_s" in r],
            "total": [total_cpu(r) for r in tp],
            "service_rss": [r["service_rss_bytes"] / 2**20 for r in mem if r.get("service_rss_bytes")],
            "sys": [100 * r["envoy_sys_s"] / r["envoy_cpu_s"] for r in tp if r.get("envoy_cpu_s")],
            "other": [r.get("interference_pct") for r in tp],
            "others": [r.get("others_cpus") for r in tp],
            "p50": [r["p50_us"] for r in lat],
            "p99": [r["p99_us"] for r in lat],
            "rss": [r["rss_bytes"] / 2**20 for r in mem if r.get("rss_bytes")],
            "alloc": [r["allocated_bytes"] / 2**20 for r in mem],
            "requests": sum(r["responses"] for r in tp + lat),
            "unexpected": sum(r["unexpected"] for r in tp + lat),
            "statuses": sorted({k for r in tp + lat for k in r["statuses"]}),
        }
    med = {v: {k: median(x) for k, x in d.items() if isinstance(x, list) and k != "statuses"} for v, d in agg.items()}
    # CPU per request (Envoy's, plus the ext_authz service's) by round, for ratios taken
    # within a round (the variants of a round run minutes apart at most, so they share the
    # machine's state).
    by_round = {}
    for r in rows:
        if r["kind"] == "throughput" and total_cpu(r):
            by_round.setdefault(r["variant"], {})[r["round"]] = total_cpu(r)

    def round_ratios(v, base):
        a, b = by_round.get(v, {}), by_round.get(base, {})
        return [a[k] / b[k] for k in sorted(set(a) & set(b)) if b[k]]

    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("What webhook-guard costs inside Envoy, next to the alternatives. Generated by")
    w("`make bench` (`benches/run.sh`, analysis in `benches/report.py`); the deterministic")
    w("per-request counts (`make cost`) and micro-benchmarks of the pure code")
    w("(`cargo bench --bench pure`) are further down.")
    w("")
    w("## Set-up")
    w("")
    w("One Envoy (`--concurrency 1`: one worker thread) with one listener per variant. Every")
    w("variant routes to the same upstream, through a cluster of its own: another listener of")
    w("the same Envoy answering 200 with a route-level `direct_response`, so each forwarded")
    w("request crosses Envoy twice on the same worker, and the numbers are Envoy's own cost,")
    w("not a backend's. All listeners share the HTTP connection manager settings of")
    w("`envoy.yaml` (path normalisation) without its access log. The load generator is oha")
    w("over HTTP/1.1 keep-alive on loopback. *hold*: the filter holds the request head until")
    w("the body's verdict (`allow_on_headers_stop_iteration: true`); *stream*: the head goes")
    w("upstream at once and only the body is held.")
    if any(v in present for v in SERVICE):
        w("")
        w("*ext_authz* (9): the alternative to an in-proxy filter. Envoy's `ext_authz` HTTP filter")
        w("buffers the whole body (`with_request_body`, `allow_partial_message: false`, at most")
        w("65536 bytes as the guard's limit), holding the head meanwhile, and sends the request to")
        w("`benches/ext-authz-verifier` on loopback: webhook-guard's own flow compiled for this")
        w("machine behind `hyper`, one thread serving every connection, with the same configuration.")
        w("It answers 200 (Envoy forwards the request as it came: no CloudEvent) or the guard's")
        w("refusal, which Envoy returns to the sender. The service is pinned to Envoy's CPU, as a")
        w("sidecar shares its pod's CPU; its CPU time (`/proc/<pid>/stat`) is added to Envoy's.")
    if any(v in present for v in REPLAY):
        w("")
        w("*replay* (10): the floor under webhook-guard's accepted path. The empty filter, configured")
        w("`replay-hold` or `replay-stream`, makes the host calls webhook-guard makes for the valid")
        w("notification forwarded as a CloudEvent (`make cost`'s `azure_cloudevent_hold` and `_stream`:")
        w("the header map read once, 3 counters, a histogram value, the clock, `:path` without the")
        w("secret and webhook-guard's other header writes and removals, the body read and replaced,")
        w("`:status` read), in its order and with its values, and sends upstream the same CloudEvent,")
        w("a constant; it checks and parses nothing. The rate limit's host calls are left to 4, as")
        w("checks. 10 − 2 is what any filter forwarding this CloudEvent pays Envoy; 4 − 10 is")
        w("webhook-guard's own work.")
    w("")
    w("| variant | header mode | filter | request | expected |")
    w("|---|---|---|---|---|")
    for v in present:
        label, mode, what, request, expect = VARIANTS[v]
        w(f"| {label.split('.')[0]} | {mode} | {what} | {request} | {expect} |")
    w("")
    w("The valid notification is `examples/requests/azure-service-catalog.json`, POSTed with")
    w("`?sig=…` and `content-type: application/json`; the invalid one is the same document")
    w("without its `eventType` member.")
    w("")
    w(f"Each round runs every variant in turn (the order rotates each round), {meta['rounds']} rounds:")
    w("")
    w(f"- **throughput**: {meta['concurrency']} connections for {meta['duration_s']} s, after {meta['warmup_s']} s of warm-up;")
    w("- **CPU/request**: Envoy's utime+stime (`/proc/<pid>/stat`, all threads) over the throughput")
    w("  run divided by the requests the listener completed (Envoy's own counter); for forwarded")
    w("  requests this includes the upstream listener's half;")
    w(f"- **latency**: {meta['rate']} req/s over {meta['lat_connections']} connections for {meta['duration_s']} s, oha's")
    w("  latency correction on (no coordinated omission);")
    w("- **memory**: Envoy's RSS (`VmRSS`) and allocated heap (admin `/memory`) after the variant's run;")
    w("- every response is checked (oha's status counts and the listener's `downstream_rq_Nxx`);")
    w("  the run fails on any unexpected answer;")
    w("- the upstream reads each request whole before answering, so connections are reused as with")
    w("  a keep-alive backend; the run fails otherwise, except for 5s: a body refused after its")
    w("  head went upstream resets that upstream request and its connection, by design.")
    if any(v in present for v in REPLAY):
        w("- before measuring, 10 is checked to send upstream as many bytes as 4 in each mode (the same")
        w("  head but for values of the same length, the same CloudEvent).")
    pin = "Envoy pinned to CPU 0 and oha to CPU 1 (`taskset`)" if meta.get("pinned") else "no CPU pinning"
    if meta.get("nice"):
        pin += f", both at nice {meta['nice']} so that other work on the machine yields to them"
    w(f"- {pin}.")
    w("")
    w("## Machine and run")
    w("")
    w(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    w(f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory']} memory; kernel {m['kernel']}")
    w(f"- Envoy {meta['envoy_version']}; {meta['oha_version']}")
    w(f"- `{meta['wasm']}`: {meta['wasm_bytes']:,} bytes; empty filter: {meta['empty_wasm_bytes']:,} bytes"
      + (f"; ext_authz service: {meta['verifier_bytes']:,} bytes" if meta.get("verifier_bytes") else ""))
    w(f"- webhook-guard configuration (stream; hold differs only in `header_mode`): `{meta['wg_config']}`")
    if "rate_limit" not in meta["wg_config"]:
        w("  (run without `rate_limit`: `BENCH_WG_EXTRA=\"\"`; the rate limiter's shared-data CAS is not measured)")
    if meta.get("note"):
        w(f"- note: {meta['note']}")
    if meta.get("busy_at_start_pct") is not None:
        w(f"- other processes kept {meta['busy_at_start_pct']} % of the machine's CPU time busy in the second before the run")
    waited = f" (of which {meta['waited_s']} s waiting for a quiet machine)" if meta.get("waited_s") else ""
    by_variant = meta.get("upstream_by_variant") or {}
    if by_variant:
        w("- upstream connections / requests: " + ", ".join(
            f"{VARIANTS[v][0].split('.')[0]} {cx:,} / {rq:,}" for v, (cx, rq) in by_variant.items() if v in VARIANTS))
    authz = {v: n for v, n in (meta.get("authz_by_variant") or {}).items() if v in VARIANTS}
    if authz:
        w("- ext_authz service connections / requests: " + ", ".join(
            f"{VARIANTS[v][0].split('.')[0]} {cx:,} / {rq:,}" for v, (cx, rq) in authz.items()))
    w(f"- whole run: {meta['elapsed_s'] // 60} min {meta['elapsed_s'] % 60} s{waited}; raw results: `{meta['raw']}`")
    w("")
    w("## Results")
    w("")
    w("Median over rounds, (min–max) in brackets: the spread is the noise of this machine.")
    w("*kernel %*: Envoy's system time in its CPU time. *other CPU %*: share of Envoy's CPU taken")
    w("by other processes during the throughput runs; *others CPU*: CPUs used by other processes")
    w("anywhere on the machine meanwhile (Envoy, the ext_authz service and oha excluded). Both are")
    w("0 on a quiet machine.")
    w(f"A variant's measurements that saw more than {meta['max_interference']} % (of Envoy's CPU, or of a")
    w(f"CPU elsewhere) were discarded and run again ({meta['retries']} time(s) at most; the last attempt is")
    w(f"kept): {discarded} discarded in this run.")
    w("")
    w("| variant | throughput req/s | Envoy CPU µs/req | service CPU µs/req | kernel % | p50 µs | p99 µs | RSS MiB | heap MiB | other CPU % | others CPU | responses checked | unexpected |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for v in present:
        name, d = VARIANTS[v][0], agg[v]
        service = spread(d["service"], "{:.1f}") if v in SERVICE else "—"
        w(f"| {name} | {spread(d['rps'], '{:,.0f}')} | {spread(d['cpu'], '{:.1f}')} | {service} | {fnum(median(d['sys']), '{:.0f}')} "
          f"| {spread(d['p50'], '{:.0f}')} | {spread(d['p99'], '{:.0f}')} | {spread(d['rss'], '{:.1f}')} "
          f"| {spread(d['alloc'], '{:.1f}')} | {fnum(median(d['other']), '{:.0f}')} "
          f"| {fnum(median(d['others']), '{:.2f}')} "
          f"| {d['requests']:,} ({', '.join(d['statuses'])}) | {d['unexpected']} |")
    w("")
    w("CPU per request (Envoy's, plus the ext_authz service's for 9) against the baselines: the")
    w("ratio within each round, median (min–max) over rounds; the empty filter of the same header")
    w("mode is the baseline of a WASM variant.")
    w("")
    w("| variant | CPU/req ÷ router | CPU/req ÷ empty filter (same mode) | p99 added over the router µs |")
    w("|---|---|---|---|")
    for v in present:
        mode = VARIANTS[v][1]
        empty = {"hold": "v2_empty_hold", "stream": "v2_empty_stream"}.get(mode)
        p99_add = diff(med[v]["p99"], med["v1_router"]["p99"])
        w(f"| {VARIANTS[v][0]} | {spread(round_ratios(v, 'v1_router'), '{:.2f}')} "
          f"| {spread(round_ratios(v, empty), '{:.2f}') if empty else '—'} | {fnum(p99_add, '{:+.0f}')} |")
    w("")
    against_ext_authz(w, agg, med, round_ratios, present)
    w("## Targets")
    w("")
    w("Ratios of CPU per request within a round, median (min–max); reported, never enforced.")
    limit = meta.get("max_interference", 10)
    noisy = [VARIANTS[v][0] for v in present
             if (median(agg[v]["other"]) or 0) > limit or (median(agg[v]["others"]) or 0) * 100 > limit]
    if noisy:
        w("")
        w(f"**This run was disturbed**: other processes took more than {limit} % of Envoy's CPU or of")
        w(f"a CPU elsewhere (median) for {', '.join(noisy)}. The checks below are not reliable;")
        w("re-run `make bench` on a quiet machine.")
    w("")
    w("| target | measured | floor: the same host calls and request, no checks | met |")
    w("|---|---|---|---|")
    floors = []
    for v, base, most, name, floor in TARGETS:
        ratios = round_ratios(v, base)
        verdict = "n/a" if not ratios else "met" if median(ratios) <= most else "**not met**"
        at_floor = round_ratios(floor, base) if floor else []
        if at_floor:
            floors.append(f"{spread(at_floor, '{:.2f}')} × in {VARIANTS[floor][1]} ({VARIANTS[floor][0].split('.')[0]})")
        w(f"| {name} | {spread(ratios, '{:.3f}')} | {spread(at_floor, '{:.3f}') if floor else '—'} | {verdict} |")
    size_ok = "met" if meta["wasm_bytes"] <= MODULE_LIMIT else "**not met**"
    w(f"| module ≤ {MODULE_LIMIT:,} bytes | {meta['wasm_bytes']:,} bytes | — | {size_ok} |")
    w("")
    if floors:
        w("*floor*: the empty filter replaying the accepted path's host calls and sending upstream the")
        w(f"same CloudEvent, from constants, costs {' and '.join(floors)} the empty filter's CPU per")
        w("request: the best any implementation forwarding this CloudEvent through these host calls")
        w("could do, whatever its checks cost.")
        w("")
    c = {v: med[v]["cpu"] for v in VARIANTS}
    w("## Where the CPU goes (medians, µs of Envoy CPU per request; the ext_authz service's where said)")
    w("")
    lines = [
        ("router only, two passes through Envoy", "v1_router", None),
        ("a WASM body filter's floor, hold (2h − 1)", "v2_empty_hold", "v1_router"),
        ("a WASM body filter's floor, stream (2s − 1)", "v2_empty_stream", "v1_router"),
        ("webhook-guard on a valid notification over the empty filter, hold (4h − 2h)", "v4_wg_hold", "v2_empty_hold"),
        ("of which the floor: its host calls and the rewritten request, no checks (10h − 2h)", "v10_replay_hold", "v2_empty_hold"),
        ("of which its checks, parsing and rate limit, the rate limit's 3 host calls included (4h − 10h)", "v4_wg_hold", "v10_replay_hold"),
        ("webhook-guard on a valid notification over the empty filter, stream (4s − 2s)", "v4_wg_stream", "v2_empty_stream"),
        ("of which the floor: its host calls and the rewritten request, no checks (10s − 2s)", "v10_replay_stream", "v2_empty_stream"),
        ("of which its checks, parsing and rate limit, the rate limit's 3 host calls included (4s − 10s)", "v4_wg_stream", "v10_replay_stream"),
        ("a refusal after the body, hold, against the empty filter (5h − 2h)", "v5_wg_reject_hold", "v2_empty_hold"),
        ("a refusal after the body, stream, against the empty filter (5s − 2s)", "v5_wg_reject_stream", "v2_empty_stream"),
        ("a refusal on the head, against the router (8 − 1)", "v8_wg_head_reject", "v1_router"),
        ("the Lua check over the router (3 − 1)", "v3_lua", "v1_router"),
        ("the rate limit (4h − 7)", "v4_wg_hold", "v7_wg_no_rate_limit"),
        ("webhook-guard's checks and parsing alone: the same host calls, no rate limit, hold (7 − 10h)", "v7_wg_no_rate_limit", "v10_replay_hold"),
        ("the CloudEvent: building it, replacing the body, a bigger upstream request (7 − 6)", "v7_wg_no_rate_limit", "v6_wg_original"),
    ]
    for text, v, base in lines:
        if c.get(v) is None or (base and c.get(base) is None):
            continue
        item = "  - " if text.startswith("of which") else "- "
        w(f"{item}{text}: {c[v] - c[base]:+.1f}" if base else f"{item}{text}: {c[v]:.1f}")
    t = {v: med[v]["total"] for v in VARIANTS}
    for text, v, base, of in [
        ("Envoy's side of ext_authz, buffering and asking the service (9 − 1, Envoy only)", "v9_ext_authz", "v1_router", c),
        ("the ext_authz service's own (9, service only)", "v9_ext_authz", None, {v: med[v]["service"] for v in VARIANTS}),
        ("ext_authz, Envoy and service, over webhook-guard, hold (9 − 4h)", "v9_ext_authz", "v4_wg_hold", t),
        ("a refusal after the body: ext_authz over webhook-guard (9r − 5h)", "v9r_ext_authz_reject", "v5_wg_reject_hold", t),
        ("a request without its secret: ext_authz over webhook-guard (9h − 8)", "v9h_ext_authz_head_reject", "v8_wg_head_reject", t),
    ]:
        if of.get(v) is not None and (base is None or of.get(base) is not None):
            w(f"- {text}: {of[v] - of[base]:+.1f}" if base else f"- {text}: {of[v]:.1f}")
    w("")
    cost = meta.get("cost_md")
    if cost and os.path.exists(cost):
        w("## Deterministic cost per request (`make cost`)")
        w("")
        w("The same module run by `tools/wasm-cost` in the wasmi interpreter behind a stub of the")
        w("proxy-wasm host: counts that do not depend on the machine, checked by `make test`")
        w("against `benches/budget.json` (3 % slack; the module's size 2 %).")
        w("")
        with open(cost, encoding="utf-8") as f:
            w(f.read().rstrip("\n"))
        w("")
    errors = sum(d["unexpected"] for d in agg.values())
    w(f"Unexpected responses or transport errors in the whole run: {errors}.")
    w("")

    notes = ""
    if os.path.exists(a.out):
        with open(a.out, encoding="utf-8") as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1].strip("\n")
    w(NOTES_MARKER)
    if notes:
        w("")
        w(notes)
    text = "\n".join(out).rstrip("\n") + "\n"
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    # The results part on stdout.
    start = text.index("## Machine and run")
    end = text.index(NOTES_MARKER)
    print(text[start:end].rstrip())
    if errors:
        sys.exit(f"{errors} unexpected responses or transport errors")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--kind", required=True, choices=["throughput", "latency", "memory"])
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--variant", required=True, choices=list(VARIANTS))
    r.add_argument("--expect", type=int, default=200)
    r.add_argument("--oha")
    r.add_argument("--stats-before")
    r.add_argument("--stats-after")
    r.add_argument("--cpu-before", default="0 0 0 0 0 0 0 0")
    r.add_argument("--cpu-after", default="0 0 0 0 0 0 0 0")
    r.add_argument("--times-before")
    r.add_argument("--times-after")
    r.add_argument("--clk-tck", type=int, default=100)
    r.add_argument("--concurrency", type=int)
    r.add_argument("--rate", type=int)
    r.add_argument("--admin-memory")
    r.add_argument("--proc-status")
    r.add_argument("--service-status")
    sub.add_parser("progress")
    n = sub.add_parser("noise")
    n.add_argument("file")
    n.add_argument("--max", type=float, required=True)
    d = sub.add_parser("discard")
    d.add_argument("file")
    rep = sub.add_parser("report")
    rep.add_argument("raw")
    rep.add_argument("--meta", required=True)
    rep.add_argument("--out", required=True)
    a = p.parse_args()
    {"record": cmd_record, "progress": cmd_progress, "report": cmd_report, "noise": cmd_noise,
     "discard": cmd_discard}[a.cmd](a)


if __name__ == "__main__":
    main()
