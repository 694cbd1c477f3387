#!/usr/bin/env python3
"""The README's five-minute tour, as a newcomer follows it (`make newcomer`, part of `make test`).

A clean clone of HEAD; the tour's commands (its ```sh blocks, in order); and every output
block it shows (```text after a command: what that command prints; ```text first-terminal:
what `make run` prints in its own terminal) must be found in what the command really
printed, line by line, in order (other lines may come between; a printed line may start
with more, such as Envoy's log prefix; a `…` line is only for the reader). `make run` runs in the background as in its own terminal until the tour ends.

The tour uses fixed ports (10000, 9901, 18080): where the kernel allows it, the whole tour
runs in a network namespace of its own, so another Envoy on the machine cannot meet it.
The clone gets ENVOY (the Envoy `make` installed; no download) and keeps its Rust build in
target/newcomer/ of this checkout between runs (a compile cache, not a source file).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOUR = "## A five-minute tour"


def tour(readme):
    """The tour's blocks: ("sh", commands) and ("text", target, expected lines), in order."""
    text = open(readme, encoding="utf-8").read()
    start = text.index(TOUR)
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    blocks = []
    for info, body in re.findall(r"^```([^\n]*)\n(.*?)^```$", section, re.S | re.M):
        kind, _, target = info.partition(" ")
        if kind == "sh":
            blocks.append(("sh", body.replace("\\\n", " ")))
        elif kind == "text":
            lines = [l.rstrip() for l in body.splitlines() if l.strip() and l.strip() != "…"]
            blocks.append(("text", target.strip() or "previous", lines))
        else:
            sys.exit(f"newcomer: the tour has a ```{info} block; it only knows sh and text")
    return blocks


def missing(expected, output):
    """The first expected line not found, in order, in `output`; None when all are."""
    lines = [l.rstrip() for l in output.splitlines()]
    at = 0
    for want in expected:
        # A line ends as shown: a log line comes after Envoy's prefix (time, thread, source).
        while at < len(lines) and not lines[at].endswith(want):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


def wait_for(expected, path, process, seconds):
    """Waits until the background command's output holds `expected` (or it exits)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = open(path, encoding="utf-8", errors="replace").read()
        if missing(expected, out) is None:
            return out
        if process.poll() is not None:
            break
        time.sleep(0.5)
    return open(path, encoding="utf-8", errors="replace").read()


def run(clone, env, print_only):
    blocks = tour(os.path.join(clone, "README.md"))
    background = None
    log = os.path.join(clone, ".newcomer-first-terminal.log")
    last = None
    failures = []
    try:
        for block in blocks:
            if block[0] == "sh":
                commands = [c for c in block[1].splitlines() if c.strip() and not c.lstrip().startswith("#")]
                for command in commands:
                    if background is None and command.strip() == "make run":
                        background = subprocess.Popen(
                            ["bash", "-c", command], cwd=clone, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
                        )
                        last = ("first-terminal", None)
                        continue
                    done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
                    last = (command, done.stdout + done.stderr)
                    if print_only:
                        print(f"$ {command}\n{last[1]}")
                continue
            target, expected = block[1], block[2]
            if target == "first-terminal" or (target == "previous" and last and last[1] is None):
                if background is None:
                    failures.append("an output of `make run` is shown before the tour starts it")
                    continue
                # The first build takes minutes; every later output is there in seconds.
                out = wait_for(expected, log, background, 1800 if last and last[1] is None else 60)
                source = "make run"
            else:
                out, source = last[1], last[0]
            if print_only:
                print(f"--- {source}:\n{out}")
            gone = missing(expected, out)
            if gone is not None:
                failures.append(f"`{source}` did not print, in the README's order:\n  {gone}\nit printed:\n{out}")
    finally:
        if background is not None:
            os.killpg(background.pid, 15)
            background.wait(timeout=30)
    return failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--envoy", required=True)
    parser.add_argument("--print", action="store_true", help="print every output (to write the README's blocks)")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside is None:
        namespace = subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0
        if namespace:
            argv = [sys.executable, os.path.abspath(__file__), "--envoy", args.envoy, "--inside", "namespace"] + (["--print"] if args.print else [])
            sys.exit(subprocess.run(["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"] + argv).returncode)
        print("newcomer: no network namespace here; the tour uses the machine's ports 10000, 9901 and 18080")
    work = tempfile.mkdtemp(prefix="webhook-guard-newcomer-")
    clone = os.path.join(work, "webhook-guard")
    try:
        subprocess.run(["git", "clone", "--quiet", ROOT, clone], check=True)
        cache = os.path.join(ROOT, "target", "newcomer")
        os.makedirs(cache, exist_ok=True)
        os.symlink(cache, os.path.join(clone, "target"))
        env = dict(os.environ, ENVOY=os.path.abspath(args.envoy))
        failures = run(clone, env, args.print)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"newcomer: {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("newcomer: the README's tour gives the outputs it shows")


if __name__ == "__main__":
    main()
