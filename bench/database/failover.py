#!/usr/bin/python3
"""Database failover benchmark driver (see failover.sh): Concord's HA PostgreSQL against
Patroni 3.0.2 + etcd 3.4 + HAProxy 2.6, both from Debian, in one run, interleaved.

Patroni side (all at Debian's / Patroni's defaults: ttl 30, loop_wait 10, retry_timeout 10,
maximum_lag_on_failover 1 MiB; HAProxy with the health check Patroni documents: OPTIONS /primary
on the REST API, inter 3s fall 3 rise 2, on-marked-down shutdown-sessions): one etcd, two
PostgreSQL 15 nodes on 127.79.1.1 and 127.79.1.2 (each run by its own patroni process as the
concord-db user), HAProxy on 127.79.0.1:5000 routing to the leader. Asynchronous and synchronous
(synchronous_mode: true, switched through PATCH /config) on the same cluster. A "kill" takes
the whole primary node down: kill -9 of its patroni process and of its postmaster's process
group. The node is then restarted with an empty data folder, so it rejoins as a replica by
pg_basebackup (no pg_rewind: that needs wal_log_hints, which is not a default).

Concord side: `concord all-in-one --agent.enabled=false` and two `concord agent`s (hosts db-a
and db-b), one PostgreSQL instance (and, with the default --concord-engines, one MariaDB 10.11
instance, rows "concord-mariadb": Patroni has no MariaDB counterpart, so its ratio is only
indicative) created with "high_availability": true; the client writes through its endpoint.
Scenarios: "engine" (kill -9 of the primary member's postmaster and its children), "host" (kill
-9 of the primary host's agent and of its engine processes) and "paused" (the host cut off
rather than dead: SIGSTOP of the engine's processes, so no connection is reset, and kill -9 of
the agent). With --concord-scenarios also "standby-silent", PostgreSQL only and no failover: the
primary's WAL senders SIGSTOPped, so the synchronous standby still answers but hears nothing and
nothing resets its connection; commits wait until the server stops waiting for the standby (its
receiver times out, its agent reports it). Patroni has no row for it: the same fault would
freeze its view (it reads the paused sender's row on the primary), where a real silent link
times the sender out after wal_sender_timeout. Between repetitions the harness resumes a paused
engine, restarts a killed agent and waits until the instance shows two healthy members again,
the standby synchronous (or recreates it). When the server does not offer HA, the Concord rows say
"not available" with the server's answer, and the Patroni side runs anyway.

Each repetition: empty failover_log through the endpoint, start the client
(tests/integration/failover_client.py), ~5 s of writes, kill, wait until writes resume, ~5 s
more, stop, read the table back through the endpoint, count lost acknowledged writes. For
Concord also, once healthy again: whether the old primary rejoined in place, was rewound or was
copied anew (the agents' log lines), and the primary's ids it still lacks after 60 s (read
from the standby member's own address).
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import failover_client as fc  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
DB_USER = "concord-db"
SUPER_PW = "bench-super-pw"
REPL_PW = "bench-repl-pw"
APP_PW = "App-pw-1"
ETCD_IP = "127.79.0.1"
HAPROXY_PORT = 5000
NODES = {"node1": "127.79.1.1", "node2": "127.79.1.2"}
CONCORD_POOL = "127.79.128.0/24"
# engine: kill -9 of the primary member's engine; host: kill -9 of its agent and engine;
# paused: its engine SIGSTOPped (processes alive, connections open) and its agent killed.
CONCORD_SCENARIOS = ("engine", "host", "paused")
# Not a failover: the link to the synchronous standby goes silent (SIGSTOP of the primary's WAL
# senders, PostgreSQL only): writes wait until the server stops waiting for the standby.
SILENT = "standby-silent"
RESUME_TIMEOUT = 180.0
HEAL_TIMEOUT = 300.0


def log(msg):
    print("[%s] %s" % (datetime.datetime.utcnow().strftime("%H:%M:%S"), msg), flush=True)


def http_json(method, url, body=None, timeout=5.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw.strip() else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return None, None


def wait_until(fn, timeout, what, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = fn()
        if ok:
            return last
        time.sleep(interval)
    raise RuntimeError("%s: not within %.0f s (last: %s)" % (what, timeout, last))


class Proc:
    """A process in a session of its own with its output in a log file."""

    def __init__(self, argv, log_path, user=None):
        self.argv = (["runuser", "-u", user, "--"] if user else []) + list(argv)
        self.log_path = log_path
        self.p = None

    def start(self):
        with open(self.log_path, "ab") as out:
            self.p = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def kill9(self):
        if self.p is None:
            return
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass


# ---- Patroni ---------------------------------------------------------------------------------


class Patroni:
    def __init__(self, work):
        self.work = work
        self.etcd = None
        self.haproxy = None
        self.nodes = {}

    def node_dir(self, name):
        return os.path.join(self.work, name)

    def config(self, name):
        ip = NODES[name]
        d = self.node_dir(name)
        hba = ["local all all trust",
               "host replication replicator 127.0.0.0/8 scram-sha-256",
               "host all all 127.0.0.0/8 scram-sha-256"]
        # JSON is YAML: Patroni reads this file with yaml.safe_load.
        return {
            "scope": "failbench", "name": name,
            "log": {"level": "INFO"},
            "restapi": {"listen": ip + ":8008", "connect_address": ip + ":8008"},
            "etcd3": {"hosts": ETCD_IP + ":2379"},
            "bootstrap": {
                # Patroni's defaults, spelled out so the results say what ran.
                "dcs": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10,
                        "maximum_lag_on_failover": 1048576, "synchronous_mode": False},
                "initdb": [{"encoding": "UTF8"}, {"auth-local": "trust"}],
                "pg_hba": hba,
            },
            "postgresql": {
                "listen": ip + ":5432", "connect_address": ip + ":5432",
                "data_dir": os.path.join(d, "data"), "bin_dir": PG_BIN,
                "pgpass": os.path.join(d, "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SUPER_PW},
                    "replication": {"username": "replicator", "password": REPL_PW},
                    "rewind": {"username": "postgres", "password": SUPER_PW}},
                "parameters": {"unix_socket_directories": d},
                "pg_hba": hba,
            },
        }

    def start_node(self, name):
        d = self.node_dir(name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "patroni.yml")
        with open(path, "w") as f:
            json.dump(self.config(name), f, indent=1)
        subprocess.run(["chown", "-R", DB_USER, d], check=True)
        self.nodes[name] = Proc(["/usr/bin/patroni", path], os.path.join(self.work, name + ".log"),
                                user=DB_USER).start()

    def start(self):
        etcd_dir = os.path.join(self.work, "etcd")
        self.etcd = Proc(["/usr/bin/etcd", "--name", "e1", "--data-dir", etcd_dir,
                          "--listen-client-urls", "http://%s:2379" % ETCD_IP,
                          "--advertise-client-urls", "http://%s:2379" % ETCD_IP,
                          "--listen-peer-urls", "http://%s:2380" % ETCD_IP,
                          "--initial-advertise-peer-urls", "http://%s:2380" % ETCD_IP,
                          "--initial-cluster", "e1=http://%s:2380" % ETCD_IP],
                         os.path.join(self.work, "etcd.log")).start()
        wait_until(lambda: (http_json("GET", "http://%s:2379/health" % ETCD_IP)[0] == 200, None),
                   60, "etcd up")
        cfg = os.path.join(self.work, "haproxy.cfg")
        servers = "\n".join("    server %s %s:5432 maxconn 100 check port 8008" % (n, ip)
                             for n, ip in NODES.items())
        with open(cfg, "w") as f:
            f.write("""global
    maxconn 200
defaults
    log global
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s
listen primary
    bind %s:%d
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions
%s
""" % (ETCD_IP, HAPROXY_PORT, servers))
        self.haproxy = Proc(["/usr/sbin/haproxy", "-db", "-f", cfg],
                            os.path.join(self.work, "haproxy.log")).start()
        self.start_node("node1")
        wait_until(lambda: (self.leader() == "node1", self.cluster()), 120, "node1 leads")
        self.start_node("node2")
        self.wait_healthy(sync=False)
        admin = fc.Target("postgresql", ETCD_IP, HAPROXY_PORT, "postgres", SUPER_PW, "postgres")

        def make_app(conn):
            conn.execute("CREATE ROLE app LOGIN PASSWORD %s", (APP_PW,), 10)
            conn.execute("CREATE DATABASE shop OWNER app", None, 30)
            return True

        fc.with_retries(admin, make_app, 60)

    def target(self):
        return fc.Target("postgresql", ETCD_IP, HAPROXY_PORT, "app", APP_PW, "shop")

    def cluster(self):
        for ip in NODES.values():
            code, body = http_json("GET", "http://%s:8008/cluster" % ip, timeout=2)
            if code == 200 and body:
                return body
        return None

    def leader(self):
        c = self.cluster() or {}
        for m in c.get("members", []):
            if m.get("role") == "leader" and m.get("state") == "running":
                return m["name"]
        return None

    def healthy(self, sync):
        c = self.cluster() or {}
        ms = c.get("members", [])
        leaders = [m for m in ms if m.get("role") == "leader" and m.get("state") == "running"]
        want_role = "sync_standby" if sync else "replica"
        others = [m for m in ms if m.get("role") == want_role and
                  m.get("state") in ("running", "streaming") and m.get("lag") in (0, "0")]
        return len(ms) == 2 and len(leaders) == 1 and len(others) == 1, c

    def wait_healthy(self, sync, timeout=HEAL_TIMEOUT):
        wait_until(lambda: self.healthy(sync), timeout,
                   "Patroni: leader and %s replica" % ("synchronous" if sync else "streaming"))
        # HAProxy must route to the leader too (rise 2 x inter 3s after a change).
        target = fc.Target("postgresql", ETCD_IP, HAPROXY_PORT, "postgres", SUPER_PW, "postgres")
        fc.with_retries(target, lambda conn: conn.execute("SELECT 1", None, 5), timeout)

    def set_sync(self, sync):
        for ip in NODES.values():
            code, _ = http_json("PATCH", "http://%s:8008/config" % ip, {"synchronous_mode": sync})
            if code == 200:
                break
        else:
            raise RuntimeError("Patroni: PATCH /config synchronous_mode=%s failed" % sync)
        self.wait_healthy(sync)

    def postmaster_pid(self, name):
        try:
            with open(os.path.join(self.node_dir(name), "data", "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def kill_primary(self, scenario):
        del scenario  # one scenario: the whole node
        name = self.leader()
        if not name:
            raise RuntimeError("Patroni: no leader to kill: %s" % self.cluster())
        pm = self.postmaster_pid(name)
        node = self.nodes[name]
        doomed = (fc.process_tree(pm) if pm else []) + fc.process_tree(node.p.pid)
        t = time.monotonic()
        if pm:
            fc.signal_tree(pm, signal.SIGKILL)
        node.kill9()
        if not fc.wait_gone(doomed, 20):
            raise RuntimeError("Patroni: %s's processes survived kill -9" % name)
        return t, name

    def restore(self, killed, sync):
        if not self.nodes[killed].alive():
            # The other node leads now: the killed one rejoins from scratch (it may hold WAL
            # the new leader never got, and pg_rewind is not enabled by default).
            shutil.rmtree(os.path.join(self.node_dir(killed), "data"), ignore_errors=True)
            self.start_node(killed)
        self.wait_healthy(sync)

    def revive(self, killed):
        """Restarts a killed node with its data, for when no failover happened: it is the
        only one with every commit, and Patroni lets it take the leader key again."""
        self.start_node(killed)

    def diagnose(self, killed):
        other = [n for n in NODES if n != killed][0]
        tail = ""
        try:
            with open(os.path.join(self.work, other + ".log"), errors="replace") as f:
                lines = [ln.strip() for ln in f if " INFO: " in ln or "WARNING" in ln]
            tail = " | ".join(lines[-3:])
        except OSError:
            pass
        return "cluster %s; %s log: %s" % (json.dumps(self.cluster()), other, tail)

    def stop(self):
        for name, node in self.nodes.items():
            pm = self.postmaster_pid(name)
            node.kill9()
            if pm:
                fc.signal_tree(pm, signal.SIGKILL)
        for p in (self.haproxy, self.etcd):
            if p:
                p.kill9()


# ---- Concord ---------------------------------------------------------------------------------


class Concord:
    """One HA instance of `engine` on a Concord cloud (shared by the engines' legs)."""

    def __init__(self, cloud, engine):
        self.cloud = cloud
        self.engine = engine
        self.iid = None
        self.unavailable = None
        self.seq = 0
        self.paused = []

    def start(self):
        try:
            self.iid = self.create()
        except fc.HaUnavailable as e:
            self.unavailable = str(e)
            log("Concord HA: not available: %s" % e)

    def create(self):
        self.seq += 1
        iid = self.cloud.create("failbench-%s-%d" % (self.engine, self.seq), ha=True,
                                engine=self.engine)
        self.cloud.wait_healthy(iid, HEAL_TIMEOUT)
        return iid

    def target(self):
        return self.cloud.target(self.iid)

    def kill_primary(self, scenario):
        view = self.cloud.view(self.iid)
        primary = self.cloud.primary(view)
        if primary is None:
            raise RuntimeError("Concord: no primary member: %s" % json.dumps(view))
        port = self.cloud.port(view)
        pm = fc.listener_pid(primary["address"], port)
        if pm is None:
            raise RuntimeError("Concord: nothing listens on the primary %s:%d" % (
                primary["address"], port))
        doomed = fc.process_tree(pm)
        agent = self.cloud.agent_of(primary)
        t = time.monotonic()
        if scenario == SILENT:
            self.paused = fc.pause_wal_senders(pm)
            if not self.paused:
                raise RuntimeError("Concord: the primary has no WAL sender")
            return t, primary["host"]
        if scenario == "paused":
            # The host is cut off rather than dead: its engine stops answering but its TCP
            # connections stay open (no RST tells anyone), and its agent is gone.
            self.paused = fc.signal_tree(pm, signal.SIGSTOP)
            agent.kill9()
            return t, primary["host"]
        if scenario == "host":
            agent.kill9()
        fc.signal_tree(pm, signal.SIGKILL)
        if not fc.wait_gone(doomed, 20):
            raise RuntimeError("Concord: the engine's processes survived kill -9")
        return t, primary["host"]

    def resume_paused(self):
        for pid in self.paused:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.paused = []

    def revive(self, killed_host):
        self.resume_paused()
        agent = self.cloud.agents[killed_host]
        if not agent.proc or agent.proc.poll() is not None:
            agent.start()

    def diagnose(self, killed_host):
        del killed_host
        return "instance %s" % json.dumps(self.cloud.view(self.iid).get("high_availability"))

    def restore(self, killed_host, scenario):
        self.resume_paused()
        agent = self.cloud.agents[killed_host]
        if scenario in ("host", "paused") or not agent.proc or agent.proc.poll() is not None:
            agent.start()
        try:
            self.cloud.wait_healthy(self.iid, HEAL_TIMEOUT)
        except RuntimeError as e:
            log("Concord: %s; recreating the instance" % e)
            self.cloud.delete(self.iid)
            self.iid = self.create()

    def standby_missing(self, timeout=60.0):
        """Ids on the primary (through the endpoint) that the standby (the old primary, which
        rejoined) still lacks after up to `timeout` s: what a member that follows in place but
        skipped or lost a transaction would show (a rebuilt one has them all)."""
        view = self.cloud.view(self.iid)
        standby = [m for m in self.cloud.members(view) if m.get("role") == "standby"]
        if len(standby) != 1:
            return None
        on_standby = fc.Target(self.cloud.engine(view), standby[0]["address"],
                               self.cloud.port(view), "app", self.cloud.PASSWORD, "shop")
        want = set(fc.read_back(self.target())[0])  # no writer runs any more
        deadline = time.monotonic() + timeout
        while True:
            missing = want - set(fc.read_back(on_standby)[0])
            if not missing or time.monotonic() >= deadline:
                return len(missing)
            time.sleep(0.5)

    def copies(self):
        """Members copied anew so far (the agents' log lines of a rebuild), to tell an old
        primary that rejoined in place from one copied from the new primary."""
        return fc.count_log_lines([a.log_path for a in self.cloud.agents.values()],
                                  fc.REBUILD_LOG_LINES)

    def rewinds(self):
        """Members rewound onto their new upstream's history so far (PostgreSQL's pg_rewind)."""
        return fc.count_log_lines([a.log_path for a in self.cloud.agents.values()],
                                  fc.REWOUND_LOG_LINES)

    def stop(self):
        self.resume_paused()


# ---- one repetition --------------------------------------------------------------------------


def repetition(system, scenario, warmup, tail):
    target = system.target()
    fc.prepare_table(target, 120)
    writer = fc.Writer(target, connect_timeout=1.0, op_timeout=1.0, pause_after_error=0.05)
    writer.start()
    try:
        start = time.monotonic()
        wait_until(lambda: (time.monotonic() - start >= warmup and writer.acked_count() > 0,
                            writer.acked_count()), warmup + 60, "writes before the kill", 0.1)
        kill_t, killed = system.kill_primary(scenario)
        automatic = True
        try:
            wait_until(lambda: (writer.resumed_after(kill_t), writer.acked_count()),
                       RESUME_TIMEOUT, "writes resume after the kill", 0.1)
        except RuntimeError:
            # No automatic failover (Patroni refuses to promote a replica it believes lags
            # by more than maximum_lag_on_failover, for one). Bring the killed member back as
            # an operator would, keep writing, and still count what was lost.
            automatic = False
            log("  no automatic failover within %.0f s: %s; restarting %s" % (
                RESUME_TIMEOUT, system.diagnose(killed), killed))
            system.revive(killed)
            wait_until(lambda: (writer.resumed_after(kill_t), writer.acked_count()),
                       RESUME_TIMEOUT, "writes resume after restarting " + killed, 0.1)
        resumed = time.monotonic()
        while time.monotonic() - resumed < tail:
            time.sleep(0.1)
    finally:
        wlog = writer.stop()
    ids, has_key = fc.read_back(target, 120)
    res = fc.analyze(wlog, kill_t, ids, has_key)
    res["automatic"] = automatic
    return res, killed


def summarize(rows):
    ws = [r["window_s"] for r in rows if r["window_s"] is not None and r.get("automatic", True)]
    if not ws:
        return None
    return min(ws), statistics.median(ws), max(ws)


def fmt_s(x):
    return "%.2f" % x if x is not None else "-"


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of writes before a kill")
    ap.add_argument("--tail", type=float, default=5.0, help="seconds of writes after resuming")
    ap.add_argument("--only", choices=("patroni", "concord"), default=None)
    ap.add_argument("--concord-engines", default="postgresql,mariadb",
                    help="comma-separated: the engines of Concord's HA legs (Patroni's anchor "
                         "is PostgreSQL only)")
    ap.add_argument("--concord-scenarios", default=",".join(CONCORD_SCENARIOS),
                    help="comma-separated, of %s and %s (PostgreSQL only)" % (
                        ", ".join(CONCORD_SCENARIOS), SILENT))
    ap.add_argument("--results", default="")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="concord-bench-failover-")
    os.chmod(work, 0o755)
    patroni = Patroni(work) if args.only != "concord" else None
    engines = [e for e in args.concord_engines.split(",") if e]
    if any(e not in fc.ConcordHa.VERSIONS for e in engines):
        ap.error("--concord-engines: postgresql and/or mariadb")
    scenarios = [s for s in args.concord_scenarios.split(",") if s]
    if any(s not in CONCORD_SCENARIOS + (SILENT,) for s in scenarios):
        ap.error("--concord-scenarios: of %s" % ", ".join(CONCORD_SCENARIOS + (SILENT,)))
    cloud = fc.ConcordHa(CONCORD_POOL) if args.only != "patroni" and engines else None
    concords = {("concord" if e == "postgresql" else "concord-" + e): Concord(cloud, e)
                for e in (engines if cloud else [])}
    results = {}  # (system, mode, scenario) -> [analysis]
    notes = []
    failed = False
    started = datetime.datetime.utcnow()
    try:
        legs = []
        if patroni:
            log("starting Patroni (etcd, HAProxy, two nodes) in %s" % work)
            patroni.start()
            legs += [("patroni", "async", "node"), ("patroni", "sync", "node")]
        if cloud:
            log("starting Concord (all-in-one + agents db-a, db-b)")
            cloud.start()
        for name, concord in concords.items():
            mine = [sc for sc in scenarios if sc != SILENT or concord.engine == "postgresql"]
            concord.start()
            if concord.unavailable:
                notes.append("Concord HA (%s): not available (%s)" % (concord.engine,
                                                                      concord.unavailable))
                for sc in mine:
                    results[(name, "sync", sc)] = None
            else:
                legs += [(name, "sync", sc) for sc in mine]
        patroni_mode = "async"
        for rep in range(args.repeats):
            for system_name, mode, scenario in legs:
                system = patroni if system_name == "patroni" else concords[system_name]
                if system_name == "patroni" and mode != patroni_mode:
                    patroni.set_sync(mode == "sync")
                    patroni_mode = mode
                log("%s/%s/%s repetition %d: writing" % (system_name, mode, scenario, rep + 1))
                # Copies so far: the old primary may be copied anew as soon as its agent acts.
                before = system.copies() if system_name != "patroni" else 0
                rewound_before = system.rewinds() if system_name != "patroni" else 0
                res, killed = repetition(system, scenario, args.warmup, args.tail)
                res["killed"] = killed
                results.setdefault((system_name, mode, scenario), []).append(res)
                log("  %s %s: %s%s" % ("paused the WAL senders on" if scenario == SILENT
                                       else "killed", killed, fc.describe(res),
                                       "" if res["automatic"]
                                           else " (no automatic failover: restarted)"))
                if system_name == "patroni":
                    patroni.restore(killed, mode == "sync")
                else:
                    system.restore(killed, scenario)
                    copied = system.copies() - before
                    rewound = system.rewinds() - rewound_before
                    res["copied"] = copied
                    res["rewound"] = rewound
                    res["standby_missing"] = system.standby_missing()
                    log("  %s %s; rows of the primary it lacks: %s" % (
                        "standby" if scenario == SILENT else "old primary",
                        "copied anew from the primary" if copied
                        else "rewound onto the primary's history" if rewound
                        else "rejoined in place", res["standby_missing"]))
    except Exception as e:  # noqa: BLE001 - report, clean up, exit non-zero
        failed = True
        notes.append("FAILED: %s: %s" % (type(e).__name__, e))
        log("FAILED: %s: %s" % (type(e).__name__, e))
    finally:
        for concord in concords.values():
            concord.stop()
        if cloud:
            cloud.cleanup()
        if patroni:
            patroni.stop()
        shutil.rmtree(work, ignore_errors=True)

    table = render(results, notes, args, started)
    print(table)
    if args.results:
        with open(args.results, "w") as f:
            f.write(table)
        log("wrote %s" % args.results)
    return 1 if failed else 0


def render(results, notes, args, started):
    lines = ["# Database failover: Concord HA against Patroni (%s UTC)" %
             started.strftime("%Y-%m-%d %H:%M"), "",
             "bench/database/failover.sh --repeats %d; machine load at the end: %s." % (
                 args.repeats, open("/proc/loadavg").read().split()[0]),
             "Window: from the last acknowledged insert before the outage to the first one "
             "after it, as the client saw it through the endpoint (HAProxy for Patroni, the "
             "instance's address for Concord). Lost: acknowledged ids missing from the table "
             "read back through the endpoint afterwards.", "",
             "Repetitions without an automatic failover (writes did not resume within %.0f s "
             "of the kill; the harness then restarted the killed member) are counted apart and "
             "left out of the window figures; their lost writes are still counted." %
             RESUME_TIMEOUT, "",
             "| system | mode | scenario | repetitions | no automatic failover | "
             "window min / median / max (s) | lost acknowledged writes per repetition | "
             "in-doubt committed | unacked present | writes/s before the kill (median) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    medians = {}
    for (system, mode, scenario), rows in results.items():
        if rows is None:
            lines.append("| %s | %s | %s | not available | - | - | - | - | - | - |" % (
                system, mode, scenario))
            continue
        s = summarize(rows)
        if s:
            medians[(system, mode, scenario)] = s[1]
        rates = [r["acks_per_s_before_kill"] for r in rows if r["acks_per_s_before_kill"]]
        lines.append("| %s | %s | %s | %d | %d | %s | %s | %s | %s | %s |" % (
            system, mode, scenario, len(rows),
            sum(1 for r in rows if not r.get("automatic", True)),
            " / ".join(fmt_s(x) for x in s) if s else "no resume",
            ", ".join(str(len(r["lost"])) for r in rows),
            ", ".join(str(r["in_doubt_committed"]) for r in rows),
            ", ".join(str(len(r["unacked_present"])) for r in rows),
            "%.0f" % statistics.median(rates) if rates else "-"))
    lines.append("")
    for (system, mode, scenario), m in sorted(medians.items()):
        if not system.startswith("concord") or scenario == SILENT:
            continue
        for pmode in ("sync", "async"):
            p = medians.get(("patroni", pmode, "node"))
            if p:
                lines.append("Ratio of median windows, %s %s/%s to Patroni %s/node: %.3f" % (
                    system, mode, scenario, pmode, m / p))
    if not any(k[0].startswith("concord") for k in medians):
        lines.append("Ratio Concord/Patroni: not available (no Concord HA figures in this run).")
    for (system, mode, scenario), rows in sorted(results.items()):
        copied = [r["copied"] for r in rows or [] if "copied" in r]
        if copied and scenario == SILENT:
            lines.append("Standby copied anew after its silent link, %s %s/%s: %d of %d; rows "
                         "of the primary it lacked once healthy: %s" % (
                             system, mode, scenario, sum(1 for c in copied if c), len(copied),
                             ", ".join(str(r.get("standby_missing")) for r in rows)))
        elif copied:
            lines.append("Old primary copied anew instead of rejoining in place, %s %s/%s: %d of "
                         "%d" % (system, mode, scenario, sum(1 for c in copied if c), len(copied)))
            lines.append("Rows of the primary the old one lacked once healthy (60 s to catch "
                         "up), %s %s/%s: %s" % (system, mode, scenario, ", ".join(
                             str(r.get("standby_missing")) for r in rows if "copied" in r)))
            if "mariadb" in system:
                continue  # MariaDB has no rewind: a forked member is always copied
            rewound = [r.get("rewound", 0) and not r["copied"] for r in rows if "copied" in r]
            lines.append("Old primary rewound (pg_rewind) instead of copied, %s %s/%s: %d of %d" % (
                system, mode, scenario, sum(1 for r in rewound if r), len(rewound)))
    lines.append("")
    for n in notes:
        lines.append("- " + n)
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
