"""kill -9 during concurrent writes loses no acknowledged change and leaves nothing half-written.

Several client threads create projects and users and grant roles as fast as the server allows,
recording every create the server acknowledged (201/204) with its id, and every request that
got no answer (it may or may not have happened). The server is killed with SIGKILL after a
given number of acknowledged writes (counted, not timed, so the test does not depend on
machine speed), restarted on the same data dir, and then:
  * every acknowledged create exists exactly once, by id and by name, with its attributes;
  * every acknowledged grant is still there;
  * an unacknowledged create exists at most once;
  * listings work, names are unique per domain, every user and project has an existing domain,
    and new writes work.
The rounds accumulate on one data dir, killing at different moments (including during start).
"""
import os
import sys
import threading
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import concord_launcher  # noqa: E402

THREADS = 4
KILL_AFTER = (3, 30, 100)   # acknowledged writes before each kill
ROUND_LIMIT_S = 300         # safety bound on one round's write phase
REFUSED = object()


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []       # (kind, name, id, attrs)
        self.grants = []      # (project_id, user_id, role_id)
        self.unknown = []     # (kind, name) with no answer
        self.rejected = []    # (kind, name, status, body) for unexpected statuses
        self.count = 0

    def ack(self, entry):
        with self.lock:
            self.acked.append(entry)
            self.count += 1

    def ack_grant(self, grant):
        with self.lock:
            self.grants.append(grant)
            self.count += 1


class Writer(threading.Thread):
    def __init__(self, srv, token, role_id, tag, ledger, stop):
        super().__init__(daemon=True)
        self.srv, self.token, self.role_id = srv, token, role_id
        self.tag, self.ledger, self.stop = tag, ledger, stop

    def post(self, kind, body):
        """The response, None if the request may have reached the server, or REFUSED."""
        try:
            return self.srv.request("POST", "%s/%ss" % (self.srv.v3, kind), body,
                                    token=self.token, timeout=20)
        except ConnectionRefusedError:
            return REFUSED  # the server is gone; nothing was sent
        except OSError:
            return None

    def run(self):
        i = 0
        last_project = None
        while not self.stop.is_set():
            i += 1
            name = "cs-%s-%d-%s" % (self.tag, i, uuid.uuid4().hex[:6])
            if i % 2:
                body = {"project": {"name": "p" + name, "domain_id": "default",
                                    "description": "d" + name}}
                r = self.post("project", body)
                kind, full = "project", "p" + name
            else:
                user = {"name": "u" + name, "domain_id": "default", "email": name + "@x"}
                if i % 10 == 0:
                    user["password"] = "pw-" + name
                if last_project:
                    user["default_project_id"] = last_project
                r = self.post("user", {"user": user})
                kind, full = "user", "u" + name
            if r is REFUSED:
                self.stop.wait(0.01)
                continue
            if r is None:
                with self.ledger.lock:
                    self.ledger.unknown.append((kind, full))
                continue
            if r.status != 201:
                with self.ledger.lock:
                    self.ledger.rejected.append((kind, full, r.status, r.body[:200]))
                continue
            obj = r.json()[kind]
            attrs = ({"description": "d" + name} if kind == "project"
                     else {"email": name + "@x"})
            self.ledger.ack((kind, full, obj["id"], attrs))
            if kind == "project":
                last_project = obj["id"]
            elif last_project:
                path = "%s/projects/%s/users/%s/roles/%s" % (self.srv.v3, last_project,
                                                             obj["id"], self.role_id)
                try:
                    g = self.srv.request("PUT", path, token=self.token, timeout=20)
                except OSError:
                    continue
                if g.status == 204:
                    self.ledger.ack_grant((last_project, obj["id"], self.role_id))
                else:
                    with self.ledger.lock:
                        self.ledger.rejected.append(("grant", path, g.status, g.body[:200]))


class CrashSafetyTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.srv = concord_launcher.Server()
        self.addCleanup(self.srv.cleanup)
        self.srv.start()
        r = self.srv.request("GET", self.srv.v3 + "/roles?name=member",
                             token=self.srv.admin_token())
        self.assertEqual(r.status, 200, r)
        roles = r.json()["roles"]
        self.assertEqual(len(roles), 1, "bootstrap must create exactly one 'member' role")
        self.role_id = roles[0]["id"]

    def run_round(self, ledger, kill_after, tag):
        token = self.srv.admin_token()
        stop = threading.Event()
        before = ledger.count
        writers = [Writer(self.srv, token, self.role_id, "%s%d" % (tag, n), ledger, stop)
                   for n in range(THREADS)]
        for w in writers:
            w.start()
        deadline = time.monotonic() + ROUND_LIMIT_S
        while ledger.count - before < kill_after and time.monotonic() < deadline:
            if not self.srv.alive():
                break
            time.sleep(0.005)
        self.srv.kill9()
        stop.set()
        for w in writers:
            w.join(timeout=60)
            self.assertFalse(w.is_alive(), "writer thread did not stop")
        self.assertGreaterEqual(ledger.count - before, kill_after,
                                "only %d acknowledged writes before the kill; rejected: %r\n%s"
                                % (ledger.count - before, ledger.rejected[:5],
                                   self.srv.log_tail()))

    def verify(self, ledger):
        token = self.srv.admin_token()
        get = lambda path: self.srv.request("GET", self.srv.v3 + path, token=token)  # noqa: E731
        self.assertEqual(ledger.rejected, [], "unexpected statuses during the run")
        for kind, name, oid, attrs in ledger.acked:
            r = get("/%ss/%s" % (kind, oid))
            self.assertEqual(r.status, 200, "acknowledged %s %s (%s) lost: %r"
                             % (kind, name, oid, r))
            obj = r.json()[kind]
            self.assertEqual(obj["name"], name)
            self.assertEqual(obj["domain_id"], "default")
            for k, v in attrs.items():
                self.assertEqual(obj.get(k), v, "%s %s: attribute %s" % (kind, oid, k))
            r = get("/%ss?name=%s" % (kind, urllib.parse.quote(name)))
            self.assertEqual(r.status, 200, r)
            ids = [o["id"] for o in r.json()[kind + "s"]]
            self.assertEqual(ids, [oid], "%s %s must exist exactly once" % (kind, name))
        for pid, uid, rid in ledger.grants:
            r = get("/projects/%s/users/%s/roles/%s" % (pid, uid, rid))
            self.assertEqual(r.status, 204, "acknowledged grant %s/%s lost: %r" % (pid, uid, r))
        for kind, name in ledger.unknown:
            r = get("/%ss?name=%s" % (kind, urllib.parse.quote(name)))
            self.assertEqual(r.status, 200, r)
            self.assertLessEqual(len(r.json()[kind + "s"]), 1, "%s %s duplicated" % (kind, name))

        domains = get("/domains")
        self.assertEqual(domains.status, 200, domains)
        domain_ids = {d["id"] for d in domains.json()["domains"]}
        self.assertIn("default", domain_ids)
        for kind in ("user", "project"):
            r = get("/%ss" % kind)
            self.assertEqual(r.status, 200, "listing %ss after restart: %r" % (kind, r))
            items = r.json()[kind + "s"]
            names = [(o.get("domain_id"), o["name"]) for o in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            self.assertEqual(dupes, [], "duplicate %s names" % kind)
            orphans = [o["id"] for o in items if o.get("domain_id") not in domain_ids]
            self.assertEqual(orphans, [], "%ss without an existing domain" % kind)
            listed = {o["id"] for o in items}
            acked = {oid for k, _, oid, _ in ledger.acked if k == kind}
            self.assertEqual(acked - listed, set(), "acknowledged %ss missing from list" % kind)
            # Nothing half-written: each listed item that was never acknowledged (its create
            # got no answer) can still be read on its own.
            for o in items:
                if o["name"].startswith(("pcs-", "ucs-")) and o["id"] not in acked:
                    one = get("/%ss/%s" % (kind, o["id"]))
                    self.assertEqual(one.status, 200, "listed %s %s unreadable: %r"
                                     % (kind, o["id"], one))
        r = get("/role_assignments?role.id=%s" % self.role_id)
        self.assertEqual(r.status, 200, r)
        # A new write works after recovery.
        r = self.srv.request("POST", self.srv.v3 + "/projects",
                             {"project": {"name": "cs-after-" + uuid.uuid4().hex[:8]}},
                             token=token)
        self.assertEqual(r.status, 201, r)

    def test_kill9_during_concurrent_writes(self):
        ledger = Ledger()
        for n, kill_after in enumerate(KILL_AFTER):
            with self.subTest(round=n, kill_after=kill_after):
                self.run_round(ledger, kill_after, "r%d" % n)
                self.srv.start()
                self.verify(ledger)
                print("\n  round %d: %d creates and %d grants acknowledged so far, %d requests "
                      "without an answer" % (n, len(ledger.acked), len(ledger.grants),
                                               len(ledger.unknown)), file=sys.stderr)
        self.assertGreater(len(ledger.acked), sum(KILL_AFTER) // 2)

    def test_kill9_during_start_then_recover(self):
        # Kill the process at several points of start-up (migration, bootstrap, listening),
        # then a normal start must succeed with a consistent store.
        data = self.srv.data_dir
        admin_pw = self.srv.admin_password
        self.srv.stop()
        for delay in (0.0, 0.05, 0.2, 0.5):
            with self.subTest(delay=delay):
                cmd = [concord_launcher.binary(), "all-in-one", "--data_dir=" + data,
                       "--server.port=0", "--log.level=warn"]
                import subprocess
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
                time.sleep(delay)
                try:
                    os.killpg(p.pid, 9)
                except ProcessLookupError:
                    pass
                p.wait(timeout=20)
                self.srv.start()
                self.assertEqual(self.srv.admin_password, admin_pw)
                ledger = Ledger()
                self.verify(ledger)
                self.srv.stop()


if __name__ == "__main__":
    unittest.main()
