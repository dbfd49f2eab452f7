"""Managed database operations extensions end to end (issue 4, "Operations").

Starts `concord all-in-one` with its in-process agent running the database driver (a real
PostgreSQL 15 engine as the concord-db user). Through the Trove API with Concord's additions:

* an instance created with `deletion_protection` and a `backup_schedule` whose window has
  started: DELETE answers 422 until protection is turned off;
* an operator runs the operations pass (POST /mgmt/operations, admin): the automated backup
  `automated-<date>` is made by the real agent and COMPLETES; a second pass makes no second one;
* the real agent's status detail reaches the server: the instance shows `storage` with the
  engine's disk use, `/metrics` the applied state revision;
* the events feed tells the story (created, backup.automated.started, backup.completed,
  deletion_protection.disabled, deleted), and another tenant gets 404 for it.

Needs root and the Debian packages of scripts/install-deps.sh; skips with the reason otherwise.
"""
import datetime
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import database_fixture  # noqa: E402

ACTIVE_TIMEOUT = 180.0
BACKUP_TIMEOUT = 240.0
DETAIL_TIMEOUT = 60.0

CLOUD = None
SRV = None


def setUpModule():
    global CLOUD, SRV
    # A pool of its own: see database_fixture.Cloud.
    CLOUD = database_fixture.Cloud("dbops", "127.78.9.0/24")
    DatabaseOperationsTest.cloud = CLOUD
    SRV = CLOUD.srv


def trove(who, method, path, body=None):
    return CLOUD.trove(who, method, path, body)


class DatabaseOperationsTest(database_fixture.InstanceWaits, unittest.TestCase):
    active_timeout = ACTIVE_TIMEOUT

    def instance(self, iid):
        r = trove("a", "GET", "/instances/" + iid)
        self.assertEqual(r.status, 200, r)
        inst = r.json()["instance"]
        if inst["status"] == "ERROR":
            self.fail("instance went to ERROR: %r\n%s" % (inst, SRV.log_tail(80)))
        return inst

    def run_pass(self):
        admin = SRV.admin_token()
        projects = SRV.request("GET", SRV.v3 + "/projects?name=admin", token=admin).json()
        admin_project = projects["projects"][0]["id"]
        r = SRV.request("POST", "/database/v1.0/%s/mgmt/operations" % admin_project, token=admin)
        self.assertEqual(r.status, 204, r)

    def events(self, iid, who="a"):
        r = trove(who, "GET", "/instances/%s/events" % iid)
        self.assertEqual(r.status, 200, r)
        return [e["type"] for e in r.json()["events"]]

    def test_protected_scheduled_instance(self):
        # A window that started a minute ago (UTC), so the first pass makes today's backup.
        now = datetime.datetime.now(datetime.timezone.utc)
        if now.hour == 0 and now.minute == 0:
            time.sleep(61)  # today's window must start after midnight
            now = datetime.datetime.now(datetime.timezone.utc)
        start = now - datetime.timedelta(minutes=1)
        window = start.strftime("%H:%M")
        r = trove("a", "POST", "/instances", {"instance": {
            "name": "ops1", "flavorRef": "2", "volume": {"size": 1},
            "datastore": {"type": "postgresql", "version": "15"},
            "deletion_protection": True,
            "backup_schedule": {"window": window, "retention_days": 2}}})
        self.assertEqual(r.status, 200, r)
        iid = r.json()["instance"]["id"]
        self.assertTrue(r.json()["instance"]["deletion_protection"])
        self.assertEqual(r.json()["instance"]["backup_schedule"],
                         {"window": window, "retention_days": 2})
        self.wait_status("a", iid)

        # Protected: the delete is refused with Trove's 422, naming the flag.
        r = trove("a", "DELETE", "/instances/" + iid)
        self.assertEqual(r.status, 422, r)
        self.assertIn("deletion_protection", r.json()["unprocessableEntity"]["message"])

        # The agent's detail reaches the view and the metrics.
        inst = self.eventually(lambda: ("storage" in self.instance(iid), self.instance(iid)),
                               "storage in the view", DETAIL_TIMEOUT)
        self.assertGreater(inst["storage"]["used_bytes"], 0, inst)
        self.assertFalse(inst["storage"]["low"], inst)
        r = trove("a", "GET", "/instances/%s/metrics" % iid)
        self.assertEqual(r.status, 200, r)
        m = r.json()["metrics"]
        self.assertEqual(m["volume_bytes"], 1 << 30, m)
        self.assertGreater(m["disk_used_bytes"], 0, m)
        self.assertGreaterEqual(m["applied_revision"], 1, m)

        # The operations pass makes today's automated backup, which the agent completes.
        self.run_pass()
        r = trove("a", "GET", "/instances/%s/backups" % iid)
        self.assertEqual(r.status, 200, r)
        backups = r.json()["backups"]
        self.assertEqual(len(backups), 1, backups)
        self.assertEqual(backups[0]["name"], "automated-" + start.strftime("%Y-%m-%d"))
        bid = backups[0]["id"]

        def completed():
            b = trove("a", "GET", "/backups/" + bid).json()["backup"]
            if b["status"] == "FAILED":
                self.fail("automated backup FAILED: %r" % b)
            return b["status"] == "COMPLETED", b
        self.eventually(completed, "backup COMPLETED", BACKUP_TIMEOUT)
        self.wait_status("a", iid, want=("ACTIVE",))
        self.run_pass()
        r = trove("a", "GET", "/instances/%s/backups" % iid)
        self.assertEqual(len(r.json()["backups"]), 1, r.json())

        # Another tenant cannot read the feed.
        r = trove("b", "GET", "/instances/%s/events" % iid)
        self.assertEqual(r.status, 404, r)

        r = trove("a", "PATCH", "/instances/" + iid,
                  {"instance": {"deletion_protection": False}})
        self.assertEqual(r.status, 202, r)
        r = trove("a", "DELETE", "/instances/" + iid)
        self.assertEqual(r.status, 202, r)
        types = self.events(iid)
        self.assertEqual(types[0], "created", types)
        for t in ("backup.automated.started", "backup.completed",
                  "deletion_protection.disabled", "deleted"):
            self.assertEqual(types.count(t), 1, types)
        self.assertLess(types.index("backup.automated.started"), types.index("backup.completed"))
        self.assertEqual(types[-1], "deleted", types)
        r = trove("a", "DELETE", "/backups/" + bid)
        self.assertEqual(r.status, 202, r)


if __name__ == "__main__":
    unittest.main()
