#!/usr/bin/python3
"""SIMULATED compute hosts for the API scale benchmark: no workload runs anywhere.

Each simulated host speaks the real agent protocol (docs/design/compute.md, "Agent protocol")
with its own per-host credential from `concord agent-credential <host> --data_dir=<dir>`:

  PUT  /agent/v1/hosts/{host}                      register, with a large capacity
  GET  /agent/v1/hosts/{host}/assignments?after=&wait_ms=   long-poll the full desired set
  POST /agent/v1/hosts/{host}/report               say that every assigned instance is present
                                                   and running (or absent when deleted) at its
                                                   spec generation; also the heartbeat

Like the real agent (src/agent), one thread per host long-polls the assignments (25 s wait;
an idle poll comes back "unchanged" without the set; every 60 s it asks for the whole set) and
another reports only what changed since the last acknowledged report: right after a change,
the instances whose desired state changed; every heartbeat interval (the server's answer to the
registration), the same (usually nothing); every instance after registering, when the server
asks (`full_report`) and every 60 s. With --full-heartbeats every heartbeat carries every
instance (how the agent worked before 2026-11-29; kept to compare).
This measures the API and the store, not the drivers.

Status (per host: assigned, reported, polls, reports, errors) is rewritten as JSON to
--status-file every second. Runs until SIGTERM.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time


def set_digest(instances):
    """The agent protocol's assignment-set digest (src/agent/agent.cc): FNV-1a 64 over
    "<id>:<revision>\\n" in id order, as 16 hex digits."""
    h = 0xcbf29ce484222325
    for x in sorted(instances, key=lambda x: x["id"]):
        for c in ("%s:%d\n" % (x["id"], x.get("revision", 0))).encode():
            h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


FULL_INTERVAL_S = 60.0  # full report / full assignment set, as the real agent

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
from common import BenchError, Http, log  # noqa: E402

stop = threading.Event()


def credential(binary, data_dir, host):
    p = subprocess.run([binary, "agent-credential", host, "--data_dir=" + data_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise BenchError("agent-credential %s failed (%d): %s"
                         % (host, p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout.decode().strip()


class SimHost:
    def __init__(self, args, name, cred):
        self.args = args
        self.name = name
        self.http = Http(args.url, headers={"X-Concord-Agent": "%s:%s" % (name, cred)},
                         timeout=120)
        self.stats = {"registered": False, "assigned": 0, "running": 0, "deleted": 0,
                      "reported": 0, "polls": 0, "reports": 0, "errors": 0, "last_error": ""}
        self.report_http = Http(args.url, headers={"X-Concord-Agent": "%s:%s" % (name, cred)},
                                timeout=120)
        self.reported = {}  # id -> (generation, deleted) last reported
        self.heartbeat_s = 2.0
        self.lock = threading.Lock()
        self.instances = []
        self.digest = ""  # of the last assignment set received
        self.changed = threading.Event()

    def register(self):
        body = {"availability_zone": self.args.availability_zone,
                "capacity": {"vcpus": self.args.vcpus, "ram_mb": self.args.ram_mb,
                             "disk_gb": self.args.disk_gb},
                "drivers": ["container", "vm"], "kvm": False, "accel": "simulated",
                "traits": {}, "version": "bench-sim-agent"}
        out, _ = self.report_http.expect(200, "PUT", "/agent/v1/hosts/" + self.name, body)
        if isinstance(out, dict) and out.get("heartbeat_interval_ms"):
            self.heartbeat_s = out["heartbeat_interval_ms"] / 1000.0
        self.stats["registered"] = True

    @staticmethod
    def observed(spec):
        if spec.get("deleted"):
            return {"id": spec["id"], "generation": spec.get("generation", 0), "state": "absent",
                    "power_state": 0, "reboot_seq": spec.get("reboot_seq", 0),
                    "rebuild_seq": spec.get("rebuild_seq", 0), "addresses": []}
        running = spec.get("desired_power", "running") == "running"
        return {"id": spec["id"], "generation": spec.get("generation", 0), "state": "present",
                "power_state": 1 if running else 4, "reboot_seq": spec.get("reboot_seq", 0),
                "rebuild_seq": spec.get("rebuild_seq", 0), "addresses": []}

    def report(self, observed):
        """Returns True when the server asked for a full report."""
        # Chunks keep each report's write transaction bounded.
        chunks = [observed[i:i + self.args.report_chunk]
                  for i in range(0, len(observed), self.args.report_chunk)] or [[]]
        full = False
        for chunk in chunks:
            out, _ = self.report_http.expect((200, 204), "POST",
                                             "/agent/v1/hosts/%s/report" % self.name,
                                             {"instances": chunk})
            self.stats["reports"] += 1
            full = full or (isinstance(out, dict) and bool(out.get("full_report")))
        return full

    def poll_loop(self):
        """Like the real agent's poller: long-poll (--poll-wait-ms) for the full desired set."""
        seq = 0
        next_full = time.monotonic() + FULL_INTERVAL_S
        while not stop.is_set():
            try:
                if not self.stats["registered"]:
                    stop.wait(0.1)
                    continue
                if time.monotonic() >= next_full:
                    next_full = time.monotonic() + FULL_INTERVAL_S
                    seq = 0
                target = "/agent/v1/hosts/%s/assignments?after=%d&wait_ms=%d" % (
                    self.name, seq, self.args.poll_wait_ms)
                if self.digest:
                    target += "&digest=" + self.digest
                out, _ = self.http.expect(200, "GET", target)
                self.stats["polls"] += 1
                seq = out.get("seq", seq)
                # The server holds only so many long-polls; the others are answered at once
                # with retry_after_ms, which the real agent honours too ("unchanged" included).
                retry = out.get("retry_after_ms") or 0
                if retry > 0:
                    self.stats["retry_after"] = self.stats.get("retry_after", 0) + 1
                if out.get("unchanged"):
                    self.stats["unchanged"] = self.stats.get("unchanged", 0) + 1
                    if retry > 0:
                        stop.wait(retry / 1000.0)
                    continue
                instances = out.get("instances", [])
                self.digest = set_digest(instances)
                with self.lock:
                    self.instances = instances
                self.stats["assigned"] = len(instances)
                self.stats["deleted"] = sum(1 for x in instances if x.get("deleted"))
                self.stats["running"] = len(instances) - self.stats["deleted"]
                self.changed.set()
                if retry > 0:
                    stop.wait(retry / 1000.0)
            except Exception as e:
                self.error(e, self.http)

    def error(self, e, http):
        self.stats["errors"] += 1
        self.stats["last_error"] = str(e)[:300]
        http.close()
        if "answered 404" in str(e):  # the server forgot the host: register again
            self.stats["registered"] = False
        stop.wait(0.5)

    def report_loop(self):
        """Like the real agent's reporter: every report carries the instances whose observation
        changed since the last acknowledged one; a full report after registering, when the
        server asks and every 60 s (every heartbeat with --full-heartbeats)."""
        next_heartbeat = 0.0
        next_full = 0.0
        full = True
        while not stop.is_set():
            try:
                if not self.stats["registered"]:
                    self.register()
                    full = True
                self.changed.wait(max(0.0, next_heartbeat - time.monotonic()))
                self.changed.clear()
                with self.lock:
                    instances = list(self.instances)
                now = time.monotonic()
                heartbeat = now >= next_heartbeat
                if heartbeat:
                    next_heartbeat = now + self.heartbeat_s
                    if self.args.full_heartbeats or now >= next_full:
                        full = True
                key = lambda x: (x.get("generation", 0), bool(x.get("deleted")))  # noqa: E731
                todo = [self.observed(x) for x in instances
                        if full or self.reported.get(x["id"]) != key(x)]
                if not todo and not heartbeat:
                    continue
                if full:
                    next_full = now + FULL_INTERVAL_S
                full = self.report(todo)
                for x in instances:
                    self.reported[x["id"]] = key(x)
                self.stats["reported"] += len(todo)
            except Exception as e:  # keep going: the harness watches the error count
                self.error(e, self.report_http)


def main():
    ap = argparse.ArgumentParser(description="simulated compute hosts (no workloads run)")
    ap.add_argument("--url", required=True)
    ap.add_argument("--data-dir", required=True, help="the server's data dir (agent key)")
    ap.add_argument("--concord-bin", required=True)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--prefix", default="sim")
    ap.add_argument("--vcpus", type=int, default=100000)
    ap.add_argument("--ram-mb", type=int, default=100000000)
    ap.add_argument("--disk-gb", type=int, default=1000000)
    ap.add_argument("--availability-zone", default="nova")
    ap.add_argument("--report-chunk", type=int, default=500)
    ap.add_argument("--full-heartbeats", action="store_true",
                    help="every heartbeat carries every instance (the agent before 2026-11-29)")
    ap.add_argument("--poll-wait-ms", type=int, default=25000,
                    help="assignments long-poll wait (the real agent's default)")
    ap.add_argument("--status-file", required=True)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hosts = []
    for i in range(1, args.hosts + 1):
        name = "%s%03d" % (args.prefix, i)
        hosts.append(SimHost(args, name, credential(args.concord_bin, args.data_dir, name)))
    threads = [threading.Thread(target=f, daemon=True) for h in hosts
               for f in (h.report_loop, h.poll_loop)]
    for t in threads:
        t.start()
    log("simulated agent: %d hosts (%s..%s), no workloads run" % (len(hosts), hosts[0].name,
                                                                   hosts[-1].name))
    while not stop.is_set():
        tmp = args.status_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({h.name: h.stats for h in hosts}, f)
        os.replace(tmp, args.status_file)
        stop.wait(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
