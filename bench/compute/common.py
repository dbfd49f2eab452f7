"""Shared by the compute benchmarks (launch.py, api_scale.py, sim_agent.py).

Standard library only: runs on Debian's /usr/bin/python3. Starting and stopping Concord reuses
tests/integration/concord_launcher.py (port 0, temp data dir, server.json, openrc), and the
safety net for leftover workloads reuses tests/integration/workloads.py (reap).
"""
import datetime
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import concord_launcher  # noqa: E402
import workloads  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
ADMIN_PASSWORD = "bench-admin-secret"


class BenchError(Exception):
    pass


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_busy_ticks():
    with open("/proc/stat") as f:
        parts = f.readline().split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return user + nice + system + irq + softirq + steal


def proc_cpu_ticks(pid):
    """utime + stime of one process (all its threads), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return None


def vmrss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(k, len(sorted_values)) - 1]


def summary(values):
    s = sorted(values)
    return {"n": len(s), "p50": percentile(s, 50), "p99": percentile(s, 99),
            "min": s[0] if s else float("nan"), "max": s[-1] if s else float("nan")}


def mmm(values):
    """min / median / max of per-round figures."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return (float("nan"),) * 3
    return min(v), statistics.median(v), max(v)


def fmt(x, digits=3):
    """Numbers as the identity benchmark prints them: 3 significant digits, thousands split."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 100:
        return "{:,.0f}".format(x)
    return "{:.{}g}".format(x, digits) if abs(x) >= 1 else "{:.{}f}".format(x, digits - 1)


class Http:
    """One keep-alive connection (one per thread), reopened once when the server dropped it."""

    def __init__(self, base_url, token=None, headers=None, timeout=60.0):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname, u.port
        self.token = token
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, raw=False):
        """Returns (status, headers dict lower-case, parsed JSON or bytes when raw / not JSON)."""
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["X-Auth-Token"] = self.token
        hdrs.update(self.headers)
        hdrs.update(headers or {})
        data = None
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            else:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                payload = r.read()
                rh = {k.lower(): v for k, v in r.getheaders()}
                if rh.get("connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady) as e:
                self.close()
                if attempt == 1:
                    raise BenchError("%s %s: connection failed twice: %s" % (method, path, e))
        if raw:
            return r.status, rh, payload
        if payload and "json" in rh.get("content-type", ""):
            try:
                return r.status, rh, json.loads(payload)
            except ValueError:
                pass
        return r.status, rh, payload

    def expect(self, status, method, path, body=None, headers=None):
        st, rh, out = self.request(method, path, body, headers)
        ok = status if isinstance(status, (tuple, list)) else (status,)
        if st not in ok:
            text = out if isinstance(out, (bytes, bytearray)) else json.dumps(out)
            if isinstance(text, (bytes, bytearray)):
                text = text[:500].decode(errors="replace")
            raise BenchError("%s %s answered %d (expected %s): %s"
                             % (method, path, st, status, text[:500]))
        return out, rh


class Concord:
    """`concord all-in-one` on port 0 with its data dir inside the bench's work dir.

    The process runs in its own session; its pid is appended to <work>/pgids so that the
    shell wrapper's trap kills it even when this harness dies."""

    def __init__(self, work, extra_args=(), name="concord"):
        self.work = work
        self.data_dir = os.path.join(work, name)
        self.srv = concord_launcher.Server(data_dir=self.data_dir, admin_password=ADMIN_PASSWORD,
                                           extra_args=list(extra_args))
        self.token = None
        self.project_id = None

    def start(self):
        try:
            self.srv.start(timeout=120)
        except concord_launcher.LaunchError as e:
            raise BenchError(str(e))
        with open(os.path.join(self.work, "pgids"), "a") as f:
            f.write("%d\n" % self.srv.proc.pid)
        self.url = self.srv.url
        self.pid = self.srv.info.get("pid") or self.srv.proc.pid
        tok, body = self.srv.issue_token("admin", ADMIN_PASSWORD, "admin")
        self.token = tok
        self.project_id = body["project"]["id"]
        return self

    def alive(self):
        return self.srv.alive()

    def log_tail(self, lines=40):
        return self.srv.log_tail(lines)

    def http(self, microversion=None, timeout=60.0):
        h = {}
        if microversion:
            h["X-OpenStack-Nova-API-Version"] = microversion
            h["OpenStack-API-Version"] = "compute " + microversion
        return Http(self.url, self.token, h, timeout)

    def upload_image(self, name, path_or_bytes):
        api = self.http()
        out, _ = api.expect(201, "POST", "/image/v2/images",
                            {"name": name, "disk_format": "raw", "container_format": "docker",
                             "visibility": "public"})
        image_id = out["id"]
        if isinstance(path_or_bytes, (bytes, bytearray)):
            data = bytes(path_or_bytes)
        else:
            with open(path_or_bytes, "rb") as f:
                data = f.read()
        api.expect(204, "PUT", "/image/v2/images/%s/file" % image_id, data,
                   {"Content-Type": "application/octet-stream"})
        deadline = time.monotonic() + 60
        while True:
            out, _ = api.expect(200, "GET", "/image/v2/images/" + image_id)
            if out.get("status") == "active":
                break
            if time.monotonic() > deadline:
                raise BenchError("image %s not active after upload: %s" % (image_id, out))
            time.sleep(0.1)
        api.close()
        return image_id

    def unlimited_quota(self):
        api = self.http("2.37")
        api.expect(200, "PUT", "/compute/v2.1/os-quota-sets/" + self.project_id,
                   {"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
        api.close()

    def stop(self):
        self.srv.stop(timeout=30)

    def cleanup(self):
        try:
            self.srv.kill9()
        finally:
            reap(self.data_dir)
            self.srv.cleanup()


def reap(path):
    """Force-removes runc containers, QEMU processes and mounts left under `path`."""
    if os.path.isdir(path):
        try:
            workloads.reap(path)
        except Exception as e:  # the safety net must never hide the real error
            log("warning: reaping %s failed: %s" % (path, e))


def leftovers(path):
    try:
        return workloads.leftovers(path) if os.path.isdir(path) else []
    except Exception as e:
        log("warning: listing leftovers under %s failed: %s" % (path, e))
        return []


def run(cmd, timeout=60, check=True, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise BenchError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                   r.stderr.decode(errors="replace")[-800:]))
    return r


class CpuMeter:
    """Server CPU and 'others' (cores busy with anything else) across a measured interval."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.t0 = time.monotonic()
        self.cpu0 = proc_cpu_ticks(self.pid) or 0
        self.busy0 = machine_busy_ticks()
        self.self0 = os.times()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self.t0
        self.server_s = ((proc_cpu_ticks(self.pid) or 0) - self.cpu0) / CLK_TCK
        t = os.times()
        self.harness_s = ((t.user - self.self0.user) + (t.system - self.self0.system) +
                          (t.children_user - self.self0.children_user) +
                          (t.children_system - self.self0.children_system))
        busy = (machine_busy_ticks() - self.busy0) / CLK_TCK
        self.others_cores = max(0.0, (busy - self.server_s - self.harness_s) / self.elapsed)
        self.server_cores = self.server_s / self.elapsed
        return False
