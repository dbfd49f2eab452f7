"""Read replica promotion (Trove's switchover) through Concord against the raw engine switched
over by hand, PostgreSQL 15 and MariaDB 10.11, with the same write client.

Concord: the real `concord all-in-one` (its in-process agent); per engine, one instance (the
primary: --flavor, --volume-gb, a database and an app user) and one read replica of it
(`"replica_of"`), created through the Trove API, both ACTIVE and the replica holding the
primary's table before the first round. A round promotes the current replica:
POST /instances/{replica}/action {"promote_to_replica_source": {}}. The server first tells the
old primary to become a replica of the promoted one; its agent stops the engine, sets its data
aside and reports a fencing acknowledgement; only then is the replica promoted
(docs/design/database.md, "Actions", *Promote*). The next round promotes the other way (the old
primary, by then the new one's replica again): no instance is made per round.

Raw anchor: the same engine, two servers run by hand as the concord-db user on two 127.x
addresses of their own (not Concord's pool), at the engine's defaults:
* PostgreSQL: initdb (a replication role, the app role and database), a standby made with
  pg_basebackup -R streaming from it. Switchover: `pg_ctl stop -m fast` of the primary (its
  walsenders send every record, the shutdown checkpoint included, before it exits), then
  `SELECT pg_promote()` (waits until promoted) on the standby. The old primary then becomes the
  new one's standby again: its folder emptied and copied anew with pg_basebackup -R (pg_rewind
  would need wal_log_hints or data checksums, not defaults), started.
* MariaDB: two mariadbd with log-bin, log-slave-updates and distinct server ids, the replica
  following with CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos, read_only=1. Switchover:
  SET GLOBAL read_only=1 on the primary, MASTER_GTID_WAIT(its @@gtid_binlog_pos) on the
  replica, STOP SLAVE, RESET SLAVE ALL, SET GLOBAL read_only=0 there. The old primary then
  follows the new one (gtid_slave_pos set to its own @@gtid_binlog_pos, CHANGE MASTER TO ...
  MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, START SLAVE): nothing is copied.

A round, the same on both sides (the order of Concord and the anchor alternates from one
repetition to the next, so the shared machine's noise hits both alike): failover_log is emptied
through the primary's address and its emptiness awaited on the replica; a writer
(tests/integration/failover_client.py's Writer, given both addresses: it inserts single-row
autocommit ids as fast as it can into the address that answered last and, on any error of an
id's attempt, retries the same id on the other address, pausing only once both failed) runs
--warmup seconds against the primary; then the switchover (the POST; the anchor's commands),
timed from sending it to its answer (the 202; the last command's return). Writes must resume on
the new primary within 180 s; the writer goes on for --tail seconds more and until the old
primary holds the first id the new one took as a fresh insert (it replicates from it:
"follows"; not an in-doubt retry, whose row may be the old primary's own last commit). For
Concord, both instances' views must then be ACTIVE, the promoted one with no replica_of and the
old primary with replica_of the promoted one. The old primary should then hold every row of the
new one; rows still missing there 60 s after the writes stopped are counted (ids and the
engines' replication state logged) and the run goes on. Then the table is read back on the new
primary.

Figures per round: the window (from the last write acknowledged on the old primary to the
first acknowledged on the new one, each acknowledgement timed with time.monotonic()); the
switchover call (Concord: POST to 202); from sending the switchover to the first write
acknowledged on the new primary; from the switchover to the old primary following; acknowledged
ids missing on the new primary (lost). Also counted, as checks that should stay at 0: writes
acknowledged by the replica before the switchover was sent, by the old primary after the first
one on the new primary (two writable primaries), duplicates, rows of the new primary that never
reach the old one (a replica that silently differs from its primary), and, from the server's
log, fence waits that ran out ("neither applied nor fenced in time", the bounded wait of
database.apply_wait_ms; before the fencing acknowledgement every PostgreSQL promote ended so).
Prints one table per engine (min / median / max) and the Concord / raw ratio of the median
windows. Standard library plus Debian's python3-psycopg2 and python3-pymysql (failover_client's
drivers), on /usr/bin/python3; reuses bench/database/replica.py's, backup.py's and
provision.py's server start-up and Trove helpers.
"""
import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backup  # noqa: E402  (imports provision, which puts tests/integration on the path)
import replica  # noqa: E402
from backup import (APP_DB, APP_PW, APP_USER, checked, emit, log, owned_dir,  # noqa: E402
                    run_cleanups, run_header, stats_row, stop_postgres)
from provision import DB_USER, ENGINES, PG_BIN, as_db_user, percentile  # noqa: E402
import failover_client as fc  # noqa: E402

PORTS = {"postgresql": 5432, "mariadb": 3306}
MARIADB = "/usr/bin/mariadb"
REPL_USER = "replicator"
REPL_PW = "Repl-pw-1"
RESUME_TIMEOUT = 180.0
# Seconds the old primary, once it follows, may take to hold every row of the new primary
# after the writer stopped; rows still missing then are counted as missing on it.
ROWS_SETTLE = 60.0
# Concord's bounded wait for the old primary's fencing (database.apply_wait_ms): its log line.
FENCE_TIMEOUT_LINE = "neither applied nor fenced in time"


# ---- the writer --------------------------------------------------------------------------------


class SwitchWriter(fc.Writer):
    """failover_client.Writer over two addresses (the primary's first, then the replica's): the
    same ids, retries, in-doubt resolution and log, except that an id whose attempt fails is
    retried on the other address at once, and the writer pauses (pause_after_error) only when
    every address failed in a row. Each acknowledgement carries the index of the address that
    gave it (acks: (id, time, how, address index)); errors too (a 5th element)."""

    def __init__(self, targets, **kw):
        super().__init__(targets[0], **kw)
        self.targets = list(targets)

    def acks_on(self, index, after=None):
        with self._lock:
            return [a for a in self.acks if a[3] == index and (after is None or a[1] > after)]

    def _run(self):
        insert = fc._sql(self.targets[0])["insert"]
        conns = [None] * len(self.targets)
        cur = 0
        failed_in_a_row = 0
        in_doubt = False  # an earlier attempt of next_id was sent (anywhere) and got no answer

        def failed(phase, e):
            nonlocal cur, failed_in_a_row
            with self._lock:
                self.errors.append((self.next_id, time.monotonic(), phase, fc._short(e), cur))
            cur = (cur + 1) % len(self.targets)
            failed_in_a_row += 1
            if failed_in_a_row % len(self.targets) == 0:
                self._stop.wait(self.pause_after_error)

        while not self._stop.is_set():
            i = self.next_id
            if conns[cur] is None:
                try:
                    conns[cur] = fc.connect(self.targets[cur], self.connect_timeout)
                except Exception as e:  # noqa: BLE001 - every driver error means: the other one
                    failed("connect", e)
                    continue
            try:
                conns[cur].execute(insert, (i,), self.op_timeout)
                how = "insert"
            except fc.DuplicateKey as e:
                if not in_doubt:
                    with self._lock:
                        self.unexpected_conflicts.append((i, time.monotonic(), fc._short(e)))
                how = "in_doubt_committed"
            except Exception as e:  # noqa: BLE001
                in_doubt = True
                conns[cur].close()
                conns[cur] = None
                failed("statement", e)
                continue
            with self._lock:
                self.acks.append((i, time.monotonic(), how, cur))
                self.next_id = i + 1
            in_doubt = False
            failed_in_a_row = 0
        for c in conns:
            if c is not None:
                c.close()


def count_rows(target, timeout=2.0):
    """The rows of failover_log through `target`, or None when it does not answer (yet)."""
    conn = None
    try:
        conn = fc.connect(target, timeout)
        return int(conn.execute("SELECT count(*) FROM failover_log", None, timeout)[0][0])
    except Exception:  # noqa: BLE001 - any driver error means "not yet"
        return None
    finally:
        if conn is not None:
            conn.close()


def probe_id(target, i, timeout=2.0):
    """(whether failover_log holds id i through `target`, what it answered: the count or the
    error)."""
    conn = None
    try:
        conn = fc.connect(target, timeout)
        n = int(conn.execute("SELECT count(*) FROM failover_log WHERE id = %s", (i,),
                             timeout)[0][0])
        return n > 0, "count %d" % n
    except Exception as e:  # noqa: BLE001 - any driver error means "not yet"
        return False, fc._short(e)
    finally:
        if conn is not None:
            conn.close()


def wait_for(fn, timeout, what, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        ok, last = fn()
        if ok:
            return last
        if time.monotonic() > deadline:
            raise RuntimeError("%s: not within %.0f s (last: %s)" % (what, timeout, last))
        time.sleep(interval)


# ---- one round ---------------------------------------------------------------------------------


def round_(side, warmup, tail, timeout):
    """One switchover of `side` (ConcordPair or a raw pair) under the writer; the figures."""
    old_t, new_t = side.targets()
    fc.prepare_table(old_t, 120)
    wait_for(lambda: (lambda n: (n == 0, n))(count_rows(new_t)), timeout,
             "%s: the replica has the primary's (empty) failover_log" % side.name)
    writer = SwitchWriter([old_t, new_t], connect_timeout=1.0, op_timeout=1.0,
                          pause_after_error=0.02)
    writer.start()
    try:
        start = time.monotonic()
        wait_for(lambda: (time.monotonic() - start >= warmup and writer.acked_count() > 0,
                          writer.acked_count()), warmup + 60, "%s: writes before the "
                 "switchover" % side.name, 0.05)
        t0 = time.monotonic()
        call_s = side.switchover()
        try:
            first_new = wait_for(lambda: (lambda a: (bool(a), a[0] if a else None))(
                writer.acks_on(1, t0)), RESUME_TIMEOUT, "%s: writes on the new primary after "
                                     "the switchover" % side.name, 0.02)
        except RuntimeError as e:
            last = writer.log()["errors"][-3:]
            raise RuntimeError("%s; the writer's last errors: %s%s" % (e, last,
                                                                        side.diagnose())) from e
        side.rejoin()  # the anchor's by-hand step; Concord's happens by itself
        # The old primary follows once it holds an id the new primary took as a fresh insert
        # (not an in-doubt retry: that row may be the old primary's own last commit).
        probe = wait_for(lambda: (lambda a: (bool(a), a[0] if a else None))(
            [a for a in writer.acks_on(1, t0) if a[2] == "insert"]), RESUME_TIMEOUT,
                         "%s: a fresh insert on the new primary" % side.name, 0.02)
        follow_s = None
        answers = {}  # what the old primary answered, first and last time seen
        deadline = time.monotonic() + timeout
        while follow_s is None or time.monotonic() - first_new[1] < tail:
            side.observe()
            if follow_s is None:
                found, answer = probe_id(old_t, probe[0])
                now = time.monotonic() - t0
                answers.setdefault(answer, [now, now])[1] = now
                if found:
                    follow_s = now
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "%s: the old primary does not follow the new one (no id %d) %.0f s after "
                    "the switchover; it answered (s from the switchover, first-last): %s%s" % (
                        side.name, probe[0], timeout, "; ".join(
                            "%r %.1f-%.1f" % (a, t[0], t[1]) for a, t in sorted(
                                answers.items(), key=lambda x: x[1][0])), side.diagnose()))
            time.sleep(0.1)
    finally:
        wlog = writer.stop()
    side.settled(timeout)
    # The old primary streams from the new one by now: every row of the new primary should
    # reach it within a moment of the writer stopping. The ones that do not are counted (and
    # the engines' state logged), not waited for: the next round empties the table anyway.
    final = count_rows(new_t, 10)
    missing = []
    try:
        wait_for(lambda: (lambda n: (n == final, n))(count_rows(old_t)), ROWS_SETTLE,
                 "%s: the old primary has the new one's %s rows" % (side.name, final))
    except RuntimeError as e:
        missing = sorted(set(fc.read_back(new_t, 60)[0]) - set(fc.read_back(old_t, 60)[0]))
        log("%s: %s; ids missing there: %d, %s .. %s%s" % (
            side.name, e, len(missing), missing[:5], missing[-5:], side.diagnose()))
    ids, has_key = fc.read_back(new_t, 120)
    res = fc.analyze(wlog, t0, ids, has_key)
    acks = wlog["acks"]
    old_acks = [a for a in acks if a[3] == 0]
    new_acks = [a for a in acks if a[3] == 1]
    before = [a for a in old_acks if a[1] < first_new[1]]
    if not before:
        raise RuntimeError("%s: no write acknowledged by the old primary" % side.name)
    last_old = before[-1]
    res.update({
        "window": first_new[1] - last_old[1],
        "call": call_s,
        "to_first": first_new[1] - t0,
        "follow": follow_s,
        "last_old_to_t0": last_old[1] - t0,
        "replica_acks_before": sum(1 for a in new_acks if a[1] < t0),
        "old_acks_after_new": sum(1 for a in old_acks if a[1] > first_new[1]),
        "errors_by_phase": sorted({e[2] + ":" + e[3].split(":")[0] for e in wlog["errors"]}),
        "old_missing": missing,
    })
    return res


# ---- Concord -----------------------------------------------------------------------------------


class ConcordPair:
    """A Concord instance and its read replica; a switchover promotes the replica."""

    def __init__(self, concord, engine, flavor, volume_gb, live, timeout):
        self.concord = concord
        self.engine = engine
        self.name = "concord " + engine
        self.statuses = set()
        self.primary = concord.create_primary(flavor, volume_gb, engine)
        live.append(self.primary)
        concord.wait_instance(self.primary, timeout)
        t, inst = concord.create_replica(self.primary, live, timeout)
        self.replica = inst["id"]
        log("%s: primary %s, replica %s ACTIVE %.1f s after its POST" % (
            self.name, self.primary, self.replica, t))

    def view(self, iid, role=None):
        r = self.concord.trove("GET", "/instances/" + iid)
        if r.status != 200:
            raise RuntimeError("GET instance %s: %r" % (iid, r))
        v = r.json()["instance"]
        if role:
            self.statuses.add("%s %s/%s" % (role, v.get("status"), v.get("operating_status")))
        return v

    def target(self, iid):
        v = self.view(iid)
        return fc.Target(self.engine, v["ip"][0], v.get("port") or PORTS[self.engine], APP_USER,
                         APP_PW, APP_DB)

    def targets(self):
        return self.target(self.primary), self.target(self.replica)

    def fence_timeouts(self):
        return fc.count_log_lines([self.concord.srv.log_path], [FENCE_TIMEOUT_LINE])

    def rebuilds(self):
        return fc.count_log_lines([self.concord.srv.log_path], fc.REBUILD_LOG_LINES)

    def switchover(self):
        t0 = time.monotonic()
        r = self.concord.trove("POST", "/instances/%s/action" % self.replica,
                               {"promote_to_replica_source": {}})
        took = time.monotonic() - t0
        if r.status != 202:
            raise RuntimeError("promote %s: %r\n%s" % (self.replica, r,
                                                       self.concord.srv.log_tail(30)))
        self.primary, self.replica = self.replica, self.primary
        return took

    def rejoin(self):
        pass  # the server's and agents' job

    def observe(self):
        """The views' statuses while the old primary rejoins (a transient one is recorded)."""
        self.view(self.primary, "promoted")
        self.view(self.replica, "old primary")

    def settled(self, timeout):
        """Both ACTIVE, the promoted one a primary, the old one its replica."""
        def check():
            new, old = self.view(self.primary, "promoted"), self.view(self.replica, "old primary")
            ok = (new.get("status") == "ACTIVE" and old.get("status") == "ACTIVE" and
                  "replica_of" not in new and
                  (old.get("replica_of") or {}).get("id") == self.primary)
            return ok, "new %s %s, old %s replica_of %s" % (
                new.get("status"), new.get("operating_status"), old.get("status"),
                (old.get("replica_of") or {}).get("id"))
        wait_for(check, timeout, "%s: both ACTIVE, the old primary the new one's replica"
                 % self.name)

    def diagnose(self):
        """The two views and the server log's last lines (the endpoints' "backend unreachable"
        warnings of the writer's retries left out)."""
        views = []
        for iid in (self.primary, self.replica):
            try:
                v = self.view(iid)
                views.append("%s: %s/%s replica_of %s" % (
                    iid, v.get("status"), v.get("operating_status"),
                    (v.get("replica_of") or {}).get("id")))
            except Exception as ex:  # noqa: BLE001 - a diagnosis must not fail
                views.append("%s: %s" % (iid, ex))
        lines = [ln for ln in self.concord.srv.log_tail(400).splitlines()
                 if "backend" not in ln or "unreachable" not in ln]
        return "\nviews: %s\nserver log:\n%s%s" % ("; ".join(views), "\n".join(lines[-30:]),
                                                   "".join(engine_state(iid) for iid in (
                                                       self.replica, self.primary)))

    def delete(self):
        for iid in (self.replica, self.primary):
            self.concord.delete(iid)


def engine_state(iid):
    """An instance's engine folder on this host as the agent left it: its files, the markers'
    contents, the last lines of engine.log and the processes running from it."""
    try:
        d, _ = backup.engine_folder(iid)
    except Exception as ex:  # noqa: BLE001 - a diagnosis must not fail
        return "\nengine %s: %s" % (iid, ex)
    out = ["", "engine %s (%s): %s" % (iid, d, " ".join(sorted(os.listdir(d))))]
    for name in ("applied_revision", "fenced_revision", "replication_role",
                 "replication_upstream", "cloned"):
        try:
            with open(os.path.join(d, name), errors="replace") as f:
                out.append("  %s: %s" % (name, f.read().strip()[:200]))
        except OSError:
            pass
    try:
        with open(os.path.join(d, "engine.log"), errors="replace") as f:
            out += ["  engine.log: " + ln for ln in f.read().splitlines()[-15:]]
    except OSError:
        pass
    ps = subprocess.run(["ps", "-eo", "pid,etimes,args"], capture_output=True, text=True)
    out += ["  ps: " + ln.strip()[:200] for ln in ps.stdout.splitlines() if iid in ln]
    # Its replication as the engine itself reports it, over its socket folder as the agent
    # reaches it (MariaDB: OS root, unix_socket; PostgreSQL: the engine user, trust).
    if os.path.exists(os.path.join(d, "run", "mysqld.sock")):
        p = subprocess.run([MARIADB, "--no-defaults", "-S", os.path.join(d, "run", "mysqld.sock"),
                            "-u", "root", "-e", "SELECT @@server_id, @@gtid_binlog_pos, "
                            "@@gtid_slave_pos, @@gtid_current_pos, @@read_only\\G "
                            "SHOW ALL SLAVES STATUS\\G"],
                           capture_output=True, text=True, timeout=30)
        out += ["  mariadb: " + ln.strip() for ln in (p.stdout + p.stderr).splitlines()
                if ln.strip() and not ln.startswith("*")]
    elif os.path.isdir(os.path.join(d, "run")):
        try:
            port = str(backup.Engine(iid).port)
            p = as_db_user([PG_BIN + "/psql", "-h", os.path.join(d, "run"), "-p", port, "-U",
                            DB_USER, "-d", "postgres", "-Xx", "-c",
                            "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), "
                            "pg_last_wal_replay_lsn()", "-c",
                            "SELECT * FROM pg_stat_wal_receiver"], timeout=30)
            out += ["  psql: " + ln.strip() for ln in (p.stdout + p.stderr).splitlines()
                    if ln.strip()]
        except Exception as ex:  # noqa: BLE001
            out.append("  psql: %s" % ex)
    return "\n".join(out)


class Bench(replica.Bench):
    """replica.Bench (server, Trove calls, replicas) for both engines; a token renewed when a
    long run outlives it."""

    def trove(self, method, path, body=None):
        r = super().trove(method, path, body)
        if r.status == 401:
            self.token = self.srv.admin_token()
            r = super().trove(method, path, body)
        return r

    def create_primary(self, flavor, volume_gb, engine="mariadb"):
        body = {"instance": {"name": "pbench-" + uuid.uuid4().hex[:8], "flavorRef": flavor,
                             "volume": {"size": volume_gb},
                             "datastore": {"type": engine, "version": ENGINES[engine]},
                             "databases": [{"name": APP_DB}],
                             "users": [{"name": APP_USER, "password": APP_PW,
                                        "databases": [{"name": APP_DB}]}]}}
        r = self.trove("POST", "/instances", body)
        if r.status != 200:
            raise RuntimeError("create instance: %r" % r)
        return r.json()["instance"]["id"]


# ---- the raw anchors ---------------------------------------------------------------------------


def free_address_pair(port):
    """Two addresses 127.6x.y.1 and .2 where nothing listens on `port` (Concord's pools are
    127.77-79 (tests, the default) and 127.100-250 (the benches))."""
    for _ in range(100):
        base = "127.%d.%d." % (random.randint(60, 69), random.randint(0, 255))
        ips = [base + "1", base + "2"]
        try:
            for ip in ips:
                with socket.socket() as s:
                    s.bind((ip, port))
            return ips
        except OSError:
            continue
    raise RuntimeError("no free pair of 127.6x addresses for port %d" % port)


class RawPair:
    """What the two raw anchors share: two servers of one engine on two free 127.6x addresses,
    each in a folder of its own under `work`; nodes[primary] is the primary."""

    engine = None
    log_file = None

    def __init__(self, work):
        self.name = "raw " + self.engine
        ips = free_address_pair(PORTS[self.engine])
        self.nodes = []
        for n, ip in enumerate(ips):
            d = owned_dir(work, "%s-%s-" % (self.engine, "ab"[n]))
            self.nodes.append({"ip": ip, "dir": d, "proc": None})
        self.primary = 0

    def target(self, n):
        return fc.Target(self.engine, self.nodes[n]["ip"], PORTS[self.engine], APP_USER, APP_PW,
                         APP_DB)

    def targets(self):
        return self.target(self.primary), self.target(1 - self.primary)

    def _log_tail(self, n, lines=10):
        try:
            with open(os.path.join(self.nodes[n]["dir"], self.log_file), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def diagnose(self):
        return ": " + " || ".join(self._log_tail(n, 5) for n in (0, 1))

    def settled(self, timeout):
        pass  # the rounds wait for the rows

    def observe(self):
        pass


class RawPostgres(RawPair):
    """Two PostgreSQL 15 servers as concord-db: a primary and a pg_basebackup -R standby."""

    engine = "postgresql"
    log_file = "postgres.log"

    def _data(self, n):
        return os.path.join(self.nodes[n]["dir"], "data")

    def _start(self, n):
        node = self.nodes[n]
        with open(os.path.join(node["dir"], "postgres.log"), "ab") as out:
            node["proc"] = subprocess.Popen(
                ["runuser", "-u", DB_USER, "--", PG_BIN + "/postgres", "-D", self._data(n), "-p",
                 "5432", "-k", node["dir"], "-c", "listen_addresses=" + node["ip"]],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 120
        while subprocess.run([PG_BIN + "/pg_isready", "-q", "-h", node["dir"], "-p", "5432"],
                             timeout=30).returncode != 0:
            if node["proc"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s: postgres on %s did not start: %s" % (
                    self.name, node["ip"], self._log_tail(n)))
            time.sleep(0.05)

    def _psql(self, n, query):
        return checked(as_db_user([PG_BIN + "/psql", "-h", self.nodes[n]["dir"], "-p", "5432",
                                   "-U", DB_USER, "-d", "postgres", "-XAtq", "-v",
                                   "ON_ERROR_STOP=1", "-c", query], timeout=120),
                       "psql " + query).stdout.strip()

    def _clone(self, n, source):
        """pg_basebackup -R of `source` into n's emptied data folder: n is source's standby."""
        shutil.rmtree(self._data(n), ignore_errors=True)
        conninfo = "host=%s port=5432 user=%s password=%s" % (self.nodes[source]["ip"],
                                                              REPL_USER, REPL_PW)
        checked(as_db_user([PG_BIN + "/pg_basebackup", "-d", conninfo, "-D", self._data(n),
                            "-R", "-X", "stream", "-c", "fast"], timeout=600), "pg_basebackup")

    def setup(self):
        checked(as_db_user([PG_BIN + "/initdb", "-D", self._data(0), "-U", DB_USER, "-E", "UTF8",
                            "--locale=C.UTF-8", "--auth-local=trust",
                            "--auth-host=scram-sha-256", "--no-instructions"], timeout=300),
                "initdb")
        with open(os.path.join(self._data(0), "pg_hba.conf"), "a") as f:
            f.write("host all all 127.0.0.0/8 scram-sha-256\n"
                    "host replication %s 127.0.0.0/8 scram-sha-256\n" % REPL_USER)
        self._start(0)
        self._psql(0, "CREATE ROLE %s REPLICATION LOGIN PASSWORD '%s'" % (REPL_USER, REPL_PW))
        self._psql(0, "CREATE ROLE %s LOGIN PASSWORD '%s'" % (APP_USER, APP_PW))
        self._psql(0, "CREATE DATABASE %s OWNER %s" % (APP_DB, APP_USER))
        self._clone(1, 0)
        self._start(1)
        wait_for(lambda: (lambda s: (s == "streaming", s))(self._psql(
            0, "SELECT coalesce(max(state), '') FROM pg_stat_replication")), 60,
                 "%s: the standby streams" % self.name)
        log("%s: primary %s, standby %s (pg_basebackup -R)" % (
            self.name, self.nodes[0]["ip"], self.nodes[1]["ip"]))

    def switchover(self):
        old, new = self.primary, 1 - self.primary
        t0 = time.monotonic()
        checked(as_db_user([PG_BIN + "/pg_ctl", "stop", "-D", self._data(old), "-m", "fast",
                            "-w", "-t", "60"], timeout=90), "pg_ctl stop")
        promoted = self._psql(new, "SELECT pg_promote()")
        took = time.monotonic() - t0
        if promoted != "t":
            raise RuntimeError("%s: pg_promote() answered %r" % (self.name, promoted))
        self.nodes[old]["proc"].wait(timeout=30)
        self.nodes[old]["proc"] = None
        self.primary = new
        return took

    def rejoin(self):
        old = 1 - self.primary
        self._clone(old, self.primary)
        self._start(old)

    def stop(self):
        for node in self.nodes:
            if node["proc"] is not None:
                stop_postgres(node["proc"])
                node["proc"] = None


class RawMariadb(RawPair):
    """Two MariaDB 10.11 servers as concord-db: binlogs, GTID replication, read_only replica."""

    engine = "mariadb"
    log_file = "error.log"

    def __init__(self, work):
        super().__init__(work)
        for node in self.nodes:
            node["sock"] = node["dir"] + "/mysqld.sock"

    def _start(self, n):
        node = self.nodes[n]
        d = node["dir"]
        checked(as_db_user(["install", "-d", "-m", "0700", d + "/tmp"]), "mkdir")
        checked(as_db_user(["/usr/bin/mariadb-install-db", "--no-defaults", "--datadir=" + d +
                            "/data", "--auth-root-authentication-method=socket",
                            "--auth-root-socket-user=" + DB_USER, "--skip-test-db",
                            "--skip-name-resolve", "--tmpdir=" + d + "/tmp"], timeout=300),
                "mariadb-install-db")
        node["proc"] = subprocess.Popen(
            ["runuser", "-u", DB_USER, "--", "/usr/sbin/mariadbd", "--no-defaults",
             "--datadir=" + d + "/data", "--socket=" + node["sock"], "--port=3306",
             "--bind-address=" + node["ip"], "--tmpdir=" + d + "/tmp",
             "--pid-file=" + d + "/mariadbd.pid", "--log-error=" + d + "/error.log",
             "--server-id=%d" % (n + 1), "--log-bin=mysql-bin", "--log-slave-updates",
             "--skip-name-resolve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 120
        while not (os.path.exists(node["sock"]) and self._client(n, "SELECT 1").returncode == 0):
            if node["proc"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s: mariadbd on %s did not start: %s" % (
                    self.name, node["ip"], self._log_tail(n)))
            time.sleep(0.05)

    def _client(self, n, query):
        return subprocess.run([MARIADB, "--no-defaults", "-S", self.nodes[n]["sock"], "-u",
                               "root", "-N", "-B", "-e", query], capture_output=True, text=True,
                              timeout=120)

    def _sql(self, n, query):
        return checked(self._client(n, query), "mariadb " + query[:60]).stdout.strip()

    def _follow(self, n, source):
        """n (read-only) replicates from `source`, from n's own binlog position on."""
        self._sql(n, "SET GLOBAL read_only = 1")
        self._sql(n, "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
        self._sql(n, "CHANGE MASTER TO MASTER_HOST = '%s', MASTER_PORT = 3306, MASTER_USER = "
                     "'%s', MASTER_PASSWORD = '%s', MASTER_USE_GTID = slave_pos, "
                     "MASTER_CONNECT_RETRY = 1" % (self.nodes[source]["ip"], REPL_USER, REPL_PW))
        self._sql(n, "START SLAVE")

    def setup(self):
        self._start(0)
        self._start(1)
        for q in ("CREATE DATABASE %s" % APP_DB,
                  "CREATE USER '%s'@'%%' IDENTIFIED BY '%s'" % (APP_USER, APP_PW),
                  "GRANT ALL ON %s.* TO '%s'@'%%'" % (APP_DB, APP_USER),
                  "CREATE USER '%s'@'%%' IDENTIFIED BY '%s'" % (REPL_USER, REPL_PW),
                  "GRANT REPLICATION SLAVE ON *.* TO '%s'@'%%'" % REPL_USER):
            self._sql(0, q)
        # The replica was installed on its own (an empty binlog position): it takes all of the
        # primary's binlog (the database and the users above), from the start.
        self._follow(1, 0)
        pos = self._sql(0, "SELECT @@gtid_binlog_pos")
        if self._sql(1, "SELECT MASTER_GTID_WAIT('%s', 60)" % pos) != "0":
            raise RuntimeError("%s: the replica did not reach %s: %s" % (
                self.name, pos, self._client(1, "SHOW SLAVE STATUS\\G").stdout[-800:]))
        log("%s: primary %s, replica %s (GTID)" % (self.name, self.nodes[0]["ip"],
                                                    self.nodes[1]["ip"]))

    def switchover(self):
        old, new = self.primary, 1 - self.primary
        t0 = time.monotonic()
        self._sql(old, "SET GLOBAL read_only = 1")
        pos = self._sql(old, "SELECT @@gtid_binlog_pos")
        if self._sql(new, "SELECT MASTER_GTID_WAIT('%s', 60)" % pos) != "0":
            raise RuntimeError("%s: the replica did not reach %s within 60 s" % (self.name, pos))
        self._sql(new, "STOP SLAVE")
        self._sql(new, "RESET SLAVE ALL")
        self._sql(new, "SET GLOBAL read_only = 0")
        took = time.monotonic() - t0
        self.primary = new
        return took

    def rejoin(self):
        self._follow(1 - self.primary, self.primary)

    def stop(self):
        for node in self.nodes:
            p = node["proc"]
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=60)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait(timeout=30)
            node["proc"] = None


RAW = {"postgresql": RawPostgres, "mariadb": RawMariadb}
RAW_CALL = {"postgresql": "pg_ctl stop -m fast + SELECT pg_promote()",
            "mariadb": "read_only=1, MASTER_GTID_WAIT, STOP SLAVE, RESET SLAVE ALL, read_only=0"}
RAW_REJOIN = {"postgresql": "emptied, pg_basebackup -R, started",
              "mariadb": "CHANGE MASTER TO the new one, START SLAVE"}


# ---- the table ---------------------------------------------------------------------------------


def engine_lines(engine, s, notes):
    c, r = s["concord"], s["raw"]
    med_c = percentile([x["window"] for x in c], 0.5)
    med_r = percentile([x["window"] for x in r], 0.5)
    lines = ["", "### %s %s" % (engine, ENGINES[engine]), "",
             "| figure | n | min | median | max |", "|---|---|---|---|---|"]

    def add(name, rows, key, fmt="%.3f"):
        lines.append(stats_row(name, [x[key] for x in rows], fmt))

    add("concord window: last ack on the old primary to first ack on the promoted one, s", c,
        "window")
    add("raw window, s", r, "window")
    add("concord promote API call, POST to 202, s", c, "call")
    add("raw switchover commands (%s), s" % RAW_CALL[engine], r, "call")
    add("concord POST to the first ack on the new primary, s", c, "to_first")
    add("raw switchover start to the first ack on the new primary, s", r, "to_first")
    add("concord old primary follows the new one (holds its first fresh insert), from the POST, "
        "s", c, "follow")
    add("raw old primary follows the new one (%s), from the switchover start, s"
        % RAW_REJOIN[engine], r, "follow")
    add("concord writes/s before the switchover", c, "acks_per_s_before_kill", "%.0f")
    add("raw writes/s before the switchover", r, "acks_per_s_before_kill", "%.0f")
    for side, rows in (("concord", c), ("raw", r)):
        lost = [len(x["lost"]) for x in rows]
        lines.append(stats_row("%s lost acknowledged writes per repetition (sum %d)" % (
            side, sum(lost)), lost, "%.0f"))
    for side, rows in (("concord", c), ("raw", r)):
        gone = [len(x["old_missing"]) for x in rows]
        lines.append(stats_row("%s rows of the new primary still missing on the old one %.0f s "
                               "after the writes, per repetition (sum %d)" % (
                                   side, ROWS_SETTLE, sum(gone)), gone, "%.0f"))
    lines.append("")
    lines.append("- ratio of the median windows, concord / raw: %.2f (%.3f s / %.3f s)" % (
        med_c / med_r, med_c, med_r))
    for side, rows in (("concord", c), ("raw", r)):
        lines.append(
            "- %s checks, summed over the repetitions (all should be 0 but in-doubt): "
            "duplicated ids %d, writes acknowledged by the replica before the switchover %d, "
            "by the old primary after the first on the new one %d, unexpected key conflicts %d;"
            " in-doubt commits resolved as committed %d, unacknowledged ids present %d" % (
                side, sum(len(x["duplicated"]) for x in rows),
                sum(x["replica_acks_before"] for x in rows),
                sum(x["old_acks_after_new"] for x in rows),
                sum(x["unexpected_conflicts"] for x in rows),
                sum(x["in_doubt_committed"] for x in rows),
                sum(len(x["unacked_present"]) for x in rows)))
    for n in notes:
        lines.append("- " + n)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="postgresql,mariadb",
                    help="comma-separated: postgresql and/or mariadb (default both)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="switchovers per engine and side (default 5)")
    ap.add_argument("--warmup", type=float, default=3.0,
                    help="seconds of writes to the primary before a switchover (default 3)")
    ap.add_argument("--tail", type=float, default=2.0,
                    help="seconds of writes on the new primary after the first (default 2)")
    ap.add_argument("--flavor", default="m1.small",
                    help="flavor of the Concord instances (default m1.small: 1 vCPU, 2 GB)")
    ap.add_argument("--volume-gb", type=int, default=2,
                    help="volume of the Concord instances (default 2)")
    ap.add_argument("--poll-ms", type=int, default=250, help="GET interval (default 250)")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds any one wait may take (ACTIVE, the replica's copy of the "
                         "table, the old primary following; default 600)")
    ap.add_argument("--results", help="also append the tables to this file")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if not engines or any(e not in ENGINES for e in engines):
        ap.error("--engines: postgresql and/or mariadb, comma-separated")
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if not 1 <= args.volume_gb <= 10:
        ap.error("--volume-gb must be 1 to 10 (the server's --database.max_volume_gb)")
    if args.results:
        args.results = os.path.abspath(args.results)
    # The engine user's tools start in the current folder, which it may not be able to enter.
    os.chdir("/")
    # A plain kill (SIGTERM) still runs the clean-up below: instances, server, engines, folders.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = tempfile.mkdtemp(prefix="concord-promote-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    cleanups = []
    concord = Bench(args.poll_ms / 1000.0)
    samples = {}
    notes = {e: [] for e in engines}
    load_before = os.getloadavg()
    t_start = time.monotonic()
    live = []  # Concord instances not deleted yet
    pair = raw = None
    try:
        flavor = concord.boot(cleanups, engines[0], args.flavor)
        for engine in engines:
            if engine != engines[0]:
                concord.wait_for_host(engine)  # the engine's first create, outside the rounds
            pair = ConcordPair(concord, engine, flavor, args.volume_gb, live, args.timeout)
            raw = RAW[engine](work)
            raw.setup()
            s = samples[engine] = {"concord": [], "raw": []}
            fences_before = pair.fence_timeouts()
            rebuilds_before = pair.rebuilds()
            for i in range(args.repeats):
                for side in ((pair, raw) if i % 2 == 0 else (raw, pair)):
                    key = "concord" if side is pair else "raw"
                    before = pair.fence_timeouts()
                    rebuilt_before = pair.rebuilds()
                    res = round_(side, args.warmup, args.tail, args.timeout)
                    s[key].append(res)
                    gone = res["old_missing"]
                    if gone:
                        notes[engine].append(
                            "%s round %d: %d rows of the new primary never reached the old one "
                            "(ids %d..%d%s)" % (key, i + 1, len(gone), gone[0], gone[-1],
                                                "" if gone[-1] - gone[0] + 1 == len(gone)
                                                else ", not contiguous"))
                    log("round %d %s: window %.3f s (last old ack %+.3f s, first new ack %+.3f s"
                        " from the switchover), call %.3f s, follows after %.2f s, lost %d, "
                        "missing on the old primary %d, acked %d, errors %d %s%s%s" % (
                            i + 1, side.name, res["window"], res["last_old_to_t0"],
                            res["to_first"], res["call"], res["follow"], len(res["lost"]),
                            len(gone), res["acked"], res["errors"], res["errors_by_phase"],
                            "; fence wait ran out" if key == "concord" and
                            pair.fence_timeouts() > before else "",
                            "; old primary copied anew" if key == "concord" and
                            pair.rebuilds() > rebuilt_before else ""))
            fences = pair.fence_timeouts() - fences_before
            notes[engine].append(
                "concord old primaries copied anew instead of following in place (log \"%s\"): "
                "%d in %d promotes" % ('" / "'.join(fc.REBUILD_LOG_LINES), pair.rebuilds() - rebuilds_before,
                                       args.repeats))
            notes[engine].append(
                "concord fence waits that ran out (server log \"%s\"): %d of %d promotes; "
                "status/operating_status seen in the views after a promote: %s" % (
                    FENCE_TIMEOUT_LINE, fences, args.repeats, ", ".join(sorted(pair.statuses))))
            raw.stop()
            raw = None
            pair.delete()
            for iid in (pair.primary, pair.replica):
                live.remove(iid)
            pair = None
    finally:
        if raw is not None:
            raw.stop()
        # Replicas before their primary (a primary with replicas cannot be deleted).
        order = ([pair.replica, pair.primary] if pair else []) + \
            [iid for iid in reversed(live) if not pair or iid not in (pair.replica, pair.primary)]
        for iid in order:
            try:
                concord.delete(iid)
            except Exception as ex:  # noqa: BLE001 (the server's cleanup reaps engines anyway)
                print("cleanup: instance %s: %s" % (iid, ex), file=sys.stderr)
        run_cleanups(cleanups)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    lines = run_header("promote.sh", concord.binary, t_start, load_before, load_after) + [
        "Concord: all-in-one, one instance + one read replica per engine (%s, volume %d GB), "
        "promoted back and forth; raw: two servers of the same engine by hand on 127.x, "
        "defaults. Writer: single-row autocommit inserts, same client both sides, %.0f s before "
        "each switchover, %.0f s after the first write on the new primary; %d repetitions per "
        "side, interleaved." % (args.flavor, args.volume_gb, args.warmup, args.tail,
                                args.repeats)]
    for engine in engines:
        lines += engine_lines(engine, samples[engine], notes[engine])
    emit("\n".join(lines) + "\n", args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
