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

VARIANTS = {
    "v1_router": "1. router only",
    "v2_empty_wasm": "2. empty WASM filter",
    "v3_lua": "3. Lua sig + substring check",
    "v4_webhook_guard": "4. webhook-guard (valid → CloudEvent)",
    "v5_webhook_guard_reject": "5. webhook-guard (invalid → 400)",
    "v6_wg_original": "6. webhook-guard, forward original, no rate limit",
    "v7_wg_no_rate_limit": "7. webhook-guard, CloudEvent, no rate limit",
}
NOTES_MARKER = "<!-- Notes below this line are kept when benches/run.sh regenerates this file. -->"
MODULE_LIMIT = 250 * 1024
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
        # --cpu-before/--cpu-after: "utime stime cpu_busy cpu_total all_busy all_total", in
        # clock ticks (cpu_*: the CPU Envoy is pinned to; all_*: the whole machine)
        b = [int(x) for x in a.cpu_before.split()]
        e = [int(x) for x in a.cpu_after.split()]
        user, sys_, busy, total, all_busy, all_total = (e[i] - b[i] for i in range(6))
        gen_s = read_times(a.times_after) - read_times(a.times_before)
        line["oha_cpu_s"] = round(gen_s, 3)
        # Other processes' CPU use anywhere on the machine, in CPUs (oha and Envoy excluded).
        ncpu = os.cpu_count() or 1
        others = all_busy - user - sys_ - gen_s * a.clk_tck
        line["others_cpus"] = round(max(others, 0) * ncpu / all_total, 3) if all_total else None
        cpu_s = (user + sys_) / a.clk_tck
        done = envoy.get("completed", 0)
        line["envoy_cpu_s"] = round(cpu_s, 3)
        line["envoy_user_s"] = round(user / a.clk_tck, 3)
        line["envoy_sys_s"] = round(sys_ / a.clk_tck, 3)
        line["cpu_us_per_req"] = round(cpu_s * 1e6 / done, 2) if done else None
        # Share of Envoy's CPU (or of the machine when not pinned) used by anything else.
        line["interference_pct"] = round(100 * max(busy - user - sys_, 0) / total, 1) if total else None
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
    base1, base2 = med["v1_router"], med["v2_empty_wasm"]

    def fnum(x, fmt):
        return "n/a" if x is None else fmt.format(x)

    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("What webhook-guard costs inside Envoy, next to the alternatives. Generated by")
    w("`make bench` (`benches/run.sh`, analysis in `benches/report.py`); micro-benchmarks of")
    w("the pure code: `cargo bench --bench pure` (see the end of this file).")
    w("")
    w("## Set-up")
    w("")
    w("One Envoy (`--concurrency 1`: one worker thread) with one listener per variant. Every")
    w("variant routes to the same upstream: another listener of the same Envoy answering 200")
    w("with a route-level `direct_response`, so each forwarded request crosses Envoy twice on")
    w("the same worker, and the numbers are Envoy's own cost, not a backend's. All listeners")
    w("share the HTTP connection manager settings of `envoy.yaml` (path normalisation) without")
    w("its access log. The load generator is oha over HTTP/1.1 keep-alive on loopback.")
    w("")
    w("| variant | filter | request | expected |")
    w("|---|---|---|---|")
    w("| 1 | none (router only) | valid notification | 200 |")
    w("| 2 | `benches/empty-filter`: proxy-wasm 0.2.5, pauses headers, buffers the body, inspects nothing (`allow_on_headers_stop_iteration: true`) | valid | 200 |")
    w("| 3 | `benches/guard.lua`: `sig` equals a constant, whole body read, four field names found with `string.find` | valid | 200 |")
    w("| 4 | webhook-guard, `azure_managed_app`, forwarded as a CloudEvent | valid | 200 |")
    w("| 5 | webhook-guard, same configuration | invalid (PATCH/Deleted) | 400 |")
    if "v6_wg_original" in present:
        w("| 6 | webhook-guard, `forward: original`, no `rate_limit` (diagnostic) | valid | 200 |")
    if "v7_wg_no_rate_limit" in present:
        w("| 7 | webhook-guard, CloudEvent, no `rate_limit` (diagnostic) | valid | 200 |")
    w("")
    w("The valid notification is `examples/requests/azure-service-catalog.json`, POSTed with")
    w("`?sig=…` and `content-type: application/json`; variant 5 sends the same document with")
    w("`eventType` PATCH and `provisioningState` Deleted (an invalid pair).")
    w("")
    w(f"Each round runs every variant in turn (the order rotates each round), {meta['rounds']} rounds:")
    w("")
    w(f"- **throughput**: {meta['concurrency']} connections for {meta['duration_s']} s, after {meta['warmup_s']} s of warm-up;")
    w("- **CPU/request**: Envoy's utime+stime (`/proc/<pid>/stat`, all threads) over the throughput")
    w("  run divided by the requests the listener completed (Envoy's own counter); for variants")
    w("  1–4 this includes the upstream listener's half;")
    w(f"- **latency**: {meta['rate']} req/s over {meta['lat_connections']} connections for {meta['duration_s']} s, oha's")
    w("  latency correction on (no coordinated omission);")
    w("- **memory**: Envoy's RSS (`VmRSS`) and allocated heap (admin `/memory`) after the variant's run;")
    w("- every response is checked (oha's status counts and the listener's `downstream_rq_Nxx`);")
    w("- the upstream reads each request whole before answering, so connections are reused as with")
    w("  a keep-alive backend (the run fails otherwise).")
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
    w(f"- `{meta['wasm']}`: {meta['wasm_bytes']:,} bytes; empty filter: {meta['empty_wasm_bytes']:,} bytes")
    w(f"- webhook-guard configuration: `{meta['wg_config']}`")
    if "rate_limit" not in meta["wg_config"]:
        w("  (run without `rate_limit`: `BENCH_WG_EXTRA=\"\"`; the rate limiter's shared-data CAS is not measured)")
    if meta.get("note"):
        w(f"- note: {meta['note']}")
    if meta.get("busy_at_start_pct") is not None:
        w(f"- other processes kept {meta['busy_at_start_pct']} % of the machine's CPU time busy in the second before the run")
    waited = f" (of which {meta['waited_s']} s waiting for a quiet machine)" if meta.get("waited_s") else ""
    if meta.get("upstream_requests"):
        w(f"- upstream: {meta['upstream_connections']:,} connections for {meta['upstream_requests']:,} requests")
    w(f"- whole run: {meta['elapsed_s'] // 60} min {meta['elapsed_s'] % 60} s{waited}; raw results: `{meta['raw']}`")
    w("")
    w("## Results")
    w("")
    w("Median over rounds, (min–max) in brackets. *kernel %*: Envoy's system time in its CPU time.")
    w("*other CPU %*: share of Envoy's CPU taken by other processes during the throughput runs;")
    w("*others CPU*: CPUs used by other processes anywhere on the machine meanwhile (Envoy and")
    w("oha excluded). Both are 0 on a quiet machine. A variant's measurements that saw more than")
    w(f"{meta['max_interference']} % (of Envoy's CPU, or of a CPU elsewhere) were discarded and run again")
    w(f"({meta['retries']} time(s) at most; the last attempt is kept): {discarded} discarded in this run.")
    w("")
    w("| variant | throughput req/s | Envoy CPU µs/req | kernel % | p50 µs | p99 µs | RSS MiB | heap MiB | other CPU % | others CPU | responses checked | unexpected |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for v in present:
        name, d = VARIANTS[v], agg[v]
        w(f"| {name} | {spread(d['rps'], '{:,.0f}')} | {spread(d['cpu'], '{:.1f}')} | {fnum(median(d['sys']), '{:.0f}')} "
          f"| {spread(d['p50'], '{:.0f}')} | {spread(d['p99'], '{:.0f}')} | {spread(d['rss'], '{:.1f}')} "
          f"| {spread(d['alloc'], '{:.1f}')} | {fnum(median(d['other']), '{:.0f}')} "
          f"| {fnum(median(d['others']), '{:.2f}')} "
          f"| {d['requests']:,} ({', '.join(d['statuses'])}) | {d['unexpected']} |")
    w("")
    w("Ratios of the medians:")
    w("")
    w("| variant | throughput ÷ v1 | throughput ÷ v2 | CPU/req ÷ v1 | CPU/req ÷ v2 | p99 added over v1 µs | p50 added over v1 µs |")
    w("|---|---|---|---|---|---|---|")
    for v in present:
        name, d = VARIANTS[v], med[v]
        p99_add = diff(d["p99"], base1["p99"])
        p50_add = diff(d["p50"], base1["p50"])
        w(f"| {name} | {fnum(ratio(d['rps'], base1['rps']), '{:.3f}')} | {fnum(ratio(d['rps'], base2['rps']), '{:.3f}')} "
          f"| {fnum(ratio(d['cpu'], base1['cpu']), '{:.2f}')} | {fnum(ratio(d['cpu'], base2['cpu']), '{:.2f}')} "
          f"| {fnum(p99_add, '{:+.0f}')} | {fnum(p50_add, '{:+.0f}')} |")
    w("")

    best = {v: {"rps": max(d["rps"], default=None), "cpu": min((x for x in d["cpu"] if x is not None), default=None),
                "p99": min((x for x in d["p99"] if x is not None), default=None)} for v, d in agg.items()}
    b1, b2 = best["v1_router"], best["v2_empty_wasm"]
    w("Ratios of the best rounds (highest throughput, lowest CPU/request, lowest p99 of each variant):")
    w("interference only ever makes a round worse, so on a shared machine these are the closer")
    w("estimate of the intrinsic cost.")
    w("")
    w("| variant | best req/s | ÷ v1 | ÷ v2 | best CPU µs/req | ÷ v1 | ÷ v2 | best p99 µs | added over v1 µs |")
    w("|---|---|---|---|---|---|---|---|---|")
    for v in present:
        name, d = VARIANTS[v], best[v]
        add = diff(d["p99"], b1["p99"])
        w(f"| {name} | {fnum(d['rps'], '{:,.0f}')} | {fnum(ratio(d['rps'], b1['rps']), '{:.3f}')} "
          f"| {fnum(ratio(d['rps'], b2['rps']), '{:.3f}')} | {fnum(d['cpu'], '{:.1f}')} "
          f"| {fnum(ratio(d['cpu'], b1['cpu']), '{:.2f}')} | {fnum(ratio(d['cpu'], b2['cpu']), '{:.2f}')} "
          f"| {fnum(d['p99'], '{:.0f}')} | {fnum(add, '{:+.0f}')} |")
    w("")

    v4, v3 = med["v4_webhook_guard"], med["v3_lua"]
    checks = [
        ("throughput v4 ≥ 0.95 × v2 (empty WASM filter)",
         v4["rps"] is not None and base2["rps"] is not None and v4["rps"] >= 0.95 * base2["rps"],
         f"{fnum(ratio(v4['rps'], base2['rps']), '{:.3f}')} × v2"),
        ("throughput v4 ≥ v3 (Lua)",
         v4["rps"] is not None and v3["rps"] is not None and v4["rps"] >= v3["rps"],
         f"{fnum(ratio(v4['rps'], v3['rps']), '{:.3f}')} × v3"),
        ("p99 added over v1 < 300 µs",
         v4["p99"] is not None and base1["p99"] is not None and v4["p99"] - base1["p99"] < 300,
         f"{fnum(diff(v4['p99'], base1['p99']), '{:+.0f}')} µs"),
        ("module < 250 KiB (256,000 bytes)", meta["wasm_bytes"] < MODULE_LIMIT,
         f"{meta['wasm_bytes']:,} bytes"),
    ]
    w("## Targets")
    w("")
    w("Checked on the medians; reported, never enforced.")
    limit = meta.get("max_interference", 10)
    noisy = [VARIANTS[v] for v in present
             if (median(agg[v]["other"]) or 0) > limit or (median(agg[v]["others"]) or 0) * 100 > limit]
    if noisy:
        w("")
        w(f"**This run was disturbed**: other processes took more than {limit} % of Envoy's CPU or of")
        w(f"a CPU elsewhere (median) for {', '.join(noisy)}. The throughput and latency checks below")
        w("are not reliable; re-run `make bench` on a quiet machine.")
    w("")
    w("| target | measured | met |")
    w("|---|---|---|")
    for name, ok, got in checks:
        verdict = "n/a" if "n/a" in got else "met" if ok else "**not met**"
        w(f"| {name} | {got} | {verdict} |")
    w("")

    # Where the time goes, from the CPU/request medians.
    c = {v: med[v]["cpu"] for v in VARIANTS}
    if all(c[v] is not None for v in list(VARIANTS)[:5]):
        w("## Where the CPU goes (medians, µs of Envoy CPU per request)")
        w("")
        w(f"- router only, two passes through Envoy: {c['v1_router']:.1f}")
        w(f"- a WASM body filter's floor (v2 − v1): {c['v2_empty_wasm'] - c['v1_router']:+.1f}")
        w(f"- webhook-guard's own work on a valid notification (v4 − v2): {c['v4_webhook_guard'] - c['v2_empty_wasm']:+.1f}")
        w(f"- the Lua check over the router (v3 − v1): {c['v3_lua'] - c['v1_router']:+.1f}")
        w(f"- a rejected notification (v5), which never reaches the upstream: {c['v5_webhook_guard_reject']:.1f}"
          f" ({c['v5_webhook_guard_reject'] - c['v4_webhook_guard']:+.1f} against v4)")
        if c["v6_wg_original"] is not None:
            w(f"- webhook-guard forwarding the original body, no rate limit (v6 − v2): {c['v6_wg_original'] - c['v2_empty_wasm']:+.1f}")
        if c["v7_wg_no_rate_limit"] is not None:
            w(f"- the rate limit (v4 − v7): {c['v4_webhook_guard'] - c['v7_wg_no_rate_limit']:+.1f}")
        if c["v6_wg_original"] is not None and c["v7_wg_no_rate_limit"] is not None:
            w(f"- the CloudEvent: building it, replacing the body, a bigger upstream request (v7 − v6): "
              f"{c['v7_wg_no_rate_limit'] - c['v6_wg_original']:+.1f}")
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
    r.add_argument("--cpu-before", default="0 0 0 0 0 0")
    r.add_argument("--cpu-after", default="0 0 0 0 0 0")
    r.add_argument("--times-before")
    r.add_argument("--times-after")
    r.add_argument("--clk-tck", type=int, default=100)
    r.add_argument("--concurrency", type=int)
    r.add_argument("--rate", type=int)
    r.add_argument("--admin-memory")
    r.add_argument("--proc-status")
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
