#!/usr/bin/python3
"""Compute API at scale: GET /compute/v2.1/servers/detail with 10,000 servers, on SIMULATED hosts.

Started by api_scale.sh (packages, build, outer clean-up trap); can be run directly with
/usr/bin/python3 once the binary exists.

Method:
  1. `concord all-in-one --agent.enabled=false` (no in-process agent) on port 0 with a temp
     data dir, plus sim_agent.py: --hosts SIMULATED hosts that speak the real agent protocol
     (register with a large capacity, long-poll assignments, report every assigned instance
     present and running at its spec generation). No workload runs: this measures the API and
     the store, not the drivers.
  2. A tiny image (a tar with one file; container_format docker, disk_format raw) is uploaded;
     the admin project's quota is lifted (instances, cores, ram = -1).
  3. Resident memory of the server (VmRSS, pid from server.json) once idle: "idle".
  4. --servers servers are created with POST /servers (min_count = max_count = --batch per
     request, --create-workers requests in flight), then the harness waits until every one
     is ACTIVE. Memory again once idle: "10,000 servers".
  5. wrk (--wrk-threads threads, --connections connections, --duration s, --repeats runs per
     case, interleaved case by case) with the same headers for every case:
       GET /compute/v2.1/servers/detail?limit=1000                      first page
       GET /compute/v2.1/servers/detail?limit=1000&marker=<5,000th id>  a page in the middle
       GET /compute/v2.1/servers/detail?limit=100                       reference: small page
       GET /identity/v3/projects                                        reference: identity
     Before each run the harness waits until the server burns no CPU. Memory again once idle
     after the load: "after load".
There is no external anchor here (no Nova to run on this machine): the references are the same
server's small page and its identity project list, measured in the same run.
Exit: 0 when everything ran (whatever the figures), 1 when something failed to run.
"""
import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
from common import (CLK_TCK, BenchError, Concord, CpuMeter, fmt, loadavg, log, mmm,  # noqa: E402
                    now_utc, proc_cpu_ticks, vmrss_kb)

GOAL_P99_MS = 20.0
GOAL_RSS_MB = 100.0


def tiny_image():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"concord bench: simulated hosts never unpack this image\n"
        info = tarfile.TarInfo("README")
        info.size = len(data)
        info.mtime = 0
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wait_idle(pid, max_cores=0.3, quiet_s=2.0, timeout_s=30.0):
    """Until the server has used less than max_cores of CPU for quiet_s. Not zero: the
    simulated hosts' heartbeats (every instance every 2 s, as the real agent) cost CPU."""
    deadline = time.monotonic() + timeout_s
    last, t_last = proc_cpu_ticks(pid) or 0, time.monotonic()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now, t_now = proc_cpu_ticks(pid) or 0, time.monotonic()
        cores = (now - last) / CLK_TCK / (t_now - t_last)
        if cores > max_cores:
            since = t_now
        last, t_last = now, t_now
        if t_now - since >= quiet_s:
            return cores
    log("warning: the server still used more than %.2f cores after %.0f s of waiting"
        % (max_cores, timeout_s))
    return None


def idle_cores(pid, seconds=5.0):
    """The server's CPU use with no client load (the simulated heartbeats only)."""
    c0, t0 = proc_cpu_ticks(pid) or 0, time.monotonic()
    time.sleep(seconds)
    return ((proc_cpu_ticks(pid) or 0) - c0) / CLK_TCK / (time.monotonic() - t0)


class Scale:
    def __init__(self, args):
        self.args = args
        self.work = args.workdir
        self.c = Concord(self.work, ["--agent.enabled=false"]
                         + args.concord_arg)
        self.sim = None
        self.status_file = os.path.join(self.work, "sim-status.json")
        self.rss = {}
        self.meta = {}

    # ---- set-up ---------------------------------------------------------------------------

    def start(self):
        self.c.start()
        log("concord all-in-one --agent.enabled=false at %s (pid %d)" % (self.c.url, self.c.pid))
        self.image = self.c.upload_image("bench-tiny", tiny_image())
        cmd = ["/usr/bin/python3", os.path.join(HERE, "sim_agent.py"), "--url", self.c.url,
               "--data-dir", self.c.data_dir, "--concord-bin", os.environ["CONCORD_BIN"],
               "--hosts", str(self.args.hosts), "--status-file", self.status_file]
        if self.args.full_heartbeats:
            cmd.append("--full-heartbeats")
        self.sim_log = open(os.path.join(self.work, "sim-agent.log"), "ab")
        self.sim = subprocess.Popen(cmd, stdout=self.sim_log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(self.work, "pgids"), "a") as f:
            f.write("%d\n" % self.sim.pid)
        self.wait_hosts()
        self.c.unlimited_quota()
        self.flavor = self.pick_flavor()

    def sim_status(self):
        try:
            with open(self.status_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def sim_log_tail(self):
        try:
            with open(os.path.join(self.work, "sim-agent.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def wait_hosts(self, timeout=60):
        api = self.c.http("2.79")
        deadline = time.monotonic() + timeout
        while True:
            if self.sim.poll() is not None:
                raise BenchError("the simulated agent exited (%d):\n%s"
                                 % (self.sim.returncode, self.sim_log_tail()))
            st, _, out = api.request("GET", "/compute/v2.1/os-hypervisors/detail")
            up = [h for h in out.get("hypervisors", []) if h.get("state") == "up"] \
                if st == 200 else []
            if len(up) >= self.args.hosts:
                api.close()
                log("%d simulated hosts registered and up" % len(up))
                return
            if time.monotonic() > deadline:
                raise BenchError("only %d of %d simulated hosts up after %d s (hypervisors "
                                 "answered %d); simulated agent: %s"
                                 % (len(up), self.args.hosts, timeout, st,
                                    json.dumps(self.sim_status())[:800]))
            time.sleep(0.3)

    def pick_flavor(self):
        api = self.c.http("2.37")
        out, _ = api.expect(200, "GET", "/compute/v2.1/flavors/detail")
        api.close()
        ids = [f["id"] for f in out["flavors"]]
        if "42" in ids:
            return "42"
        return min(out["flavors"], key=lambda f: (f["ram"], f["vcpus"], f["disk"]))["id"]

    def read_rss(self, label):
        wait_idle(self.c.pid, self.args.idle_cores)
        kb = vmrss_kb(self.c.pid)
        self.rss[label] = kb / 1024.0 if kb else float("nan")
        log("server VmRSS %s: %.1f MB" % (label, self.rss[label]))

    # ---- creating the servers ---------------------------------------------------------------

    def create_servers(self):
        n, batch = self.args.servers, self.args.batch
        requests = [(i, min(batch, n - i)) for i in range(0, n, batch)]
        lock = threading.Lock()
        it = iter(requests)
        errors = []
        mode = {"multi": batch > 1}

        def body(start, count, single_index=None):
            s = {"name": "scale-%05d" % (start if single_index is None else single_index),
                 "imageRef": self.image, "flavorRef": self.flavor, "networks": "none"}
            if single_index is None and count > 1:
                s["min_count"] = count
                s["max_count"] = count
            return {"server": s}

        def worker():
            api = self.c.http("2.37")
            try:
                while not errors:
                    with lock:
                        item = next(it, None)
                    if item is None:
                        return
                    start, count = item
                    if mode["multi"]:
                        st, _, out = api.request("POST", "/compute/v2.1/servers",
                                                 body(start, count))
                        if st == 202:
                            continue
                        if st == 400 and start == 0:
                            log("multiple create refused (%s): falling back to single "
                                "creates" % str(out)[:200])
                            mode["multi"] = False
                        else:
                            raise BenchError("POST /servers (%d servers) answered %d: %s"
                                             % (count, st, str(out)[:400]))
                    for k in range(start, start + count):
                        st, _, out = api.request("POST", "/compute/v2.1/servers",
                                                 body(k, 1, k))
                        if st != 202:
                            raise BenchError("POST /servers answered %d: %s"
                                             % (st, str(out)[:400]))
            except Exception as e:
                errors.append(e)
            finally:
                api.close()

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(self.args.create_workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        accepted_s = time.monotonic() - t0
        if errors:
            raise errors[0]
        self.meta["multiple create"] = ("min_count = max_count = %d per request" % batch
                                        if mode["multi"] else "refused; single creates")
        log("%d creates accepted in %.1f s (%.0f servers/s)" % (n, accepted_s, n / accepted_s))
        counts = self.wait_all_active(t0)
        all_s = time.monotonic() - t0
        self.meta["create"] = ("%d servers accepted in %.1f s (%.0f/s), all ACTIVE %.1f s after "
                               "the first POST (%.0f/s), %d create workers"
                               % (n, accepted_s, n / accepted_s, all_s, n / all_s,
                                  self.args.create_workers))
        return counts

    def count_statuses(self, api):
        """Pages through /servers/detail (limit 1000); returns ({status: n}, [ids in order])."""
        ids, counts = [], {}
        marker = None
        while True:
            path = "/compute/v2.1/servers/detail?limit=1000"
            if marker:
                path += "&marker=" + marker
            out, _ = api.expect(200, "GET", path)
            page = out.get("servers", [])
            for s in page:
                counts[s["status"]] = counts.get(s["status"], 0) + 1
                ids.append(s["id"])
            if len(page) < 1000 or len(ids) > self.args.servers * 2:
                break
            marker = page[-1]["id"]
        return counts, ids

    def wait_all_active(self, t0):
        api = self.c.http("2.79", timeout=120)
        filter_works = None
        deadline = time.monotonic() + self.args.active_timeout
        last_log = 0.0
        while True:
            if self.sim.poll() is not None:
                raise BenchError("the simulated agent exited (%d):\n%s"
                                 % (self.sim.returncode, self.sim_log_tail()))
            building = None
            if filter_works is not False:
                out, _ = api.expect(200, "GET", "/compute/v2.1/servers/detail?status=BUILD"
                                    "&limit=1000")
                page = out.get("servers", [])
                if any(s["status"] != "BUILD" for s in page):
                    filter_works = False
                    log("the status filter is not applied: counting by paging")
                else:
                    filter_works = True
                    building = len(page)
            if building == 0 or filter_works is False:
                counts, ids = self.count_statuses(api)
                total = sum(counts.values())
                if counts.get("ERROR"):
                    raise BenchError("%d servers in ERROR (counts %s)" % (counts["ERROR"], counts))
                if total >= self.args.servers and counts.get("ACTIVE", 0) == total:
                    self.ids = ids
                    api.close()
                    log("all %d servers ACTIVE after %.1f s" % (total, time.monotonic() - t0))
                    if total != self.args.servers:
                        raise BenchError("%d servers listed, %d created" % (total,
                                                                           self.args.servers))
                    return counts
                building = self.args.servers - counts.get("ACTIVE", 0)
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                sim = self.sim_status()
                log("waiting: %s%d not ACTIVE yet; simulated hosts report %d running, %d "
                    "errors" % ("at least " if building == 1000 else "", building,
                                sum(h.get("running", 0) for h in sim.values()),
                                sum(h.get("errors", 0) for h in sim.values())))
            if time.monotonic() > deadline:
                raise BenchError("servers not all ACTIVE after %d s; simulated agent: %s"
                                 % (self.args.active_timeout, json.dumps(self.sim_status())[:800]))
            time.sleep(2.0)

    # ---- load -----------------------------------------------------------------------------------

    def cases(self):
        mid = self.ids[len(self.ids) // 2 - 1]
        mv = self.args.microversion
        return [
            ("detail, limit=1000, first page", "/compute/v2.1/servers/detail?limit=1000", mv),
            ("detail, limit=1000, page in the middle (marker = server %d)" % (len(self.ids) // 2),
             "/compute/v2.1/servers/detail?limit=1000&marker=" + mid, mv),
            ("reference: detail, limit=100, first page",
             "/compute/v2.1/servers/detail?limit=100", mv),
            ("reference: identity GET /v3/projects", "/identity/v3/projects", ""),
        ]

    def probe(self, path, mv):
        """One request by hand: status, body size and item count, shown with the results."""
        api = self.c.http(mv or None)
        st, rh, body = api.request("GET", path, raw=True)
        api.close()
        if st != 200:
            raise BenchError("GET %s answered %d: %s" % (path, st, body[:300]))
        doc = json.loads(body)
        items = doc.get("servers", doc.get("projects", []))
        return {"bytes": len(body), "items": len(items)}

    def run_wrk(self, path, mv):
        a = self.args
        env = os.environ.copy()
        env.update({"BENCH_TOKEN": self.c.token, "BENCH_MICROVERSION": mv})
        cmd = ["wrk", "-t%d" % min(a.wrk_threads, a.connections), "-c%d" % a.connections,
               "-d%ds" % a.duration, "--timeout=10s", "--latency", "-s",
               os.path.join(HERE, "get.lua"), self.c.url + path]
        wait_idle(self.c.pid, a.idle_cores)
        with CpuMeter(self.c.pid) as m:
            r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=a.duration + 60)
        out = r.stdout.decode(errors="replace")
        line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
        if r.returncode != 0 or line is None:
            raise BenchError("wrk failed (%d) on %s:\n%s\n%s"
                             % (r.returncode, path, out, r.stderr.decode(errors="replace")))
        res = json.loads(line[len("BENCH_RESULT "):])
        e = res["errors"]
        dur = res["duration_us"] / 1e6
        okn = res["requests"] - e["status"]
        return {"rps": okn / dur if dur else 0.0, "p50": res["latency_us"]["p50"] / 1000.0,
                "p99": res["latency_us"]["p99"] / 1000.0, "requests": res["requests"],
                "failed": e["status"] + e["timeout"] + e["connect"],
                "cpu_ms_per_req": m.server_s * 1000.0 / res["requests"] if res["requests"]
                else float("nan"),
                "others": m.others_cores, "server_cores": m.server_cores, "load": loadavg()}

    def measure(self):
        cases = self.cases()
        self.probes = {label: self.probe(path, mv) for label, path, mv in cases}
        for label, p in self.probes.items():
            log("%s: %d items, %s bytes" % (label, p["items"], fmt(p["bytes"])))
        log("warm-up: 2 s per case")
        saved = self.args.duration
        self.args.duration = 2
        for _, path, mv in cases:
            self.run_wrk(path, mv)
        self.args.duration = saved
        self.results = {label: [] for label, _, _ in cases}
        for rnd in range(1, self.args.repeats + 1):
            for label, path, mv in cases:
                r = self.run_wrk(path, mv)
                self.results[label].append(r)
                log("run %d %s: %s req/s, p50 %s ms, p99 %s ms, %d failed, server %.2f cores, "
                    "others %.2f cores" % (rnd, label, fmt(r["rps"]), fmt(r["p50"]),
                                           fmt(r["p99"]), r["failed"], r["server_cores"],
                                           r["others"]))

    # ---- report ---------------------------------------------------------------------------------

    def render(self):
        a = self.args
        out = []
        w = out.append
        w("All %d compute hosts are SIMULATED (bench/compute/sim_agent.py speaks the real agent "
          "protocol; no workload runs): this measures the API and the store, not the drivers. "
          "There is no external anchor (no Nova on this machine); the references are the same "
          "server's limit=100 page and its identity project list, in the same run."
          % a.hosts)
        w("")
        w("### GET with %s servers (wrk: %d connections, %d threads, %d s per run, %d run(s); "
          "min / median / max over runs)" % (fmt(a.servers), a.connections,
                                             min(a.wrk_threads, a.connections), a.duration,
                                             a.repeats))
        w("")
        w("| case | items | body bytes | req/s min | req/s median | req/s max | p50 ms (median) "
          "| p99 ms median (min-max) | server CPU ms/req (median) | failed | others (cores, "
          "median) |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, runs in self.results.items():
            p = self.probes[label]
            rps = mmm([r["rps"] for r in runs])
            p99 = mmm([r["p99"] for r in runs])
            w("| %s | %s | %s | %s | **%s** | %s | %s | %s (%s-%s) | %s | %d | %s |"
              % (label, fmt(p["items"]), fmt(p["bytes"]), fmt(rps[0]), fmt(rps[1]), fmt(rps[2]),
                 fmt(mmm([r["p50"] for r in runs])[1]), fmt(p99[1]), fmt(p99[0]), fmt(p99[2]),
                 fmt(mmm([r["cpu_ms_per_req"] for r in runs])[1]),
                 sum(r["failed"] for r in runs), fmt(mmm([r["others"] for r in runs])[1])))
        w("")
        labels = list(self.results)
        med = {l: {k: mmm([r[k] for r in self.results[l]])[1] for k in ("rps", "p50", "p99")}
               for l in labels}
        first, middle, small, ident = labels
        w("### Relative to the references (ratios of the medians)")
        w("")
        w("| case | p50 / limit=100 p50 | p50 / identity p50 | req/s limit=100 / this |")
        w("|---|---:|---:|---:|")
        for l in (first, middle):
            w("| %s | %sx | %sx | %sx |" % (l, fmt(med[l]["p50"] / med[small]["p50"]),
                                           fmt(med[l]["p50"] / med[ident]["p50"]),
                                           fmt(med[small]["rps"] / med[l]["rps"])))
        w("")
        w("### Server resident memory (VmRSS of the one concord process, read once idle)")
        w("")
        w("| when | VmRSS MB |")
        w("|---|---:|")
        for k, v in self.rss.items():
            w("| %s | %s |" % (k, fmt(v)))
        w("")
        w("### Goals (from the issue)")
        w("")
        w("| goal | measured | met |")
        w("|---|---|---|")
        worst = max(med[first]["p99"], med[middle]["p99"])
        w("| page of 1,000 servers (detail) p99 < %d ms | first page %s ms, middle page %s ms "
          "(median of runs) | %s |" % (GOAL_P99_MS, fmt(med[first]["p99"]),
                                       fmt(med[middle]["p99"]),
                                       "yes" if worst < GOAL_P99_MS else "no"))
        rss = self.rss.get("with {:,} servers, after load".format(a.servers), float("nan"))
        rss_created = self.rss.get("with {:,} servers, before load".format(a.servers), float("nan"))
        top = max(rss, rss_created)
        w("| resident memory < %d MB with %s servers | %s MB before the load, %s MB after | %s |"
          % (GOAL_RSS_MB, fmt(a.servers), fmt(rss_created), fmt(rss),
             "yes" if top < GOAL_RSS_MB else "no"))
        w("")
        w("### Run")
        w("")
        for k, v in self.meta.items():
            w("- %s: %s" % (k, v))
        return "\n".join(out) + "\n"

    def stop(self):
        if self.sim is not None and self.sim.poll() is None:
            self.sim.terminate()
            try:
                self.sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sim.kill()
        self.c.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--servers", type=int, default=10000)
    ap.add_argument("--hosts", type=int, default=10, help="simulated hosts")
    ap.add_argument("--batch", type=int, default=100, help="servers per POST (min/max_count)")
    ap.add_argument("--create-workers", type=int, default=4)
    ap.add_argument("--active-timeout", type=int, default=1800)
    ap.add_argument("--microversion", default="2.79", help="for the compute GETs")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full-heartbeats", action="store_true",
                    help="simulated heartbeats carry every instance (the agent before "
                    "2026-11-29); by default they carry changes only, as the real agent's")
    ap.add_argument("--idle-cores", type=float, default=0.3,
                    help="before each run, wait until the server uses less CPU than this")
    ap.add_argument("--concord-arg", action="append", default=[],
                    help="extra argument for concord all-in-one (repeatable)")
    ap.add_argument("--results", default=None)
    args = ap.parse_args()
    # The wrapper's trap sends SIGTERM: turn it into SystemExit so the finally blocks below
    # stop the servers and remove their temp dirs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not os.environ.get("CONCORD_BIN"):
        ap.error("CONCORD_BIN must be set (api_scale.sh sets it)")

    s = Scale(args)
    s.meta.update({"date": now_utc(),
                   "command": os.environ.get("BENCH_COMMAND", " ".join(sys.argv)),
                   "concord binary": os.environ["CONCORD_BIN"], "cores": os.cpu_count(),
                   "load average at start": loadavg(),
                   "simulated hosts": "%d, long-poll 25 s; heartbeat reports carry %s"
                   % (args.hosts, "every instance (--full-heartbeats)" if args.full_heartbeats
                      else "changes only, every instance each 60 s (as the real agent's)"),
                   "compute microversion": args.microversion})
    rc = 0
    try:
        s.start()
        s.read_rss("idle, before creating (image uploaded, %d hosts registered)" % args.hosts)
        counts = s.create_servers()
        s.meta["servers listed"] = ", ".join("{:,} {}".format(v, k) for k, v in sorted(counts.items()))
        s.read_rss("with {:,} servers, before load".format(args.servers))
        s.meta["server CPU with no client load"] = (
            "%.2f cores with %s servers (the simulated hosts' polls and heartbeats)"
            % (idle_cores(s.c.pid), fmt(args.servers)))
        s.measure()
        s.read_rss("with {:,} servers, after load".format(args.servers))
        sim = s.sim_status()
        s.meta["simulated agent"] = ("%d polls, %d reports, %d errors%s"
                                     % (sum(h["polls"] for h in sim.values()),
                                        sum(h["reports"] for h in sim.values()),
                                        sum(h["errors"] for h in sim.values()),
                                        "".join("; last error: " + h["last_error"]
                                                for h in list(sim.values())[:1]
                                                if h["last_error"])))
        s.meta["load average at end"] = loadavg()
        text = s.render()
        print(text)
        if args.results:
            with open(args.results, "w") as f:
                f.write("# Compute API scale benchmark, %s\n\n%s" % (s.meta["date"], text))
            log("written to %s" % args.results)
    except BenchError as e:
        log("FAILED: %s" % e)
        log("concord log tail:\n%s" % s.c.log_tail())
        rc = 1
    finally:
        s.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
