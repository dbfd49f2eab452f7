#!/usr/bin/python3
"""Launch latency: Concord's create-to-ACTIVE for a container server, side by side with plain
runc starting the same busybox bundle, in one run on this machine.

Started by launch.sh (packages, build, fixtures, outer clean-up trap); can be run directly with
/usr/bin/python3 once the binary and the fixtures exist.

Method:
  * Concord: `concord all-in-one` (its in-process agent runs containers with runc) on port 0
    with a temp data dir. The busybox rootfs tarball (tests/fixtures/build-images.sh) is
    uploaded as a public image (container_format docker, disk_format raw); the admin project's
    quota is lifted. Each launch is POST /compute/v2.1/servers (flavor 42 = c1.nano,
    networks "none", microversion 2.37), then GET /servers/{id} every --poll-ms until ACTIVE.
    Latency = from just before the POST is sent to the arrival of the first GET that shows
    ACTIVE, so the poll interval (plus one GET) bounds the resolution.
  * Anchor: plain runc on the same rootfs (extracted from the same tarball), one bundle per
    container with config.json from `runc spec`, adapted: /init, no terminal, the rootfs
    read-only and shared, with a private tmpfs on /var and /tmp, c1.nano's limits (64 MiB
    memory, 1 CPU of quota), its own --root. Each launch is `runc run --detach` with stdout to
    a file. Two figures: until `runc run --detach` returned (the container is in state
    running) and until /init printed its first line (polled every millisecond).
  * Cases: one launch at a time, and --concurrency launches in flight (each worker thread
    launches and waits for its own). --count launches per case and system; everything launched
    stays up until the end of the case, then it is deleted (Concord: DELETE and wait until the
    agent has removed every container; runc: delete -f) before the next case.
  * --rounds rounds; in each round the cases run Concord and runc interleaved (the order
    alternates from round to round). Per round: p50 / p99 / min / max; the table gives the
    median over rounds with the min-max of the per-round figures.
Exit: 0 when everything ran (whatever the figures), 1 when something failed to run.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
from common import (BenchError, Concord, Http, fmt, leftovers, loadavg, log, mmm,  # noqa: E402
                    now_utc, reap, run, summary)

GOAL_P50_MS = 300.0
V = "2.37"


# ---------------------------------------------------------------------------------------------
# Concord side


class ConcordLauncher:
    def __init__(self, args, work, fixtures):
        self.args = args
        # The in-process agent offers what it detects; on 2 cores that is 32 vCPUs at the
        # default 16x allocation ratio, fewer than the servers one case keeps up. The agent is
        # told to offer more (a capacity figure only; nothing is reserved), and only the
        # container driver: the VM driver's KVM probe would only delay the start.
        extra = ["--agent.vcpus=%d" % max(64, args.count), "--agent.drivers=container"]
        extra += args.concord_arg
        self.c = Concord(work, extra)
        self.fixtures = fixtures
        self.image = None
        self.flavor = None

    def start(self):
        t0 = time.monotonic()
        self.c.start()
        log("concord all-in-one up at %s (pid %d) in %.0f ms"
            % (self.c.url, self.c.pid, (time.monotonic() - t0) * 1000))
        self.c.unlimited_quota()
        self.image = self.c.upload_image("busybox-bench",
                                         os.path.join(self.fixtures, "busybox-rootfs.tar"))
        self.flavor = self.pick_flavor()
        self.wait_host()
        log("image %s, flavor %s" % (self.image, self.flavor))

    def pick_flavor(self):
        api = self.c.http(V)
        out, _ = api.expect(200, "GET", "/compute/v2.1/flavors/detail")
        api.close()
        flavors = out["flavors"]
        if any(f["id"] == "42" for f in flavors):
            return "42"
        if not flavors:
            raise BenchError("no flavors")
        smallest = min(flavors, key=lambda f: (f["ram"], f["vcpus"], f["disk"]))
        log("no flavor 42: using the smallest, %s (%s)" % (smallest["id"], smallest["name"]))
        return smallest["id"]

    def wait_host(self, timeout=180):
        """The in-process agent must have registered before the first create, or the first
        launch would measure agent start-up (or fail with No valid host)."""
        api = self.c.http("2.79")
        deadline = time.monotonic() + timeout
        while True:
            st, _, out = api.request("GET", "/compute/v2.1/os-hypervisors/detail")
            if st == 200 and any(h.get("state") == "up" for h in out.get("hypervisors", [])):
                api.close()
                return
            if time.monotonic() > deadline:
                raise BenchError("no hypervisor up after %d s (last answer %d: %s)\n%s"
                                 % (timeout, st, str(out)[:300], self.c.log_tail()))
            time.sleep(0.2)

    def launch_one(self, api, name):
        """Returns (latency_ms, server_id); raises on ERROR or timeout."""
        body = {"server": {"name": name, "imageRef": self.image, "flavorRef": self.flavor,
                           "networks": "none"}}
        poll = self.args.poll_ms / 1000.0
        t0 = time.monotonic()
        st, _, out = api.request("POST", "/compute/v2.1/servers", body)
        if st != 202:
            raise BenchError("POST /servers answered %d: %s" % (st, str(out)[:400]))
        sid = out["server"]["id"]
        deadline = t0 + self.args.launch_timeout
        next_poll = t0
        while True:
            # A fixed grid from the POST, so a slow GET does not stretch the interval.
            next_poll += poll
            delay = next_poll - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            st, _, out = api.request("GET", "/compute/v2.1/servers/" + sid)
            t1 = time.monotonic()
            if st == 200:
                status = out["server"]["status"]
                if status == "ACTIVE":
                    return (t1 - t0) * 1000.0, sid
                if status == "ERROR":
                    raise BenchError("server %s went to ERROR: %s"
                                     % (sid, json.dumps(out["server"].get("fault"))))
            elif st != 404:  # a 404 right after 202 would be a bug, but keep polling briefly
                raise BenchError("GET /servers/%s answered %d: %s" % (sid, st, str(out)[:300]))
            if t1 > deadline:
                raise BenchError("server %s not ACTIVE after %d s (status %s)"
                                 % (sid, self.args.launch_timeout,
                                    out["server"]["status"] if st == 200 else st))

    def delete_all(self, ids):
        t0 = time.monotonic()
        api = self.c.http(V)
        for sid in ids:
            st, _, out = api.request("DELETE", "/compute/v2.1/servers/" + sid)
            if st not in (204, 404):
                raise BenchError("DELETE /servers/%s answered %d: %s" % (sid, st, str(out)[:300]))
        deadline = time.monotonic() + self.args.delete_timeout
        pending = list(ids)
        while pending:
            pending = [s for s in pending
                       if api.request("GET", "/compute/v2.1/servers/" + s)[0] != 404]
            if pending and time.monotonic() > deadline:
                raise BenchError("%d servers still visible %d s after DELETE"
                                 % (len(pending), self.args.delete_timeout))
            if pending:
                time.sleep(0.2)
        # The API hides a server at once; the agent tears it down after. Wait for that too, so
        # the next case does not pay for this one's teardown.
        while True:
            left = self.containers()
            if left == 0:
                log("%d servers deleted; their containers gone %.1f s after the first DELETE"
                    % (len(ids), time.monotonic() - t0))
                break
            if time.monotonic() > deadline:
                raise BenchError("containers still present %d s after DELETE (%s)"
                                 % (self.args.delete_timeout, left))
            time.sleep(0.2)
        api.close()

    def containers(self):
        """Containers under the agent's runc roots; None when a listing failed (runc list
        fails while containers are being deleted under it: that is not "none left")."""
        roots = [d for d in glob.glob(os.path.join(self.c.data_dir, "**", "runc"),
                                      recursive=True) if os.path.isdir(d)]
        n = 0
        for root in roots:
            r = run(["runc", "--root", root, "list", "-q"], timeout=60, check=False)
            if r.returncode != 0:
                return None
            n += len(r.stdout.split())
        return n

    def run_case(self, label, concurrency, round_no):
        ids, lat, errors = [], [], []
        lock = threading.Lock()
        counter = iter(range(self.args.count))

        def worker():
            api = self.c.http(V)
            try:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None or errors:
                        return
                    try:
                        ms, sid = self.launch_one(api, "bench-r%d-%s-%03d" % (round_no, label, i))
                    except Exception as e:  # recorded, ends the case
                        with lock:
                            errors.append(e)
                        return
                    with lock:
                        lat.append(ms)
                        ids.append(sid)
            finally:
                api.close()

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        if errors:
            # Collect what the failed worker created too: list every server of this round.
            self.delete_all(ids + self.list_ids())
            raise errors[0]
        self.delete_all(ids)
        return lat, wall

    def list_ids(self):
        api = self.c.http(V)
        st, _, out = api.request("GET", "/compute/v2.1/servers?limit=1000")
        api.close()
        return [s["id"] for s in out.get("servers", [])] if st == 200 else []

    def stop(self):
        self.c.stop()

    def cleanup(self):
        self.c.cleanup()


# ---------------------------------------------------------------------------------------------
# Anchor: plain runc


class RuncAnchor:
    def __init__(self, args, work, fixtures):
        self.args = args
        self.base = os.path.join(work, "anchor")
        # Named "runc" so that the generic reaper (tests/integration/workloads.py) finds it.
        self.root = os.path.join(self.base, "runc")
        self.rootfs = os.path.join(self.base, "rootfs")
        self.tarball = os.path.join(fixtures, "busybox-rootfs.tar")
        self.template = None

    def prepare(self):
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.rootfs, exist_ok=True)
        with tarfile.open(self.tarball) as t:
            t.extractall(self.rootfs, numeric_owner=True)
        spec_dir = os.path.join(self.base, "spec")
        os.makedirs(spec_dir, exist_ok=True)
        run(["runc", "spec", "--bundle", spec_dir])
        with open(os.path.join(spec_dir, "config.json")) as f:
            spec = json.load(f)
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/init"]
        # One rootfs shared read-only by every container, with a private tmpfs on /var and
        # /tmp: /init writes its boot counter under /var, and containers writing one shared
        # file race (a torn read ends /init with a shell arithmetic error).
        spec["root"] = {"path": self.rootfs, "readonly": True}
        for dest in ("/var", "/tmp"):
            spec["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                                   "options": ["nosuid", "nodev", "mode=1777", "size=16m"]})
        res = spec["linux"].setdefault("resources", {})
        res["memory"] = {"limit": 64 * 1024 * 1024}
        res["cpu"] = {"quota": 100000, "period": 100000}
        self.template = spec
        log("anchor bundle: rootfs from %s, config.json from `runc spec` (%s)"
            % (self.tarball, run(["runc", "--version"]).stdout.decode().splitlines()[0]))

    def launch_one(self, name):
        """Returns (ms until `runc run -d` returned, ms until the first line of output)."""
        bundle = os.path.join(self.base, "bundles", name)
        os.makedirs(bundle, exist_ok=True)
        spec = dict(self.template)
        spec["hostname"] = name
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        out_path = os.path.join(bundle, "console.log")
        t0 = time.monotonic()
        with open(out_path, "wb") as out:
            p = subprocess.run(["runc", "--root", self.root, "run", "--detach", "--bundle",
                                bundle, name], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=self.args.launch_timeout)
        t_ret = time.monotonic()
        if p.returncode != 0:
            with open(out_path, "rb") as f:
                raise BenchError("runc run %s failed (%d): %s"
                                 % (name, p.returncode, f.read()[-500:].decode(errors="replace")))
        deadline = t0 + self.args.launch_timeout
        with open(out_path, "rb") as f:
            data = b""
            while b"concord-guest:" not in data or not data.endswith(b"\n"):
                chunk = f.read()
                if chunk:
                    data += chunk
                    continue
                if time.monotonic() > deadline:
                    raise BenchError("runc container %s printed nothing in %d s (%r)"
                                     % (name, self.args.launch_timeout, data[-200:]))
                time.sleep(0.001)
        t_line = time.monotonic()
        return (t_ret - t0) * 1000.0, (t_line - t0) * 1000.0

    def delete_all(self, names):
        for n in names:
            run(["runc", "--root", self.root, "delete", "-f", n], timeout=60, check=False)
        shutil.rmtree(os.path.join(self.base, "bundles"), ignore_errors=True)
        left = run(["runc", "--root", self.root, "list", "-q"], check=False).stdout.split()
        if left:
            raise BenchError("runc containers left after delete -f: %s" % left[:5])

    def run_case(self, label, concurrency, round_no):
        names, ret, line, errors = [], [], [], []
        lock = threading.Lock()
        counter = iter(range(self.args.count))

        def worker():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None or errors:
                    return
                name = "cbench-r%d-%s-%03d" % (round_no, label, i)
                with lock:
                    names.append(name)
                try:
                    a, b = self.launch_one(name)
                except Exception as e:
                    with lock:
                        errors.append(e)
                    return
                with lock:
                    ret.append(a)
                    line.append(b)

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        self.delete_all(names)
        if errors:
            raise errors[0]
        return ret, line, wall

    def cleanup(self):
        reap(self.base)


# ---------------------------------------------------------------------------------------------
# Report


def render(args, cases, results, meta):
    """results[case_label][system] = list of per-round dicts (summary + wall)."""
    out = []
    w = out.append
    w("### Create-to-running latency, ms (%d launches per case and system, %d round(s); "
      "median of the per-round figures, min-max in brackets)" % (args.count, args.rounds))
    w("")
    w("| case | system | p50 | p99 | min | max | launches/s | failed |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, conc in cases:
        for system in ("concord", "runc_return", "runc_line"):
            rounds = results[label].get(system, [])
            name = {"concord": "Concord (POST to ACTIVE, polled every %g ms)" % args.poll_ms,
                    "runc_return": "runc run -d (until it returned: state running)",
                    "runc_line": "runc run -d (until /init printed its first line)"}[system]
            if not rounds:
                w("| %s | %s | n/a | n/a | n/a | n/a | n/a | did not run |" % (label, name))
                continue

            def col(key):
                lo, med, hi = mmm([r[key] for r in rounds])
                return "**%s** (%s-%s)" % (fmt(med), fmt(lo), fmt(hi)) if key == "p50" \
                    else "%s (%s-%s)" % (fmt(med), fmt(lo), fmt(hi))
            rate = mmm([r["n"] / r["wall"] for r in rounds])
            w("| %s | %s | %s | %s | %s | %s | %s | %d |"
              % (label, name, col("p50"), col("p99"), col("min"), col("max"), fmt(rate[1]),
                 sum(r.get("failed", 0) for r in rounds)))
    w("")
    w("### Concord's overhead over plain runc (ratio of the medians)")
    w("")
    w("| case | p50 Concord / runc returned | p50 Concord / runc first line | "
      "p99 Concord / runc returned | p99 Concord / runc first line | Concord p50 minus runc "
      "first-line p50, ms |")
    w("|---|---:|---:|---:|---:|---:|")
    goals = []
    for label, conc in cases:
        r = results[label]
        if not r.get("concord") or not r.get("runc_return"):
            w("| %s | n/a | n/a | n/a | n/a | n/a |" % label)
            continue
        med = {s: {k: mmm([x[k] for x in r[s]])[1] for k in ("p50", "p99")} for s in r}
        w("| %s | %sx | %sx | %sx | %sx | %s |"
          % (label, fmt(med["concord"]["p50"] / med["runc_return"]["p50"]),
             fmt(med["concord"]["p50"] / med["runc_line"]["p50"]),
             fmt(med["concord"]["p99"] / med["runc_return"]["p99"]),
             fmt(med["concord"]["p99"] / med["runc_line"]["p99"]),
             fmt(med["concord"]["p50"] - med["runc_line"]["p50"])))
        goals.append((label, med["concord"]["p50"]))
    w("")
    w("### Goal (from the issue)")
    w("")
    w("| goal | case | Concord p50 ms (median of rounds) | met |")
    w("|---|---|---:|---|")
    for label, p50 in goals:
        w("| create-to-ACTIVE p50 < %d ms for a container | %s | %s | %s |"
          % (GOAL_P50_MS, label, fmt(p50), "yes" if p50 < GOAL_P50_MS else "no"))
    w("")
    w("### Run")
    w("")
    for k, v in meta.items():
        w("- %s: %s" % (k, v))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--fixtures", required=True, help="folder holding busybox-rootfs.tar")
    ap.add_argument("--count", type=int, default=200, help="launches per case, system, round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--poll-ms", type=float, default=5.0)
    ap.add_argument("--launch-timeout", type=int, default=120)
    ap.add_argument("--delete-timeout", type=int, default=300)
    ap.add_argument("--only", choices=("both", "concord", "runc"), default="both")
    ap.add_argument("--concord-arg", action="append", default=[],
                    help="extra argument for concord all-in-one (repeatable)")
    ap.add_argument("--results", default=None, help="Markdown output file")
    args = ap.parse_args()
    # The wrapper's trap sends SIGTERM: turn it into SystemExit so the finally blocks below
    # stop the servers and remove their temp dirs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cases = [("sequential", 1), ("concurrency %d" % args.concurrency, args.concurrency)]
    results = {label: {} for label, _ in cases}
    meta = {"date": now_utc(), "command": os.environ.get("BENCH_COMMAND", " ".join(sys.argv)),
            "load average at start": loadavg(), "cores": os.cpu_count()}
    systems = []
    concord = anchor = None
    rc = 0
    try:
        if args.only in ("both", "runc"):
            anchor = RuncAnchor(args, args.workdir, args.fixtures)
            anchor.prepare()
            systems.append("runc")
        if args.only in ("both", "concord"):
            concord = ConcordLauncher(args, args.workdir, args.fixtures)
            concord.start()
            meta["concord binary"] = os.environ.get("CONCORD_BIN", "")
            systems.append("concord")
        # A short warm-up per system (image cache, page cache), not measured.
        if concord:
            log("warm-up: 3 Concord launches")
            api = concord.c.http(V)
            ids = [concord.launch_one(api, "bench-warmup-%d" % i)[1] for i in range(3)]
            api.close()
            concord.delete_all(ids)
        if anchor:
            log("warm-up: 3 runc launches")
            names = ["cbench-warmup-%d" % i for i in range(3)]
            for n in names:
                anchor.launch_one(n)
            anchor.delete_all(names)
        for rnd in range(1, args.rounds + 1):
            order = systems if rnd % 2 == 1 else list(reversed(systems))
            for label, conc in cases:
                for system in order:
                    la = loadavg()
                    if system == "concord":
                        lat, wall = concord.run_case(label.replace(" ", ""), conc, rnd)
                        s = summary(lat)
                        s["wall"] = wall
                        results[label].setdefault("concord", []).append(s)
                        log("round %d %-14s Concord: p50 %s p99 %s min %s max %s ms "
                            "(%.1f launches/s, load %s)" % (rnd, label, fmt(s["p50"]),
                                                            fmt(s["p99"]), fmt(s["min"]),
                                                            fmt(s["max"]), s["n"] / wall, la))
                    else:
                        ret, line, wall = anchor.run_case(label.replace(" ", ""), conc, rnd)
                        for key, vals in (("runc_return", ret), ("runc_line", line)):
                            s = summary(vals)
                            s["wall"] = wall
                            results[label].setdefault(key, []).append(s)
                        s1, s2 = summary(ret), summary(line)
                        log("round %d %-14s runc: returned p50 %s p99 %s; first line p50 %s "
                            "p99 %s ms (%.1f launches/s, load %s)"
                            % (rnd, label, fmt(s1["p50"]), fmt(s1["p99"]), fmt(s2["p50"]),
                               fmt(s2["p99"]), len(ret) / wall, la))
        meta["load average at end"] = loadavg()
        meta["poll interval"] = ("Concord is polled every %g ms: a launch's figure is late by up "
                                 "to one interval plus one GET" % args.poll_ms)
        meta["anchor"] = ("runc %s, one extracted rootfs shared read-only by every container "
                          "(no copy or overlay per container; a private tmpfs on /var and /tmp), "
                          "64 MiB / 1 CPU limits"
                          % run(["runc", "--version"]).stdout.decode().split()[2])
        text = render(args, cases, results, meta)
        print(text)
        if args.results:
            with open(args.results, "w") as f:
                f.write("# Compute launch benchmark, %s\n\n%s" % (meta["date"], text))
            log("written to %s" % args.results)
    except BenchError as e:
        log("FAILED: %s" % e)
        if concord is not None:
            log("concord log tail:\n%s" % concord.c.log_tail())
        rc = 1
    finally:
        if concord is not None:
            try:
                concord.stop()
            except Exception as e:
                log("warning: stopping concord: %s" % e)
            left = leftovers(concord.c.data_dir)
            if left:
                log("containers left after the server stopped (reaped now): %s" % left[:5])
            concord.cleanup()
        if anchor is not None:
            anchor.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main())
