"""A write client for failover tests and benchmarks: single-row autocommit inserts as fast as
one connection allows, through one address (an endpoint), surviving the failover it measures.

Shared by tests/integration/test_database_failover.py and bench/database/failover.py. Runs on
/usr/bin/python3 (Debian's python3-psycopg2 and python3-pymysql).

Writing
  Writer(...).start() inserts id = 1, 2, 3, ... into failover_log(id, at). On any error it
  reconnects (connect timeout ~1 s) and retries the SAME id until it is acknowledged or the run
  ends, so the ids the client saw acknowledged are a gap-free prefix. Every acknowledgement is
  logged with its time.monotonic() (CLOCK_MONOTONIC: comparable across processes on one
  machine, so a harness in another process can say when it killed something).

  Each statement has a client-side deadline (op_timeout): a primary that is paused (SIGSTOP) or
  cut off keeps its TCP connections open and acknowledges nothing, and without a deadline the
  client would wait forever on a socket nobody will answer. PostgreSQL runs on psycopg2's
  asynchronous connections (poll() against our own deadline); MariaDB through PyMySQL's
  read/write timeouts.

Why failover_log has a PRIMARY KEY on id
  A commit is "in doubt" when the connection breaks after the INSERT was sent: it may or may not
  have committed (e.g. the old primary committed and its synchronous standby already had it,
  then died before answering). The client retries the same id. Without a key, such a retry
  would leave the id twice, and a duplicate would be a normal outcome of at-least-once
  retrying, not a database fault, so a test could not tell the two apart. With the key, the
  database itself resolves the doubt: the retry either inserts the row (the first attempt did
  not survive) or fails with a unique violation (it did; counted as acknowledged and as
  `in_doubt_committed`). A unique violation on an id whose earlier attempts never reached a
  server (or on its first attempt) is not a resolution but a second writer or a table that was
  not empty: counted in `unexpected_conflicts`, which a test asserts is zero. The read-back
  still counts ids present more than once, and checks that the key exists, so a schema without
  the key cannot make that count vacuous.

Analysis
  analyze(log, kill_time, present_ids) reports the last acknowledgement before the kill, the
  first one after the outage, the window between them, and from the table read back through the
  endpoint: acknowledged ids missing (lost: the failure the tests exist to catch), ids present
  more than once, and unacknowledged ids present (an in-doubt commit that survived: fine).

Command line (for a manual run):
  failover_client.py --engine postgresql --host H --port P --user U --password W --database D
                     [--duration S] [--setup]
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

POSTGRES_UNIQUE_VIOLATION = "23505"
MARIADB_DUP_ENTRY = 1062


class Target:
    """Where the client writes: one address (the endpoint), one account, one database."""

    def __init__(self, engine, host, port, user, password, database, sslmode="disable"):
        if engine not in ("postgresql", "mariadb"):
            raise ValueError("engine must be postgresql or mariadb, not %r" % engine)
        self.engine = engine
        self.host = host
        self.port = int(port)
        self.user = user
        self.password = password
        self.database = database
        self.sslmode = sslmode

    def __repr__(self):
        return "%s://%s@%s:%d/%s" % (self.engine, self.user, self.host, self.port, self.database)


class DuplicateKey(Exception):
    pass


class OpTimeout(Exception):
    pass


class _PgConn:
    """A psycopg2 asynchronous connection driven against a deadline (autocommit by nature)."""

    def __init__(self, t, timeout):
        import psycopg2
        import psycopg2.extensions
        self._pg = psycopg2
        self._ext = psycopg2.extensions
        self.conn = psycopg2.connect(host=t.host, port=t.port, user=t.user, password=t.password,
                                     dbname=t.database, connect_timeout=max(1, int(timeout)),
                                     sslmode=t.sslmode, application_name="failover_client",
                                     async_=1)
        self._wait(time.monotonic() + timeout)

    def _wait(self, deadline):
        while True:
            state = self.conn.poll()
            if state == self._ext.POLL_OK:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise OpTimeout("no answer within the client deadline")
            if state == self._ext.POLL_READ:
                select.select([self.conn.fileno()], [], [], left)
            elif state == self._ext.POLL_WRITE:
                select.select([], [self.conn.fileno()], [], left)
            else:
                raise self._pg.OperationalError("bad poll state %r" % state)

    def execute(self, sql, args, timeout):
        cur = self.conn.cursor()
        try:
            cur.execute(sql, args)
            self._wait(time.monotonic() + timeout)
        except self._pg.IntegrityError as e:
            if e.pgcode == POSTGRES_UNIQUE_VIOLATION:
                raise DuplicateKey(str(e).strip()) from e
            raise
        rows = cur.fetchall() if cur.description else []
        cur.close()
        return rows

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may raise anything
            pass


class _MariaConn:
    def __init__(self, t, timeout):
        import pymysql
        self._my = pymysql
        self.conn = pymysql.connect(host=t.host, port=t.port, user=t.user, password=t.password,
                                    database=t.database, connect_timeout=max(1, timeout),
                                    read_timeout=max(1, timeout), write_timeout=max(1, timeout),
                                    autocommit=True)

    def execute(self, sql, args, timeout):
        del timeout  # fixed at connect time (PyMySQL's read/write timeouts)
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        except self._my.err.IntegrityError as e:
            if e.args and e.args[0] == MARIADB_DUP_ENTRY:
                raise DuplicateKey(str(e)) from e
            raise

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass


# A database member copied anew (PostgreSQL, MariaDB) rather than following in place: the
# lines its engine logs (docs/design/database.md, "Demotion").
REBUILD_LOG_LINES = ("rebuilding from upstream", "its data is made anew from there")
# A forked PostgreSQL member taken back onto the new primary's history by pg_rewind instead.
REWOUND_LOG_LINES = ("rewound onto upstream",)


def read_cmdline(pid):
    """The process's /proc cmdline (NUL-separated), b"" when it is gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def pause_wal_senders(postmaster_pid):
    """SIGSTOPs the PostgreSQL postmaster's WAL senders: its standbys still answer but hear
    nothing, and nothing resets their connections (a silent link). Returns the pids paused
    (empty when there is no sender)."""
    senders = [p for p in process_tree(postmaster_pid) if b"walsender" in read_cmdline(p)]
    for p in senders:
        os.kill(p, signal.SIGSTOP)
    return senders


def count_log_lines(paths, texts):
    """How many lines of the files at `paths` hold one of `texts` (a missing file: none)."""
    n = 0
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                n += sum(1 for line in f if any(t in line for t in texts))
        except OSError:
            pass
    return n


def connect(target, timeout=1.0):
    """A connection to `target` (raises on failure; the caller decides whether to retry)."""
    if target.engine == "postgresql":
        return _PgConn(target, timeout)
    return _MariaConn(target, timeout)


def _sql(target):
    if target.engine == "postgresql":
        return {
            "create": "CREATE TABLE IF NOT EXISTS failover_log (id bigint PRIMARY KEY, "
                      "at timestamptz NOT NULL DEFAULT clock_timestamp())",
            "insert": "INSERT INTO failover_log (id) VALUES (%s)",
            "has_key": "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                       "WHERE c.relname = 'failover_log' AND i.indisprimary",
        }
    return {
        "create": "CREATE TABLE IF NOT EXISTS failover_log (id BIGINT PRIMARY KEY, "
                  "at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
        "insert": "INSERT INTO failover_log (id) VALUES (%s)",
        "has_key": "SELECT count(*) FROM information_schema.table_constraints WHERE "
                   "table_schema = DATABASE() AND table_name = 'failover_log' AND "
                   "constraint_type = 'PRIMARY KEY'",
    }


def with_retries(target, fn, timeout=60.0, op_timeout=5.0):
    """fn(conn) on a fresh connection, retried until it succeeds or `timeout` passes (for the
    set-up and the read-back, which run while the endpoint may still be settling)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        conn = None
        try:
            conn = connect(target, min(op_timeout, 5.0))
            return fn(conn)
        except Exception as e:  # noqa: BLE001 - any driver error means "not yet"
            last = e
        finally:
            if conn is not None:
                conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError("%r: not reachable within %.0f s: %s" % (target, timeout, last))
        time.sleep(0.25)


def prepare_table(target, timeout=60.0):
    """Creates failover_log (empty, with its key) through the endpoint."""
    sql = _sql(target)

    def run(conn):
        conn.execute(sql["create"], None, 10.0)
        conn.execute("DELETE FROM failover_log", None, 30.0)
        return True

    return with_retries(target, run, timeout, 10.0)


def read_back(target, timeout=60.0):
    """(ids in the table, with repeats, in id order; whether the table has its primary key)."""
    sql = _sql(target)

    def run(conn):
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM failover_log ORDER BY id", None,
                                               30.0)]
        has_key = int(conn.execute(sql["has_key"], None, 10.0)[0][0]) > 0
        return ids, has_key

    return with_retries(target, run, timeout, 30.0)


class Writer:
    """The write loop on its own thread. `log` (after stop()) holds:
    acks: [(id, monotonic time, how)] with how "insert" or "in_doubt_committed";
    errors: [(id, monotonic time, phase, message)] with phase "connect" or "statement"
    (a statement error after the INSERT was sent leaves that attempt in doubt)."""

    def __init__(self, target, connect_timeout=1.0, op_timeout=1.0, pause_after_error=0.02):
        self.target = target
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self.pause_after_error = pause_after_error
        self.acks = []
        self.errors = []
        self.unexpected_conflicts = []
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        self.next_id = 1

    def start(self):
        self._thread = threading.Thread(target=self._run, name="failover-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=30.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("the writer did not stop within %.0f s" % timeout)
        return self.log()

    def log(self):
        with self._lock:
            return {"acks": list(self.acks), "errors": list(self.errors),
                    "unexpected_conflicts": list(self.unexpected_conflicts),
                    "next_id": self.next_id}

    def acked_count(self):
        with self._lock:
            return len(self.acks)

    def last_ack_time(self):
        with self._lock:
            return self.acks[-1][1] if self.acks else None

    def acks_after(self, t):
        with self._lock:
            return sum(1 for a in self.acks if a[1] > t)

    def resumed_after(self, t, quiet=5.0):
        """Whether writes resumed after an outage that began at t: an acknowledgement after the
        first error at or after t; or, when no error came at all, acknowledgements still
        arriving `quiet` seconds after t (the failure was invisible to the client)."""
        with self._lock:
            errs = [e[1] for e in self.errors if e[1] >= t]
            if errs:
                return any(a[1] > errs[0] for a in self.acks)
            return any(a[1] > t + quiet for a in self.acks)

    def _run(self):
        insert = _sql(self.target)["insert"]
        conn = None
        in_doubt = False  # an earlier attempt of next_id was sent and got no answer
        while not self._stop.is_set():
            i = self.next_id
            if conn is None:
                try:
                    conn = connect(self.target, self.connect_timeout)
                except Exception as e:  # noqa: BLE001 - every driver error means reconnect
                    with self._lock:
                        self.errors.append((i, time.monotonic(), "connect", _short(e)))
                    self._stop.wait(self.pause_after_error)
                    continue
            try:
                conn.execute(insert, (i,), self.op_timeout)
                how = "insert"
            except DuplicateKey as e:
                if not in_doubt:
                    with self._lock:
                        self.unexpected_conflicts.append((i, time.monotonic(), _short(e)))
                how = "in_doubt_committed"
            except Exception as e:  # noqa: BLE001
                with self._lock:
                    self.errors.append((i, time.monotonic(), "statement", _short(e)))
                in_doubt = True
                conn.close()
                conn = None
                self._stop.wait(self.pause_after_error)
                continue
            with self._lock:
                self.acks.append((i, time.monotonic(), how))
                self.next_id = i + 1
            in_doubt = False
        if conn is not None:
            conn.close()


def _short(e):
    text = " ".join(str(e).split())
    return "%s: %s" % (type(e).__name__, text[:200])


def analyze(log, kill_time, present_ids, has_key=True):
    """The outage and the data check of one run.

    The window starts at the last acknowledgement before the outage: the last ack at or before
    the kill, or, when replies already on the wire were still read after the kill, the last ack
    before the first error after it. It ends at the first acknowledgement after that point."""
    acks = log["acks"]
    errors_after = [e for e in log["errors"] if e[1] >= kill_time]
    outage_start = errors_after[0][1] if errors_after else kill_time
    before = [a for a in acks if a[1] < outage_start] if errors_after else \
        [a for a in acks if a[1] <= kill_time]
    last_before = before[-1] if before else None
    after = [a for a in acks if a[1] > outage_start]
    first_after = after[0] if after else None
    acked = [a[0] for a in acks]
    counts = {}
    for i in present_ids:
        counts[i] = counts.get(i, 0) + 1
    acked_set = set(acked)
    lost = sorted(i for i in acked_set if i not in counts)
    dups = sorted(i for i, n in counts.items() if n > 1)
    unacked_present = sorted(i for i in counts if i not in acked_set)
    window = (first_after[1] - last_before[1]) if (first_after and last_before) else None
    # The write rate before the kill (over up to 3 s): commits per second differ a lot between
    # setups (synchronous commit, proxies), and a window means more next to it.
    span = min(3.0, kill_time - acks[0][1]) if acks else 0.0
    rate = (sum(1 for a in acks if kill_time - span <= a[1] <= kill_time) / span
            if span > 0 else None)
    return {
        "acked": len(acked),
        "kill_time": kill_time,
        "last_ack_before": last_before[0] if last_before else None,
        "last_ack_before_time": last_before[1] if last_before else None,
        "first_ack_after": first_after[0] if first_after else None,
        "first_ack_after_time": first_after[1] if first_after else None,
        "window_s": window,
        "acks_per_s_before_kill": rate,
        # Relative to the kill: when the client last and next got an answer, and when it first
        # saw an error (None: it saw none), to tell a slow failure detection from a slow
        # promotion or reconnection.
        "last_ack_before_kill_s": (last_before[1] - kill_time) if last_before else None,
        "first_error_after_kill_s": (errors_after[0][1] - kill_time) if errors_after else None,
        "first_ack_after_kill_s": (first_after[1] - kill_time) if first_after else None,
        "resumed": first_after is not None,
        "errors": len(log["errors"]),
        "in_doubt_committed": sum(1 for a in acks if a[2] == "in_doubt_committed"),
        "unexpected_conflicts": len(log["unexpected_conflicts"]),
        "rows": len(present_ids),
        "has_primary_key": has_key,
        "lost": lost,
        "duplicated": dups,
        "unacked_present": unacked_present,
    }


def describe(result):
    """One line for a test's or benchmark's output."""
    w = result["window_s"]

    def rel(k):
        return "%+.3f" % result[k] if result[k] is not None else "-"

    return ("acked %d, window %s (last ack #%s at %s s from the kill, first error at %s s, first "
            "ack #%s after at %s s), lost %d, duplicated %d, in-doubt committed %d, "
            "unacked present %d, errors %d" % (
                result["acked"], "%.3f s" % w if w is not None else "none (no resume)",
                result["last_ack_before"], rel("last_ack_before_kill_s"),
                rel("first_error_after_kill_s"), result["first_ack_after"],
                rel("first_ack_after_kill_s"), len(result["lost"]),
                len(result["duplicated"]), result["in_doubt_committed"],
                len(result["unacked_present"]), result["errors"]))


# ---- processes --------------------------------------------------------------------------------
# The harnesses kill what they started only: engines are found by the address they listen on
# (an instance member's own address) or by the root folder of an agent they started, and an
# engine is its postmaster plus its descendants.


def listener_pid(address, port):
    """The pid of the process listening on address:port, or None."""
    p = subprocess.run(["ss", "-Hltnp", "src", "%s:%d" % (address, port)], capture_output=True,
                       text=True, timeout=10)
    m = re.search(r"pid=(\d+)", p.stdout)
    return int(m.group(1)) if m else None


def _parents():
    """{pid: parent pid} of every live process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def process_tree(pid):
    """pid and all its live descendants. Not the process group: every PostgreSQL backend and
    auxiliary process calls setsid() (so the postmaster can signal each one's group), so a
    postmaster's group holds the postmaster alone."""
    parents = _parents()
    if pid not in parents:
        return []
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, p in parents.items() if p in frontier and c not in tree]
        tree += frontier
    return tree


def signal_tree(pid, sig):
    """Sends sig to pid first (a paused postmaster forks no new children), then to its
    descendants, again until no new one appears. Returns the pids signalled."""
    done = []
    for _ in range(20):
        fresh = [p for p in process_tree(pid) if p not in done] if done else [pid]
        if not fresh:
            break
        for p in fresh:
            try:
                os.kill(p, sig)
                done.append(p)
            except ProcessLookupError:
                pass
        if pid not in done:
            break
    return done


def wait_gone(pids, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists("/proc/%d" % p) and not _zombie(p)]
        if not pids:
            return True
        time.sleep(0.05)
    return False


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def database_root(state_dir):
    """The agent's engine root (src/compute/driver/database_driver.cc database_root())."""
    h = 14695981039346656037
    for c in os.path.normpath(os.path.abspath(state_dir)).encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "/var/lib/concord/database/%016x" % h


def reap_engines(state_dirs):
    """kill -9 every engine process under these agents' roots, then removes the roots (engines
    outlive their agent by design, so a harness must reap them itself)."""
    roots = [database_root(d) + "/" for d in state_dirs]
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(r in cmd for r in roots):
            pids.append(int(entry))
    for pid in pids:
        for sig in (signal.SIGKILL, signal.SIGCONT):  # SIGCONT: so a paused one dies now
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    wait_gone(pids, 10)
    import concord_launcher  # beside this file, as ConcordHa imports it

    for r in roots:
        concord_launcher.unmount_volumes_under(r)
        shutil.rmtree(r, ignore_errors=True)


# ---- a Concord cloud with two database hosts -------------------------------------------------


class HaUnavailable(Exception):
    """The server does not offer high availability (yet): the reason says what it answered."""


class ConcordHa:
    """`concord all-in-one` with its in-process agent disabled and external agents (by default
    hosts db-a and db-b, each with its own state folder and so its own engine root), plus
    helpers to create an HA instance and find and kill its members. Used by the failover test
    and the benchmark; imports concord_launcher and workloads from tests/integration."""

    HOSTS = ("db-a", "db-b")
    PASSWORD = "App-pw-1"
    VERSIONS = {"postgresql": "15", "mariadb": "10.11"}
    PORTS = {"postgresql": 5432, "mariadb": 3306}

    def __init__(self, address_pool, extra_server_args=(), hosts=HOSTS):
        self.hosts = tuple(hosts)
        import concord_launcher
        import workloads
        self._launcher = concord_launcher
        self._workloads = workloads
        with socket.socket() as probe:  # fixed: restarted agents must find the server again
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.srv = concord_launcher.Server(
            port=port, extra_args=["--agent.enabled=false", "--database.max_volume_gb=10",
                                   "--database.address_pool=" + address_pool,
                                   "--compute.down_after=3s",
                                   "--compute.heartbeat_interval=500ms"] + list(extra_server_args))
        self.agents = {}
        self.token = None
        self.project_id = None

    def start(self):
        self.srv.start()
        binary = self._launcher.binary()
        for host in self.hosts:
            cred = self._workloads.credential(binary, self.srv.data_dir, host)
            a = self._workloads.Agent(binary, self.srv.url, cred, host,
                                      os.path.join(self.srv.data_dir, "agents", host),
                                      ["--agent.drivers=database", "--agent.vcpus=8",
                                       "--agent.ram_mb=8192", "--agent.disk_gb=50"])
            self.agents[host] = a.start()
        token, body = self.srv.issue_token("admin", self.srv.admin_password, "admin")
        self.token = token
        self.project_id = body["project"]["id"]
        self.wait_hosts_registered()
        return self

    def wait_hosts_registered(self, timeout=60.0):
        """Every agent registers its host after probing its drivers (the database driver makes
        and mounts a test volume), a moment after it starts; an HA create before both are
        registered would find no second host for the standby."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.srv.request("GET", "/compute/v2.1/os-hypervisors/detail", token=self.token)
            up = {h["hypervisor_hostname"] for h in r.json().get("hypervisors", [])
                  if h.get("state") == "up"} if r.status == 200 else set()
            if up >= set(self.hosts):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("hosts %s not all registered within %.0f s (up: %s); agent logs:"
                                   "\n%s" % (list(self.hosts), timeout, sorted(up), "\n".join(
                                       a.log_tail(10) for a in self.agents.values())))
            time.sleep(0.2)

    def cleanup(self):
        try:
            for a in self.agents.values():
                a.kill9()
            self.srv.kill9()
        finally:
            reap_engines([a.state_dir for a in self.agents.values()])
            self.srv.cleanup()

    def trove(self, method, path, body=None):
        r = self.srv.request(method, "/database/v1.0/%s%s" % (self.project_id, path), body,
                             token=self.token)
        if r.status == 401:  # a long benchmark outlives a token
            self.token = self.srv.admin_token()
            r = self.srv.request(method, "/database/v1.0/%s%s" % (self.project_id, path), body,
                                 token=self.token)
        return r

    def flavor_id(self, name="m1.tiny"):
        flavors = self.trove("GET", "/flavors").json()["flavors"]
        return [f["id"] for f in flavors if f["name"] == name][0]

    def create(self, name, ha=True, engine="postgresql"):
        """Creates a PostgreSQL 15 or MariaDB 10.11 instance (database shop, user app) and
        returns its id. Raises HaUnavailable when the server refuses high_availability or
        ignores it."""
        body = {"instance": {
            "name": name, "flavorRef": self.flavor_id(), "volume": {"size": 1},
            "datastore": {"type": engine, "version": self.VERSIONS[engine]},
            "databases": [{"name": "shop"}],
            "users": [{"name": "app", "password": self.PASSWORD,
                       "databases": [{"name": "shop"}]}]}}
        if ha:
            body["instance"]["high_availability"] = True
        r = self.trove("POST", "/instances", body)
        if r.status == 400 and ha and "high_availability" in r.body.decode(errors="replace"):
            raise HaUnavailable("the server refuses high_availability: %s" % r.body[:300])
        if r.status != 200:
            raise RuntimeError("create %s: %r" % (name, r))
        inst = r.json()["instance"]
        if ha and not isinstance(self.view(inst["id"]).get("high_availability"), dict):
            self.delete(inst["id"])
            raise HaUnavailable("the server accepted high_availability but ignores it (no "
                                "high_availability block in the instance view)")
        return inst["id"]

    def view(self, iid):
        r = self.trove("GET", "/instances/" + iid)
        if r.status != 200:
            raise RuntimeError("GET instance %s: %r" % (iid, r))
        return r.json()["instance"]

    def delete(self, iid, timeout=120.0):
        self.trove("DELETE", "/instances/" + iid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.trove("GET", "/instances/" + iid).status == 404:
                return
            time.sleep(0.5)
        raise RuntimeError("instance %s not deleted within %.0f s" % (iid, timeout))

    def engine(self, view):
        return (view.get("datastore") or {}).get("type") or "postgresql"

    def port(self, view):
        return view.get("port") or self.PORTS[self.engine(view)]

    def target(self, iid, sslmode="disable"):
        v = self.view(iid)
        return Target(self.engine(v), v["ip"][0], self.port(v), "app", self.PASSWORD, "shop",
                      sslmode)

    @staticmethod
    def members(view):
        return (view.get("high_availability") or {}).get("members") or []

    def primary(self, view):
        ps = [m for m in self.members(view) if m.get("role") == "primary"]
        return ps[0] if len(ps) == 1 else None

    def healthy(self, iid, ha=True):
        """(healthy?, view): ACTIVE/HEALTHY and, for HA, one primary and one standby on two
        hosts whose engines listen, the standby synchronous (the only legal failover target:
        killing the primary before that would test nothing but the refusal to fail over)."""
        v = self.view(iid)
        if v.get("status") not in ("ACTIVE", "HEALTHY"):
            return False, v
        if not ha:
            return True, v
        ms = self.members(v)
        roles = sorted(m.get("role") for m in ms)
        hosts = {m.get("host") for m in ms}
        if roles != ["primary", "standby"] or len(hosts) != 2:
            return False, v
        if not all(m.get("synchronous") for m in ms if m.get("role") == "standby"):
            return False, v
        port = self.port(v)
        return all(listener_pid(m["address"], port) for m in ms), v

    def wait_healthy(self, iid, timeout, ha=True):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            ok, last = self.healthy(iid, ha)
            if ok:
                return last
            if last.get("status") == "ERROR":
                raise RuntimeError("instance %s went to ERROR: %s" % (iid, json.dumps(last)))
            time.sleep(0.5)
        raise RuntimeError("instance %s not healthy within %.0f s: %s" % (
            iid, timeout, json.dumps(last)))

    def engine_pid(self, address, port=5432):
        return listener_pid(address, port)

    def agent_of(self, member):
        return self.agents[member["host"]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--engine", default="postgresql", choices=("postgresql", "mariadb"))
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--sslmode", default="disable")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--setup", action="store_true", help="create/empty failover_log first")
    a = ap.parse_args(argv)
    port = a.port or (5432 if a.engine == "postgresql" else 3306)
    t = Target(a.engine, a.host, port, a.user, a.password, a.database, a.sslmode)
    if a.setup:
        prepare_table(t)
    w = Writer(t).start()
    start = time.monotonic()
    time.sleep(a.duration)
    log = w.stop()
    ids, has_key = read_back(t)
    res = analyze(log, start, ids, has_key)
    res.pop("lost")
    res.pop("unacked_present")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
