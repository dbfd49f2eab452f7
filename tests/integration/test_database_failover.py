"""Automatic failover of a managed PostgreSQL instance with no acknowledged commit lost.

A `concord all-in-one` with its in-process agent disabled and two `concord agent`s (hosts db-a
and db-b), so an instance's two members run on two hosts. One PostgreSQL instance created with
"high_availability": true (Concord extension): a primary and a synchronous standby. The client
(failover_client.py) writes single-row inserts through the instance's endpoint, retrying the
same id across errors, and the test:

1. kill -9 of the primary member's engine (postmaster and children): writes resume through the
   same endpoint, every acknowledged id is in the table, none twice;
2. "the host vanishes": SIGSTOP of the new primary's engine processes and kill -9 of its agent,
   so the server sees neither; failover again with no acknowledged id lost;
3. SIGCONT of the paused engine: it must not acknowledge writes (the app user inserting on the
   member's own address must fail or get no answer within a bounded time, never succeed):
   only one primary ever accepts writes.

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


class DatabaseFailoverTest(unittest.TestCase):
    def setUp(self):
        reason = skip_reason()
        if reason:
            self.skipTest(reason)
        self.cloud = fc.ConcordHa(ADDRESS_POOL)
        self.addCleanup(self.cloud.cleanup)
        self.cloud.start()
        self.paused = []
        self.addCleanup(self.resume_paused)

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

    def test_failover_loses_no_acknowledged_write(self):
        c = self.cloud
        try:
            iid = c.create("ha-pg", ha=True)
        except fc.HaUnavailable as e:
            self.skipTest("high availability not offered by this server: %s" % e)
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        port = view.get("port") or 5432
        target = c.target(iid)
        first = c.primary(view)
        # The endpoint is the server's proxy, not a member's engine.
        self.assertNotIn(target.host, [m["address"] for m in c.members(view)])

        # 1. kill -9 of the primary's engine.
        def kill_engine():
            pm = c.engine_pid(first["address"], port)
            self.assertIsNotNone(pm, "no engine listens on the primary %s" % first["address"])
            doomed = fc.process_tree(pm)
            t = time.monotonic()
            fc.signal_tree(pm, signal.SIGKILL)
            self.assertTrue(fc.wait_gone(doomed), "the engine survived kill -9")
            return t

        self.write_through_failover(target, kill_engine)
        view = fc_wait(lambda: (lambda v: v if (c.primary(v) or {}).get("id") not in
                                (None, first["id"]) else None)(c.view(iid)),
                       HEAL_TIMEOUT, "the standby shown as primary")
        second = c.primary(view)
        self.assertNotEqual(second["host"], first["host"])
        self.assertGreaterEqual(view["high_availability"]["failovers"], 1)

        # The cluster heals (the old member rebuilt as standby) before the second failure.
        view = c.wait_healthy(iid, HEAL_TIMEOUT)
        self.assertEqual(c.primary(view)["id"], second["id"])
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
