#!/usr/bin/python3
"""Identity benchmark: Concord against the real Keystone 22, side by side in one run.

Started by run.sh (which installs packages, builds Concord and owns the outer clean-up trap);
it can also be run directly with /usr/bin/python3 once both are present.

Method, in order:
  1. Keystone: keystone-manage db_sync / fernet_setup / credential_setup / bootstrap into a
     temp dir (SQLite, Fernet), then uWSGI (2 processes, http-socket) on a free loopback port.
     Concord: `concord all-in-one` on an empty temp data dir and another free port. These
     fresh-install starts are timed once, for information.
  2. Each system is stopped and restarted --starts times on its initialised data: time from
     spawning the process to the first successful `GET /v3`, then, after --idle-wait seconds
     with no load, the resident memory of all its processes. The last start stays up.
  3. The same number of projects is created in both, admin tokens are taken, and wrk drives
     each case (token validation, project listing, password token issue) against Keystone
     (Connection: close), Concord (keep-alive) and Concord (Connection: close), interleaved
     run by run so that background load on the shared machine hits every system alike.
     Server CPU time (utime+stime from /proc/<pid>/stat of every server process) is read
     around each run and divided by the completed requests.
  4. One table (min/median/max over the repeats, ratios of medians, the goals) is printed
     and written as Markdown.

Exit status: 0 when everything ran (whatever the figures), 1 when something failed to run,
2 on bad arguments. Benchmarks never gate.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")

KEYSTONE_ADMIN = {"user": "admin", "user_domain": "Default", "project": "admin",
                  "project_domain": "Default", "password": "bench-admin-secret"}
CONCORD_PASSWORD = "bench-admin-secret"

# The issue's goals, stated at 64 connections.
GOAL_RATIO = 500.0
GOAL_P99_MS = 5.0
GOAL_RSS_MB = 30.0
GOAL_START_MS = 200.0


class BenchError(Exception):
    """Something failed to run: the bench cannot produce a figure it would stand behind."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# /proc readings


def proc_cpu_ticks(pid):
    """utime + stime of one process (all its threads), in clock ticks; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_mem_kb(pid):
    """(VmRSS, Pss) in KiB. Pss splits pages shared between forked workers fairly."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def descendants(root):
    """root and every live process below it (uWSGI master + workers)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(out)


def machine_busy_ticks():
    """Busy CPU ticks of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return user + nice + system + irq + softirq + steal


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# HTTP helpers (setup only; load comes from wrk)


def http_status(port, path, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def http_json(method, url, body=None, token=None, timeout=30):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raise BenchError(f"{method} {url} answered {e.code}: {e.read()[:300]!r}") from e
    except (urllib.error.URLError, OSError) as e:
        raise BenchError(f"{method} {url} failed: {e}") from e


def password_body(c):
    return {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": c["user"], "domain": {"name": c["user_domain"]},
            "password": c["password"]}}},
        "scope": {"project": {"name": c["project"], "domain": {"name": c["project_domain"]}}}}}


# ---------------------------------------------------------------------------------------
# The two systems


class Server:
    """One system under test: how to set it up, start it, find its processes and stop it.

    Every process group it starts is recorded in <workdir>/pgids so that run.sh's trap can
    kill it even if this interpreter dies without running its own clean-up.
    """

    name = "?"

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        self.proc = None
        self.logfile = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}/v3"

    def command(self):
        raise NotImplementedError

    def env(self):
        return os.environ.copy()

    def cwd(self):
        return self.workdir

    def log_path(self):
        return os.path.join(self.workdir, f"{self.name.lower()}-stdout.log")

    def launch(self):
        self.logfile = open(self.log_path(), "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.cwd(), env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        with open(self.pgid_file(), "a") as f:
            f.write(f"{self.proc.pid}\n")

    def pgid_file(self):
        return os.path.join(self.workdir, "..", "pgids")

    def forget_pgid(self, pgid):
        """Once a group is gone its id may be reused: run.sh's trap must not kill it then."""
        try:
            with open(self.pgid_file()) as f:
                keep = [l for l in f.read().split() if l != str(pgid)]
            with open(self.pgid_file(), "w") as f:
                f.write("".join(f"{l}\n" for l in keep))
        except OSError:
            pass

    def root_pid(self):
        return self.proc.pid

    def pids(self):
        return descendants(self.root_pid())

    def cpu_ticks(self):
        return {pid: proc_cpu_ticks(pid) for pid in self.pids()}

    def log_tail(self, n=15):
        try:
            with open(self.log_path(), "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def start_timed(self, timeout):
        """Spawns the server; returns ms from spawn to the first successful GET /v3."""
        t0 = time.monotonic()
        self.launch()
        deadline = t0 + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise BenchError(f"{self.name} exited with status {rc} while starting:\n"
                                 f"{self.log_tail()}")
            try:
                status = http_status(self.port, "/v3", timeout=0.25)
            except OSError:
                status = None
            now = time.monotonic()
            if status is not None and 200 <= status < 400:
                return (now - t0) * 1000.0
            if now > deadline:
                raise BenchError(f"{self.name} did not answer GET /v3 within {timeout} s "
                                 f"(last status {status}):\n{self.log_tail()}")
            time.sleep(0.001)

    def stop(self):
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:  # workers left behind in the group, or a server that ignored SIGTERM
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
            self.forget_pgid(pgid)
        except subprocess.TimeoutExpired:
            log(f"warning: {self.name} (pid {pgid}) survived SIGKILL for 10 s")
        self.proc = None
        if self.logfile:
            self.logfile.close()
            self.logfile = None

    def memory(self):
        rss = pss = 0
        pids = self.pids()
        for pid in pids:
            r, p = proc_mem_kb(pid)
            rss += r
            pss += p
        return rss / 1024.0, pss / 1024.0, len(pids)


class Keystone(Server):
    """The real Keystone 22 from Debian under uWSGI, as FACTS.md describes it."""

    name = "Keystone"
    processes = 2

    def __init__(self, workdir, cache=False):
        super().__init__(workdir)
        self.cache = cache
        self.dir = os.path.join(workdir, "keystone")
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "keystone.conf")
        self.creds = dict(KEYSTONE_ADMIN)

    def setup(self):
        # Logging reduced: no debug, every library logger at WARNING, to a file; uWSGI's
        # per-request log line is disabled. password_hashing goes to ERROR because Keystone 22
        # logs a "Truncating password" WARNING on every password check, whatever its length.
        # Caching stays at Keystone's default (off), as in FACTS.md's anchor: there is no
        # memcached here. --keystone-cache turns on dogpile's in-process memory cache instead,
        # to show how much of Keystone's cost a cache would take away.
        d = self.dir
        with open(self.conf, "w") as f:
            f.write(f"""[DEFAULT]
debug = false
log_file = {d}/keystone.log
use_stderr = false
default_log_levels = amqp=WARN,amqplib=WARN,sqlalchemy=WARN,oslo_messaging=WARN,oslo_db=WARN,\
oslo_policy=WARN,oslo_cache=WARN,keystone=WARN,keystone.common.password_hashing=ERROR,\
keystonemiddleware=WARN,stevedore=WARN,\
urllib3=WARN,requests=WARN,routes=WARN,passlib=WARN,dogpile=WARN,py.warnings=ERROR,\
alembic=WARN,migrate=WARN
[database]
connection = sqlite:///{d}/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = {d}/fernet-keys
[credential]
key_repository = {d}/credential-keys
""")
            if self.cache:
                f.write("[cache]\nenabled = true\nbackend = dogpile.cache.memory\n")
        c = self.creds
        steps = [
            ["db_sync"],
            ["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
            ["credential_setup", "--keystone-user", "root", "--keystone-group", "root"],
            ["bootstrap", "--bootstrap-password", c["password"],
             "--bootstrap-username", c["user"], "--bootstrap-project-name", c["project"],
             "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
             "--bootstrap-region-id", "RegionOne",
             "--bootstrap-public-url", f"http://127.0.0.1:{self.port}/v3"],
        ]
        t0 = time.monotonic()
        for step in steps:
            cmd = ["keystone-manage", "--config-file", self.conf] + step
            r = subprocess.run(cmd, cwd=d, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=180)
            if r.returncode != 0:
                raise BenchError(f"{' '.join(cmd[:4])} failed ({r.returncode}):\n"
                                 f"{r.stderr.decode(errors='replace')[-2000:]}")
        return (time.monotonic() - t0) * 1000.0

    def cwd(self):
        return self.dir

    def env(self):
        e = os.environ.copy()
        e["OS_KEYSTONE_CONFIG_FILES"] = self.conf
        return e

    def command(self):
        # http-socket, not http: uWSGI's http router keeps keep-alive sockets that starve
        # other connections. Connection: close is added to every response so that wrk
        # reconnects cleanly instead of counting a read error on each closed socket.
        # lazy-apps, buffer-size and die-on-term as in Debian's keystone-uwsgi.ini; one
        # thread per process since the work is CPU-bound Python under the GIL.
        return ["uwsgi", "--plugins", "python3",
                "--http-socket", f"127.0.0.1:{self.port}",
                "--wsgi-file", "/usr/bin/keystone-wsgi-public",
                "--master", "--processes", str(self.processes), "--threads", "1",
                "--lazy-apps", "--need-app", "--listen", "256", "--buffer-size", "65535",
                "--die-on-term", "--no-orphans", "--disable-logging",
                "--add-header", "Connection: close",
                "--logto", os.path.join(self.dir, "uwsgi.log")]

    def log_tail(self, n=15):
        out = []
        for p in (os.path.join(self.dir, "uwsgi.log"), os.path.join(self.dir, "keystone.log")):
            try:
                with open(p, "rb") as f:
                    out += f.read().decode(errors="replace").splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out) or super().log_tail(n)

    def log_bytes(self):
        return sum(os.path.getsize(p) for p in (os.path.join(self.dir, "uwsgi.log"),
                                                 os.path.join(self.dir, "keystone.log"))
                   if os.path.exists(p))


class Concord(Server):
    """`concord all-in-one` on its embedded SQLite store."""

    name = "Concord"

    def __init__(self, workdir, binary):
        super().__init__(workdir)
        self.binary = binary
        self.dir = os.path.join(workdir, "concord")
        os.makedirs(self.dir)
        self.creds = None
        self.server_pid = None

    def command(self):
        return [self.binary, "all-in-one", f"--data_dir={self.dir}",
                f"--server.port={self.port}", "--log.level=warn",
                f"--bootstrap.admin_password={CONCORD_PASSWORD}"]

    def wait_ready_file(self, timeout=20):
        """server.json appears once Concord listens; it names the serving pid."""
        path = os.path.join(self.dir, "server.json")
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"Concord wrote no {path}:\n{self.log_tail()}")
            time.sleep(0.01)
        for _ in range(100):  # the file may be mid-write
            try:
                with open(path) as f:
                    info = json.load(f)
                break
            except (OSError, ValueError):
                time.sleep(0.01)
        else:
            raise BenchError(f"{path} is not valid JSON")
        self.server_pid = int(info.get("pid", self.proc.pid))

    def read_openrc(self):
        path = os.path.join(self.dir, "openrc")
        env = {}
        try:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("export "):
                        line = line[len("export "):]
                    if "=" not in line or line.startswith("#"):
                        continue
                    k, v = line.split("=", 1)
                    env[k.strip()] = v.strip().strip("'\"")
        except OSError as e:
            raise BenchError(f"cannot read Concord's {path}: {e}") from e
        self.creds = {
            "user": env.get("OS_USERNAME", "admin"),
            "user_domain": env.get("OS_USER_DOMAIN_NAME", "Default"),
            "project": env.get("OS_PROJECT_NAME", "admin"),
            "project_domain": env.get("OS_PROJECT_DOMAIN_NAME", "Default"),
            "password": env.get("OS_PASSWORD", CONCORD_PASSWORD),
        }

    def root_pid(self):
        return self.server_pid or self.proc.pid

    def start_timed(self, timeout):
        self.server_pid = None
        ms = super().start_timed(timeout)
        self.wait_ready_file()
        return ms

    def log_bytes(self):
        total = 0
        for root, _, files in os.walk(self.dir):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files
                         if f.endswith(".log"))
        return total + (os.path.getsize(self.log_path()) if os.path.exists(self.log_path())
                        else 0)


# ---------------------------------------------------------------------------------------
# Load


CASES = [
    # id, label, lua script, path, connections option
    ("validate", "token validation", "validate.lua", "/v3/auth/tokens", "connections"),
    ("projects", "project listing", "list_projects.lua", "/v3/projects", "connections"),
    ("issue", "password token issue", "issue_token.lua", "/v3/auth/tokens", "issue_connections"),
]


class Variant:
    """A system driven one way: Keystone (close), Concord (keep-alive), Concord (close)."""

    def __init__(self, server, close):
        self.server = server
        self.close = close
        self.label = f"{server.name} ({'close' if close else 'keep-alive'})"
        self.token = None
        self.body = None


def wait_idle(server, quiet_s=0.6, timeout_s=90):
    """Waits until the server burns no CPU: requests abandoned by the previous wrk run
    (still queued in the listen backlog) must not be billed to the next one."""
    deadline = time.monotonic() + timeout_s
    last = sum(v or 0 for v in server.cpu_ticks().values())
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = sum(v or 0 for v in server.cpu_ticks().values())
        if now > last + 1:  # one tick of noise allowed
            still_since = time.monotonic()
        last = now
        if time.monotonic() - still_since >= quiet_s:
            return
    log(f"warning: {server.name} still busy after {timeout_s} s of waiting")


def run_wrk(variant, case, args, duration):
    cid, _, script, path, conn_opt = case
    conns = getattr(args, conn_opt)
    server = variant.server
    env = os.environ.copy()
    env.update({"BENCH_LUA_DIR": HERE, "BENCH_TOKEN": variant.token or "",
                "BENCH_CLOSE": "1" if variant.close else "0", "BENCH_BODY": variant.body})
    cmd = ["wrk", f"-t{min(args.wrk_threads, conns)}", f"-c{conns}", f"-d{duration}s",
           f"--timeout={args.wrk_timeout}s", "-s", os.path.join(HERE, script),
           f"http://127.0.0.1:{server.port}{path}"]
    wait_idle(server)
    cpu0 = server.cpu_ticks()
    busy0 = machine_busy_ticks()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=duration + args.wrk_timeout + 30)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"wrk hung: {' '.join(cmd)}") from e
    elapsed = time.monotonic() - t0
    cpu1 = server.cpu_ticks()
    busy1 = machine_busy_ticks()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = r.stdout.decode(errors="replace")
    line = next((l for l in out.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if r.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({r.returncode}) on {variant.label} {cid}:\n{out}\n"
                         f"{r.stderr.decode(errors='replace')}")
    res = json.loads(line[len("BENCH_RESULT "):])
    server_ticks = sum((cpu1.get(p) or 0) - (cpu0.get(p) or 0) for p in cpu1 if p in cpu0)
    server_ticks += sum(cpu1[p] or 0 for p in cpu1 if p not in cpu0)
    wrk_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    dur_s = res["duration_us"] / 1e6
    errs = res["errors"]
    failed = errs["status"] + errs["timeout"] + errs["connect"]
    ok = res["requests"] - errs["status"]
    return {
        "rps": ok / dur_s if dur_s > 0 else 0.0,
        "requests": res["requests"],
        "ok": ok,
        "errors": failed,
        "socket_errors": errs["read"] + errs["write"],
        "error_detail": errs,
        "p50_ms": res["latency_us"]["p50"] / 1000.0,
        "p99_ms": res["latency_us"]["p99"] / 1000.0,
        "cpu_ms_per_req": (server_ticks * 1000.0 / CLK_TCK / res["requests"])
        if res["requests"] else float("nan"),
        "wrk_cores": wrk_s / elapsed,
        "others_cores": max(0.0, ((busy1 - busy0) / CLK_TCK - server_ticks / CLK_TCK - wrk_s)
                            / elapsed),
        "pids_changed": set(cpu0) != set(cpu1),
    }


# ---------------------------------------------------------------------------------------
# Set-up of the data both systems serve


def issue_token(server, creds):
    status, headers, _ = http_json("POST", server.base + "/auth/tokens", password_body(creds))
    token = next((v for k, v in headers.items() if k.lower() == "x-subject-token"), None)
    if status != 201 or not token:
        raise BenchError(f"{server.name}: password auth gave {status} without a token")
    return token


def project_count(server, token):
    _, _, body = http_json("GET", server.base + "/projects", token=token)
    return len(body.get("projects", []))


def default_domain_id(server, token):
    """The domain of the admin project, read back from validating the admin token."""
    req = urllib.request.Request(server.base + "/auth/tokens", method="GET", headers={
        "Accept": "application/json", "X-Auth-Token": token, "X-Subject-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["token"]["project"]["domain"]["id"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{server.name}: validating the admin token failed: {e}") from e


def create_project(server, body, token, attempts=3):
    """POST a project, retrying a dropped connection (Keystone's uWSGI worker was seen to close
    one without answering during set-up); a 409 on a retry means the first attempt landed."""
    for attempt in range(attempts):
        try:
            http_json("POST", server.base + "/projects", body, token=token)
            return
        except BenchError as e:
            if attempt > 0 and "answered 409" in str(e):
                return
            if attempt + 1 == attempts or "answered" in str(e):
                raise
            log(f"{server.name}: project create failed ({e}); retrying")
            time.sleep(1)


def equalise_projects(servers, tokens, extra):
    counts = {s.name: project_count(s, tokens[s.name]) for s in servers}
    target = max(counts.values()) + extra
    for s in servers:
        dom = default_domain_id(s, tokens[s.name])
        for i in range(counts[s.name], target):
            body = {"project": {"name": f"bench-project-{i:03d}", "domain_id": dom,
                                "description": "identity benchmark", "enabled": True}}
            create_project(s, body, tokens[s.name])
    final = {s.name: project_count(s, tokens[s.name]) for s in servers}
    if len(set(final.values())) != 1:
        raise BenchError(f"project counts differ after set-up: {final}")
    return target


# ---------------------------------------------------------------------------------------
# Reporting


def mmm(xs):
    xs = [x for x in xs if x == x]
    if not xs:
        return (float("nan"),) * 3
    return min(xs), statistics.median(xs), max(xs)


def fmt(x, nd=None):
    if x != x:
        return "n/a"
    if nd is None:
        nd = 0 if abs(x) >= 100 else (1 if abs(x) >= 10 else 2)
    return f"{x:,.{nd}f}"


def fmt_ratio(x):
    if x != x:
        return "n/a"
    return f"{x:,.0f}x" if x >= 10 else f"{x:.2f}x"


def pkg_version(name):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True)
    return r.stdout.decode().strip() or "?"


def concord_version(binary):
    try:
        r = subprocess.run([binary, "version"], capture_output=True, timeout=10)
        v = r.stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        v = "?"
    g = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True)
    d = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                       capture_output=True)
    sha = g.stdout.decode().strip() or "?"
    if d.stdout.strip():
        sha += " + uncommitted changes"
    build_type = "?"
    cache = os.path.join(os.path.dirname(binary), "..", "..", "CMakeCache.txt")
    try:
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    build_type = line.strip().split("=", 1)[1]
    except OSError:
        pass
    return f"{v} (commit {sha}, {build_type} build)"


def report(args, meta, starts, fresh, results, variants, nprojects):
    L = []
    L.append("# Identity benchmark: Concord against Keystone 22, side by side in one run")
    L.append("")
    L.append(f"- when: {meta['when']}; host: {meta['cpu']}, {os.cpu_count()} cores, "
             f"{meta['kernel']}; shared with other users")
    L.append(f"- load average (1/5/15 min): {meta['load_start']} at start, "
             f"{meta['load_end']} at end")
    L.append(f"- Keystone {meta['keystone']}: uWSGI {meta['uwsgi']}, {Keystone.processes} "
             "processes x 1 thread, http-socket, SQLite, Fernet, "
             f"cache {'in-process memory (--keystone-cache)' if args.keystone_cache else 'off'}, "
             "logging at WARNING to a file, uWSGI request log off")
    if meta.get("concord"):
        L.append(f"- Concord {meta['concord']}: all-in-one, embedded SQLite, --log.level=warn, "
                 "default server.threads")
    L.append(f"- load: wrk {meta['wrk']} on loopback, -t{args.wrk_threads}, {args.duration} s "
             f"per run after a {args.warmup} s warm-up, {args.repeats} run(s) per case "
             "interleaved across systems; wrk and servers not pinned (same for both); "
             f"{nprojects} projects in each system")
    L.append("- req/s counts successful responses; failed requests = HTTP errors (4xx/5xx), "
             "timeouts and connect errors, summed over the runs; latencies are wrk's (p50/p99 "
             "per run, connect time excluded); "
             "server CPU = utime+stime of all server processes over the run / completed "
             "requests; wrk = cores the load generator used; \"others\" = cores busy with "
             "anything but the server and wrk (other users of the machine); the last two are "
             "medians over the runs")
    L.append("")
    L.append(f"## Throughput and latency (min / median / max over {args.repeats} run(s))")
    L.append("")
    L.append("| case | system | conns | req/s min | req/s median | req/s max | p50 ms (median) "
             "| p99 ms median (min-max) | server CPU ms/req (median) | failed requests "
             "| wrk (cores) | others (cores) |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in CASES:
        cid, label = case[0], case[1]
        conns = getattr(args, case[4])
        for v in variants:
            rs = results.get((v.label, cid), [])
            if not rs:
                continue
            rps = mmm([r["rps"] for r in rs])
            p50 = mmm([r["p50_ms"] for r in rs])
            p99 = mmm([r["p99_ms"] for r in rs])
            cpu = mmm([r["cpu_ms_per_req"] for r in rs])
            oth = mmm([r["others_cores"] for r in rs])
            wrk = mmm([r["wrk_cores"] for r in rs])
            errs = sum(r["errors"] for r in rs)
            L.append(f"| {label} | {v.label} | {conns} | {fmt(rps[0])} | **{fmt(rps[1])}** | "
                     f"{fmt(rps[2])} | {fmt(p50[1])} | {fmt(p99[1])} ({fmt(p99[0])}-"
                     f"{fmt(p99[2])}) | {fmt(cpu[1])} | {errs} | {fmt(wrk[1], 2)} | {fmt(oth[1], 2)} |")
    L.append("")

    kst = next((v for v in variants if v.server.name == "Keystone"), None)
    cons = [v for v in variants if v.server.name == "Concord"]
    med = {}
    for (label, cid), rs in results.items():
        med[(label, cid)] = {k: mmm([r[k] for r in rs])[1]
                             for k in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req")}
    if kst and cons:
        L.append("## Concord / Keystone, ratios of the medians")
        L.append("")
        L.append("| case | " + " | ".join(f"req/s {v.label}" for v in cons) + " | "
                 + " | ".join(f"CPU/req Keystone / {v.label}" for v in cons) + " |")
        L.append("|---|" + "---:|" * (2 * len(cons)))
        for case in CASES:
            cid, label = case[0], case[1]
            k = med.get((kst.label, cid))
            if not k:
                continue
            cells = []
            for v in cons:
                c = med.get((v.label, cid))
                cells.append(fmt_ratio(c["rps"] / k["rps"]) if c and k["rps"] > 0 else "n/a")
            for v in cons:
                c = med.get((v.label, cid))
                cells.append(fmt_ratio(k["cpu_ms_per_req"] / c["cpu_ms_per_req"])
                             if c and c["cpu_ms_per_req"] > 0 else "n/a")
            L.append(f"| {label} | " + " | ".join(cells) + " |")
        L.append("")

    L.append(f"## Start and idle memory ({args.starts} start(s) each, min / median / max)")
    L.append("")
    L.append("| system | processes | start to first `GET /v3` ms | idle RSS MB (sum) "
             "| idle PSS MB (sum) | fresh install to first request ms (once) |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for name, st in starts.items():
        t = mmm([s["start_ms"] for s in st])
        rss = mmm([s["rss_mb"] for s in st])
        pss = mmm([s["pss_mb"] for s in st])
        nproc = st[-1]["nproc"] if st else 0
        f = fresh.get(name, {})
        fresh_txt = fmt(f["total_ms"]) if f else "n/a"
        if f.get("detail"):
            fresh_txt += f" ({f['detail']})"
        L.append(f"| {name} | {nproc} | {fmt(t[0])} / **{fmt(t[1])}** / {fmt(t[2])} | "
                 f"{fmt(rss[0])} / **{fmt(rss[1])}** / {fmt(rss[2])} | "
                 f"{fmt(pss[0])} / {fmt(pss[1])} / {fmt(pss[2])} | {fresh_txt} |")
    L.append("")
    L.append(f"Idle figures are read {args.idle_wait} s after the first served request, "
             "with no load. RSS of forked workers counts shared pages once per process; PSS "
             "splits them.")
    L.append("")

    L.append("## Goals (from the issue)")
    L.append("")
    L.append("| goal | measured | met |")
    L.append("|---|---|---|")
    goals_met = []
    con_ka = next((v for v in cons if not v.close), None)
    con_cl = next((v for v in cons if v.close), None)

    def verdict(b, why="pending (Concord not measured)"):
        if b is None:
            return why
        goals_met.append(b)
        return "yes" if b else "**no**"

    for cid, label in (("validate", "token validation"), ("projects", "project listing")):
        goal = (f"{label}: >= {GOAL_RATIO:.0f}x Keystone's req/s, p99 < {GOAL_P99_MS:g} ms "
                f"at {args.connections} connections")
        k = med.get((kst.label, cid)) if kst else None
        if k and con_ka and med.get((con_ka.label, cid)):
            parts, met = [], None
            for v in (con_ka, con_cl):
                if not v or not med.get((v.label, cid)):
                    continue
                c = med[(v.label, cid)]
                ratio = c["rps"] / k["rps"] if k["rps"] > 0 else float("nan")
                ratio_ok = ratio >= GOAL_RATIO
                p99_ok = c["p99_ms"] < GOAL_P99_MS
                parts.append(f"{v.label}: {fmt_ratio(ratio)} ({'met' if ratio_ok else 'not met'})"
                             f", p99 {fmt(c['p99_ms'])} ms ({'met' if p99_ok else 'not met'})")
                if v is con_ka:
                    met = ratio_ok and p99_ok
            L.append(f"| {goal} | {'; '.join(parts)} | {verdict(met)}, judged on keep-alive, "
                     "Concord's normal mode |")
        else:
            why = ("pending (Concord not measured)" if not con_ka else
                   "n/a (needs Keystone in the same run)")
            L.append(f"| {goal} | n/a | {verdict(None, why)} |")
    cst = starts.get("Concord")
    if cst:
        rss = mmm([s["rss_mb"] for s in cst])[1]
        t = mmm([s["start_ms"] for s in cst])[1]
        L.append(f"| idle RSS < {GOAL_RSS_MB:g} MB | {fmt(rss)} MB (median) | "
                 f"{verdict(rss < GOAL_RSS_MB)} |")
        L.append(f"| start to first request < {GOAL_START_MS:g} ms | {fmt(t)} ms (median) | "
                 f"{verdict(t < GOAL_START_MS)} |")
    else:
        L.append(f"| idle RSS < {GOAL_RSS_MB:g} MB | n/a | {verdict(None)} |")
        L.append(f"| start to first request < {GOAL_START_MS:g} ms | n/a | {verdict(None)} |")
    L.append("")
    if meta.get("notes"):
        L.append("## Notes from this run")
        L.append("")
        L.extend(f"- {n}" for n in meta["notes"])
        L.append("")
    L.append(f"Command: `{meta['command']}`")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/identity/run.sh",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="runs per case and system")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    p.add_argument("--connections", type=int, default=64,
                   help="connections for validation and listing")
    p.add_argument("--issue-connections", type=int, default=8,
                   help="connections for password token issue")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (-t)")
    p.add_argument("--wrk-timeout", type=int, default=30, help="wrk per-request timeout, s")
    p.add_argument("--projects", type=int, default=20, help="projects added to each system")
    p.add_argument("--starts", type=int, default=None, help="timed starts (default: repeats)")
    p.add_argument("--idle-wait", type=float, default=4.0,
                   help="seconds after the first request before reading idle memory")
    p.add_argument("--keystone-cache", action="store_true",
                   help="enable Keystone's in-process dogpile memory cache")
    p.add_argument("--only", choices=["both", "keystone", "concord"], default="both",
                   help="measure one system alone (no ratios then)")
    p.add_argument("--concord-bin", default=os.environ.get(
        "CONCORD_BIN", os.path.join(REPO, "build/default/src/cmd/concord")),
                   help="the concord binary (run.sh builds it when absent)")
    p.add_argument("--workdir", default=None, help="scratch dir; default: a new temp dir, removed at the end")
    p.add_argument("--results", default=None,
                   help="Markdown output file; default: bench/identity/results-<date>.md")
    a = p.parse_args(argv)
    if a.starts is None:
        a.starts = a.repeats
    for name in ("repeats", "duration", "connections", "issue_connections", "wrk_threads",
                 "starts"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return a


def main(argv):
    args = parse_args(argv)
    own_workdir = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(prefix="concord-bench-identity-")
    os.makedirs(workdir, exist_ok=True)
    sysdir = os.path.join(workdir, "sys")
    os.makedirs(sysdir, exist_ok=False)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    servers = []
    try:
        return run(args, sysdir, servers)
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"warning: stopping {s.name}: {e}")
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args, sysdir, servers):
    want_k = args.only in ("both", "keystone")
    want_c = args.only in ("both", "concord")
    if want_c and not os.access(args.concord_bin, os.X_OK):
        raise BenchError(f"no Concord binary at {args.concord_bin} (set CONCORD_BIN)")
    for tool in ("wrk",) + (("uwsgi", "keystone-manage") if want_k else ()):
        if not shutil.which(tool):
            raise BenchError(f"{tool} is not installed (run scripts/install-deps.sh --bench)")

    meta = {
        "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": platform.processor() or "?",
        "kernel": f"Linux {platform.release()}",
        "load_start": loadavg(),
        "keystone": pkg_version("keystone"),
        "uwsgi": pkg_version("uwsgi"),
        "wrk": pkg_version("wrk"),
        "command": os.environ.get("BENCH_COMMAND") or " ".join(["bench/identity/bench.py"]
                                                                + sys.argv[1:]),
        "notes": [],
    }
    try:
        with open("/proc/cpuinfo") as f:
            meta["cpu"] = next(l.split(":", 1)[1].strip() for l in f
                               if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if want_c:
        meta["concord"] = concord_version(args.concord_bin)
    log(f"load average at start: {meta['load_start']}")

    kst = con = None
    fresh, starts = {}, {}
    if want_k:
        kst = Keystone(sysdir, cache=args.keystone_cache)
        servers.append(kst)
        log("Keystone: keystone-manage db_sync, fernet_setup, credential_setup, bootstrap")
        setup_ms = kst.setup()
        first_ms = kst.start_timed(timeout=120)
        fresh["Keystone"] = {"total_ms": setup_ms + first_ms,
                             "detail": f"keystone-manage {fmt(setup_ms)} + start {fmt(first_ms)}"}
        kst.stop()
    if want_c:
        con = Concord(sysdir, args.concord_bin)
        servers.append(con)
        log("Concord: first start on an empty data dir (migrate + bootstrap)")
        first_ms = con.start_timed(timeout=60)
        con.read_openrc()
        fresh["Concord"] = {"total_ms": first_ms, "detail": "all-in-one on an empty data dir"}
        con.stop()

    # Timed restarts, interleaved; the last start of each stays up for the load.
    for i in range(args.starts):
        for s in servers:
            ms = s.start_timed(timeout=120 if s is kst else 60)
            time.sleep(args.idle_wait)
            wait_idle(s)  # a uWSGI worker may still be importing Keystone (lazy-apps)
            rss, pss, nproc = s.memory()
            starts.setdefault(s.name, []).append(
                {"start_ms": ms, "rss_mb": rss, "pss_mb": pss, "nproc": nproc})
            log(f"{s.name} start {i + 1}/{args.starts}: first request after {ms:.0f} ms, "
                f"idle RSS {rss:.1f} MB in {nproc} process(es)")
            if i + 1 < args.starts:
                s.stop()

    tokens = {}
    for s in servers:
        tokens[s.name] = issue_token(s, s.creds)
    log(f"adding {args.projects} projects to each system")
    nprojects = equalise_projects(servers, tokens, args.projects)

    variants = []
    if kst:
        variants.append(Variant(kst, close=True))
    if con:
        variants.append(Variant(con, close=False))
        variants.append(Variant(con, close=True))
    for v in variants:
        v.token = issue_token(v.server, v.server.creds)
        v.body = json.dumps(password_body(v.server.creds))

    log_before = {s.name: s.log_bytes() for s in servers}
    if args.warmup > 0:
        log(f"warm-up: {args.warmup} s per case and system")
        for case in CASES:
            for v in variants:
                run_wrk(v, case, args, args.warmup)

    results = {}
    total = args.repeats * len(CASES) * len(variants)
    n = 0
    for rep in range(args.repeats):
        for case in CASES:
            for v in variants:
                n += 1
                r = run_wrk(v, case, args, args.duration)
                results.setdefault((v.label, case[0]), []).append(r)
                log(f"[{n}/{total}] run {rep + 1} {case[1]:<20} {v.label:<21} "
                    f"{r['rps']:>10.1f} req/s  p50 {r['p50_ms']:8.2f} ms  "
                    f"p99 {r['p99_ms']:8.2f} ms  cpu {r['cpu_ms_per_req']:8.3f} ms/req  "
                    f"failed {r['errors']}  wrk {r['wrk_cores']:.2f} others {r['others_cores']:.2f} cores  "
                    f"load {loadavg().split()[0]}")
                if r["socket_errors"]:
                    meta["notes"].append(
                        f"{v.label} {case[1]} run {rep + 1}: {r['socket_errors']} socket "
                        "read/write errors (wrk reconnects; a server that closes without "
                        "saying Connection: close causes one per request)")
                if r["pids_changed"]:
                    meta["notes"].append(f"{v.label} {case[1]} run {rep + 1}: the set of "
                                         "server processes changed during the run")

    for (label, cid), rs in results.items():
        if any(r["p99_ms"] > 0.5 * args.duration * 1000 for r in rs):
            meta["notes"].append(
                f"{label} {cid}: p99 above half the run length; requests queued for much of "
                "the run and those still queued at its end are not counted, so the true tail "
                "is worse")
    failures = []
    for (label, cid), rs in results.items():
        for r in rs:
            bad = r["requests"] - r["ok"] + r["error_detail"]["timeout"] + \
                r["error_detail"]["connect"]
            if r["requests"] == 0 or bad > 0.01 * max(r["requests"], 1):
                failures.append(f"{label} {cid}: {r['requests']} requests, errors "
                                f"{r['error_detail']}")
    for s in servers:
        meta["notes"].append(f"{s.name} wrote {s.log_bytes() - log_before[s.name]} bytes of "
                             "logs during the load")
    meta["load_end"] = loadavg()

    text = report(args, meta, starts, fresh, results, variants, nprojects)
    print()
    print(text)
    out = args.results or os.path.join(
        HERE, f"results-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.md")
    with open(out, "w") as f:
        f.write(text)
    log(f"written to {out}")
    if failures:
        for f in failures:
            log(f"FAILED: more than 1% of requests failed: {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
