"""Automatic failover of a managed PostgreSQL instance with no acknowledged commit lost.

A `concord all-in-one` with its in-process agent disabled and two `concord agent`s (hosts db-a
and db-b), so an instance's two members run on two hosts. One PostgreSQL instance created with
"high_availability": true (Concord extension): a primary and a synchronous standby. The client
(failover_client.py) writes single-row inserts through the instance's endpoint, retrying the
same id across errors, and the test:

1. kill -9 of the primary member's engine (postmaster and children): writes resume through the
   same endpoint, every acknowledged id is in the table, none twice; once healed, a silent link
   (SIGSTOP of the primary's WAL sender: the standby still answers, nothing resets its
   connection): a commit through the endpoint still completes, the standby's receiver timing
   out and the server no longer waiting for it, and the standby streams again once resumed;
2. "the host vanishes": SIGSTOP of the new primary's engine processes and kill -9 of its agent,
   so the server sees neither; failover again with no acknowledged id lost;
3. SIGCONT of the paused engine: it must not acknowledge writes (the app user inserting on the
   member's own address must fail or get no answer within a bounded time, never succeed):
   only one primary ever accepts writes.

MariaDB: kill -9 of the primary's engine, the same checks (semi-synchronous replication); then
the standby's replication is stopped by hand (it answers but does not stream, as when the link
between the members is cut): a commit through the endpoint still completes (the server stops
waiting for that standby), and the standby becomes synchronous again on its own.
MariaDB point-in-time restore across a failover: a backup of the first primary, rows before
and after the kill -9, and a restore to a time after the failover holds exactly the rows
committed before that time: the archived binlogs of both members (each under its own
basename) are followed by GTID from the backup on.

Standby replacement (three hosts, --database.ha_replace_after=3s): the standby's host vanishes
and stays away; the server replaces the member by a new one on the third host, which becomes
the synchronous standby, and a failover to it (kill -9 of the primary's engine) loses no
acknowledged write: the new member is a complete copy.

No time bound is asserted (shared, noisy machine); the windows are printed. Until the server
offers high availability the test skips, saying what the server answered.

Needs root and the Debian packages of scripts/install-deps.sh --test; skips with the reason
otherwise.
"""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import database_fixture  # noqa: E402
import failover_client as fc  # noqa: E402

# A pool of its own: see database_fixture.Cloud.
ADDRESS_POOL = "127.78.6.0/24"
HEAL_TIMEOUT = 240.0
RESUME_TIMEOUT = 90.0
# A commit while the synchronous standby answers but does not stream: its receiver notices a
# silent link after 5-6 s, its agent reports it within a heartbeat (2 s), the server lets 6 s
# pass; generous for a loaded machine (the settings before 2026-12-04 took 81 s).
STALLED_COMMIT_TIMEOUT = 120.0
WARMUP = 2.0


def skip_reason():
    reason = database_fixture.skip_reason()
    if reason:
        return reason
    try:
        import psycopg2
        del psycopg2  # only whether it imports
    except ImportError:
        return "python3-psycopg2 is not installed (scripts/install-deps.sh --test)"
    return None


class FailoverCase(unittest.TestCase):
    HOSTS = fc.ConcordHa.HOSTS
    SERVER_ARGS = ()

    def setUp(self):
        reason = skip_reason()
        if reason:
            self.skipTest(reason)
        self.cloud = fc.ConcordHa(ADDRESS_POOL, self.SERVER_ARGS, self.HOSTS)
        self.addCleanup(self.cloud.cleanup)
        self.cloud.start()
        self.paused = []
        self.addCleanup(self.resume_paused)

    def create_ha(self, name, engine="postgresql"):
        try:
            iid = self.cloud.create(name, ha=True, engine=engine)
        except fc.HaUnavailable as e:
            self.skipTest("high availability not offered by this server: %s" % e)
        return iid, self.cloud.wait_healthy(iid, HEAL_TIMEOUT)

    def kill_engine_of(self, member, port):
        """kill -9 of the member's engine (its whole process tree); returns the kill's time."""
        pm = self.cloud.engine_pid(member["address"], port)
        self.assertIsNotNone(pm, "no engine listens on %s" % member["address"])
        doomed = fc.process_tree(pm)
        t = time.monotonic()
        fc.signal_tree(pm, signal.SIGKILL)
        self.assertTrue(fc.wait_gone(doomed), "the engine survived kill -9")
        return t

    def wait_primary_moved(self, iid, old_id):
        c = self.cloud
        return fc_wait(lambda: (lambda v: v if (c.primary(v) or {}).get("id") not in
                                (None, old_id) else None)(c.view(iid)),
                       HEAL_TIMEOUT, "the standby shown as primary")

    def resume_paused(self):
        for pid in self.paused:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def write_through_failover(self, target, kill):
        """Writes, calls kill() (which returns the monotonic time of the kill), waits until
        writes resume and a little more, then checks the table through the endpoint."""
        fc.prepare_table(target, 120)
        writer = fc.Writer(target).start()
        try:
            fc_wait(lambda: writer.acked_count() >= 20, 60, "writes before the kill")
            start = time.monotonic()
            fc_wait(lambda: time.monotonic() - start >= WARMUP, WARMUP + 1, "warm-up")
            kill_t = kill()
            fc_wait(lambda: writer.resumed_after(kill_t), RESUME_TIMEOUT,
                    "writes resume through the endpoint")
            n = writer.acked_count()
            fc_wait(lambda: writer.acked_count() >= n + 20, 60, "writes keep flowing")
        finally:
            log = writer.stop()
        ids, has_key = fc.read_back(target, 60)
        res = fc.analyze(log, kill_t, ids, has_key)
        print("\n  " + fc.describe(res), flush=True)
        self.assertTrue(res["has_primary_key"], "failover_log lost its primary key")
        self.assertTrue(res["resumed"], res)
        self.assertEqual(res["lost"], [], "acknowledged ids missing after the failover")
        self.assertEqual(res["duplicated"], [])
        self.assertEqual(res["unexpected_conflicts"], 0, log["unexpected_conflicts"][:5])
        # The retried ids form a gap-free prefix: nothing past what was attempted is present.
        self.assertTrue(all(i <= log["next_id"] for i in ids), (max(ids), log["next_id"]))
        return res


class DatabaseFailoverTest(FailoverCase):
    def test_failover_loses_no_acknowledged_write(self):
        c = self.cloud
        iid, view = self.create_ha("ha-pg")
        port = c.port(view)
        target = c.target(iid)
        first = c.primary(view)
        # The endpoint is the server's proxy, not a member's engine.
        self.assertNotIn(target.host, [m["address"] for m in c.members(view)])

        # 1. kill -9 of the primary's engine.
        self.write_through_failover(target, lambda: self.kill_engine_of(first, port))
        view = self.wait_primary_moved(iid, first["id"])
        second = c.primary(view)
        self.assertNotEqual(second["host"], first["host"])
        self.assertGreaterEqual(view["high_availability"]["failovers"], 1)

        # The cluster heals (the old member rebuilt as standby) before the second failure.
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        self.assertEqual(c.primary(view)["id"], second["id"])

        # A silent link: the primary's WAL sender paused (no reset reaches the standby, which
        # still answers): a commit completes once the standby's receiver times out and the
        # server stops waiting for it, and the standby streams again once the sender runs.
        self.silent_link_is_not_waited_for(iid, second, port)
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        standby = [m for m in c.members(view) if m["role"] == "standby"][0]

        # 2. The new primary's host vanishes: its engine paused, its agent killed.
        paused_pids = []

        def vanish():
            pm = c.engine_pid(second["address"], port)
            self.assertIsNotNone(pm, "no engine listens on the primary %s" % second["address"])
            t = time.monotonic()
            stopped = fc.signal_tree(pm, signal.SIGSTOP)  # the postmaster and every backend
            self.paused += stopped
            paused_pids.extend(stopped)
            c.agent_of(second).kill9()
            return t

        self.write_through_failover(target, vanish)
        view = fc_wait(lambda: (lambda v: v if (c.primary(v) or {}).get("id") == standby["id"]
                                else None)(c.view(iid)),
                       HEAL_TIMEOUT, "the standby of the second round shown as primary")
        self.assertGreaterEqual(view["high_availability"]["failovers"], 2)

        # 3. The paused engine runs again: it must not take writes (only one primary).
        self.resume_paused()
        self.paused = []
        old = fc.Target("postgresql", second["address"], port, "app", c.PASSWORD, "shop")
        # It must be running again, or "it does not acknowledge" would prove nothing.
        fc_wait(lambda: c.engine_pid(second["address"], port), 30,
                "the resumed old primary listening on %s" % second["address"])
        outcomes = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            outcomes.append(try_insert(old, 10 ** 9 + len(outcomes)))
            self.assertNotEqual(outcomes[-1], "committed",
                                "the old primary acknowledged a write after the failover")
            time.sleep(0.5)
        print("\n  old primary after SIGCONT: %s" % sorted(set(outcomes)), flush=True)
        # And the ids tried there never reached the table through the endpoint.
        ids, _ = fc.read_back(target, 60)
        self.assertFalse([i for i in ids if i >= 10 ** 9], "a write on the old primary surfaced")

    def silent_link_is_not_waited_for(self, iid, primary, port):
        c = self.cloud
        target = c.target(iid)
        fc.with_retries(target, lambda conn: conn.execute(
            "CREATE TABLE IF NOT EXISTS silent (id INT PRIMARY KEY)", None, 10.0))
        pm = c.engine_pid(primary["address"], port)
        self.assertIsNotNone(pm, "no engine listens on the primary %s" % primary["address"])
        senders = fc.pause_wal_senders(pm)
        self.paused += senders
        self.assertTrue(senders, "the primary has no WAL sender")
        # Completes once the standby's receiver times out (5 s), its agent reports it not
        # streaming (every 2 s) and the server stops waiting for it (6 s later).
        commit_timed(target, "silent", "a silent link to the standby")
        self.resume_paused()
        self.paused = []

    def test_mariadb_failover_loses_no_acknowledged_write(self):
        c = self.cloud
        iid, view = self.create_ha("ha-maria", engine="mariadb")
        first = c.primary(view)
        port = c.port(view)
        self.write_through_failover(c.target(iid), lambda: self.kill_engine_of(first, port))
        view = self.wait_primary_moved(iid, first["id"])
        self.assertNotEqual(c.primary(view)["host"], first["host"])
        # The old primary comes back as the synchronous standby on its own.
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        self.assertEqual([m["id"] for m in c.members(view) if m["role"] == "standby"],
                         [first["id"]])

        # A planned restart restarts both members and is no failover.
        primary, failovers = c.primary(view)["id"], view["high_availability"]["failovers"]
        pids = {m["address"]: c.engine_pid(m["address"], port) for m in c.members(view)}
        r = c.trove("POST", "/instances/%s/action" % iid, {"restart": {}})
        self.assertEqual(r.status, 202, r)
        fc_wait(lambda: c.view(iid).get("status") == "REBOOT", 60, "the restart under way")
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        self.assertEqual(c.primary(view)["id"], primary)
        self.assertEqual(view["high_availability"]["failovers"], failovers)
        for address, pid in pids.items():
            self.assertNotEqual(c.engine_pid(address, port), pid, "not restarted: " + address)
        events = c.trove("GET", "/instances/%s/events" % iid).json()["events"]
        self.assertEqual(len([e for e in events if e["type"] == "failover"]), failovers)

        # A standby that answers but stops streaming (as when the link between the members is
        # cut) stops being waited for; semi-synchronous replication without timeout would
        # otherwise hold every commit until it streamed again.
        self.stalled_standby_is_not_waited_for(iid, port)

    def stalled_standby_is_not_waited_for(self, iid, port):
        c = self.cloud
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        standby = [m for m in c.members(view) if m["role"] == "standby"][0]
        r = c.trove("POST", "/instances/%s/root" % iid)
        self.assertEqual(r.status, 200, r)
        # The remote root replicates to the standby; it reaches the standby's engine directly.
        on_standby = fc.Target("mariadb", standby["address"], port, "root",
                               r.json()["user"]["password"], "shop")
        app = c.target(iid)
        fc.with_retries(app, lambda conn: conn.execute(
            "CREATE TABLE IF NOT EXISTS stalled (id INT PRIMARY KEY)", None, 10.0))
        fc.with_retries(on_standby, lambda conn: conn.execute("STOP SLAVE", None, 10.0))
        # Completes once the controller takes the standby out of the synchronous list (its agent
        # reports it not streaming within a heartbeat; the server waits 6 s more).
        commit_timed(app, "stalled", "a stalled standby")
        # Taken out, its state changed: its agent starts its replication again, and it becomes
        # the synchronous standby once more.
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        self.assertEqual([m["id"] for m in c.members(view) if m["role"] == "standby"],
                         [standby["id"]])
        fc_wait(lambda: fc.with_retries(on_standby, lambda conn: conn.execute(
            "SELECT id FROM stalled", None, 10.0), 60.0), 60, "the row on the standby")


class MariadbPointInTimeAcrossFailoverTest(FailoverCase):
    def test_mariadb_restore_to_a_time_after_a_failover(self):
        c = self.cloud
        iid, view = self.create_ha("ha-maria-pitr", engine="mariadb")
        first = c.primary(view)
        port = c.port(view)
        app = c.target(iid)
        r = c.trove("POST", "/instances/%s/root" % iid)
        self.assertEqual(r.status, 200, r)
        root = fc.Target("mariadb", app.host, app.port, "root", r.json()["user"]["password"],
                         "shop")

        def run(target, sql):
            # INSERT IGNORE: a retry after a lost answer must not fail on its own row.
            return fc.with_retries(target, lambda conn: conn.execute(sql, None, 10.0), 90.0)

        run(app, "CREATE TABLE IF NOT EXISTS pitr (id INT PRIMARY KEY)")
        run(app, "INSERT IGNORE INTO pitr VALUES (1)")
        r = c.trove("POST", "/backups", {"backup": {"name": "before-failover", "instance": iid}})
        self.assertEqual(r.status, 202, r)
        bid = r.json()["backup"]["id"]
        backup = fc_wait(lambda: (lambda b: b if b["status"] in ("COMPLETED", "FAILED") else None)(
            c.trove("GET", "/backups/" + bid).json()["backup"]), 180, "the backup")
        self.assertEqual(backup["status"], "COMPLETED", backup)
        # The backup's end raises the state revision once more: the kill must not race the
        # members applying it.
        c.wait_healthy(iid, HEAL_TIMEOUT)
        time.sleep(WARMUP)
        # Committed on the first primary after its backup; its binlog there is never shipped
        # (the member is rebuilt after the kill), the standby's copy of it is.
        run(app, "INSERT IGNORE INTO pitr VALUES (2)")
        self.kill_engine_of(first, port)
        try:
            self.wait_primary_moved(iid, first["id"])
        except AssertionError as e:
            self.fail("%s\n%s" % (e, c.srv.log_tail(120)))
        run(app, "INSERT IGNORE INTO pitr VALUES (3)")
        after_3 = time.time()
        time.sleep(2.5)
        run(app, "INSERT IGNORE INTO pitr VALUES (4)")
        # Binlog events carry whole seconds: a target in a second of its own after row 3's.
        target = int(after_3) + 1.5
        # The new primary closes its binlog now rather than within the engine's minute; the
        # agent ships it within its 10 s round.
        run(root, "FLUSH BINARY LOGS")
        body = {"instance": {
            "name": "ha-maria-pitr-restored", "flavorRef": c.flavor_id(), "volume": {"size": 1},
            "datastore": {"type": "mariadb", "version": "10.11"},
            "restorePoint": {"backupRef": bid, "restore_time": time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime(target)) + ".500000Z"}}}
        deadline = time.monotonic() + 90
        while True:
            r = c.trove("POST", "/instances", body)
            if r.status == 200 or time.monotonic() > deadline:
                break
            # 400 "beyond the archived logs" until the new primary's binlog arrives.
            self.assertEqual(r.status, 400, r)
            self.assertIn("archived logs", r.json()["badRequest"]["message"], r)
            time.sleep(1)
        self.assertEqual(r.status, 200, r)
        rid = r.json()["instance"]["id"]
        rv = c.wait_healthy(rid, HEAL_TIMEOUT, ha=False)
        restored = fc.Target("mariadb", rv["ip"][0], c.port(rv), "app", c.PASSWORD, "shop")
        rows = run(restored, "SELECT id FROM pitr ORDER BY id")
        self.assertEqual([int(x[0]) for x in rows], [1, 2, 3])


class StandbyReplacementTest(FailoverCase):
    HOSTS = ("db-a", "db-b", "db-c")
    SERVER_ARGS = ("--database.ha_replace_after=3s",)

    def test_standby_on_a_vanished_host_is_replaced_elsewhere(self):
        c = self.cloud
        iid, view = self.create_ha("ha-replace")
        port = c.port(view)
        target = c.target(iid)
        primary = c.primary(view)
        standby = [m for m in c.members(view) if m["role"] == "standby"][0]
        # Rows committed before the new member exists must reach it through its copy.
        fc.with_retries(target, lambda conn: conn.execute(
            "CREATE TABLE early AS SELECT generate_series(1, 1000) AS id", None, 10.0))

        # The standby's host vanishes for good: its engine paused, its agent killed.
        self.paused += fc.signal_tree(c.engine_pid(standby["address"], port), signal.SIGSTOP)
        c.agent_of(standby).kill9()
        view = fc_wait(lambda: (lambda v: v if standby["id"] not in
                                [m["id"] for m in c.members(v)] else None)(c.view(iid)),
                       HEAL_TIMEOUT, "the lost standby replaced")
        view = c.wait_healthy(iid, HEAL_TIMEOUT)  # the new member synchronous
        new = [m for m in c.members(view) if m["role"] == "standby"][0]
        self.assertNotIn(new["id"], (standby["id"], primary["id"]))
        self.assertNotIn(new["host"], (standby["host"], primary["host"]))
        self.assertNotEqual(new["address"], standby["address"])
        self.assertEqual(c.primary(view)["id"], primary["id"], "no failover was needed")
        events = c.trove("GET", "/instances/%s/events" % iid).json()["events"]
        replaced = [e for e in events if e["type"] == "standby.replaced"]
        self.assertEqual(len(replaced), 1, events)
        self.assertEqual(replaced[0]["detail"], {"from": standby["id"], "to": new["id"]})

        # The new member is a whole copy: failing over to it loses no acknowledged write,
        # including those written before it existed.
        self.write_through_failover(target, lambda: self.kill_engine_of(primary, port))
        view = self.wait_primary_moved(iid, primary["id"])
        self.assertEqual(c.primary(view)["id"], new["id"])
        rows = fc.with_retries(target, lambda conn: conn.execute(
            "SELECT count(*) FROM early", None, 10.0))
        self.assertEqual(rows[0][0], 1000, "rows committed before the replacement")


def try_insert(target, i, timeout=5.0):
    """'committed', or how the attempt did not commit: 'login: no answer' / 'login: refused'
    (the engine took no session), 'insert: no answer' (a session, but the commit waited past
    the timeout, e.g. for a synchronous standby that is gone) or 'insert: refused' (an error,
    e.g. read-only)."""
    try:
        conn = fc.connect(target, timeout)
    except fc.OpTimeout:
        return "login: no answer"
    except Exception:  # noqa: BLE001 - any refusal is fine here
        return "login: refused"
    try:
        conn.execute("INSERT INTO failover_log (id) VALUES (%s)", (i,), timeout)
        return "committed"
    except fc.OpTimeout:
        return "insert: no answer"
    except Exception:  # noqa: BLE001
        return "insert: refused"
    finally:
        conn.close()


def commit_timed(target, table, what):
    """Inserts one row into `table` through `target` and prints how long the commit took. It
    blocks while the primary waits for its synchronous standby: an OpTimeout/OperationalError
    after STALLED_COMMIT_TIMEOUT is the failure the callers guard against."""
    start = time.monotonic()
    conn = fc.connect(target, STALLED_COMMIT_TIMEOUT)
    try:
        conn.execute("INSERT INTO %s VALUES (1)" % table, None, STALLED_COMMIT_TIMEOUT)
    finally:
        conn.close()
    print("\n  commit with %s took %.1f s" % (what, time.monotonic() - start), flush=True)


def fc_wait(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.1)


if __name__ == "__main__":
    unittest.main()
