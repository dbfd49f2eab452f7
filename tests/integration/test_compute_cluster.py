"""Compute across several hosts, and crash safety, with real processes.

A `concord server` (no in-process agent) plus three `concord agent` processes on this machine,
each with its own host name and state folder (the way the tests simulate a cluster):

* the three hosts appear as hypervisors, up;
* an anti-affinity server group spreads three servers over the three hosts;
* kill -9 of one agent marks its host down (and its servers' host_status DOWN);
* 100 concurrent creates with kill -9 of the server and of an agent in the middle: after
  restart every accepted server ends ACTIVE or ERROR exactly once, none is duplicated, no runc
  container exists without a server, and quota usage equals what exists.
"""
import concurrent.futures
import json
import os
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import concord_launcher  # noqa: E402
import workloads  # noqa: E402

V = {"X-OpenStack-Nova-API-Version": "2.37"}
ADMIN_V = {"X-OpenStack-Nova-API-Version": "2.79"}


class Cluster:
    def __init__(self, testcase, hosts=3, extra_args=()):
        # A fixed port: the agents must find the server again after it is killed and restarted.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.agents = []
        self.srv = concord_launcher.Server(port=port, extra_args=["--agent.enabled=false",
                                                       "--compute.down_after=3s",
                                                       "--compute.heartbeat_interval=500ms"]
                                           + list(extra_args))
        testcase.addCleanup(self.cleanup)
        self.srv.start()
        for i in range(hosts):
            name = "host%d" % (i + 1)
            cred = workloads.credential(concord_launcher.binary(), self.srv.data_dir, name)
            a = workloads.Agent(concord_launcher.binary(), self.srv.url, cred, name,
                                os.path.join(self.srv.data_dir, "agents", name),
                                ["--agent.vcpus=8", "--agent.ram_mb=8192", "--agent.disk_gb=50",
                                 "--agent.drivers=container", "--agent.subnet=10.99.%d.0/24" % (10 + i),
                                 "--agent.bridge=concordt%d" % i])
            self.agents.append(a.start())
        self.token = self.srv.admin_token()

    def cleanup(self):
        for a in self.agents:
            a.kill9()
        self.srv.kill9()
        workloads.reap(self.srv.data_dir)
        self.srv.cleanup()

    def api(self, method, path, body=None, headers=V):
        return self.srv.request(method, "/compute/v2.1" + path, body=body, headers=headers,
                                token=self.token)

    def hypervisors(self):
        r = self.api("GET", "/os-hypervisors/detail", headers=ADMIN_V)
        assert r.status == 200, r
        return {h["hypervisor_hostname"]: h for h in r.json()["hypervisors"]}

    def image(self, fixtures):
        r = self.srv.request("POST", "/image/v2/images", token=self.token,
                             body={"name": "busybox", "disk_format": "raw",
                                   "container_format": "docker", "visibility": "public"})
        assert r.status == 201, r
        image_id = r.json()["id"]
        with open(os.path.join(fixtures, "busybox-rootfs.tar"), "rb") as f:
            data = f.read()
        r = self.srv.request("PUT", "/image/v2/images/%s/file" % image_id, token=self.token,
                             body=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status == 204, r
        return image_id

    def server(self, sid):
        r = self.api("GET", "/servers/" + sid, headers=ADMIN_V)
        return r.json()["server"] if r.status == 200 else None


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fixtures = workloads.fixtures()

    def test_anti_affinity_and_host_down(self):
        c = Cluster(self)
        workloads.wait_for(lambda: len(c.hypervisors()) == 3, 60, what="3 hypervisors")
        for h in c.hypervisors().values():
            self.assertEqual(h["state"], "up")
        image = c.image(self.fixtures)
        r = c.api("POST", "/os-server-groups",
                  {"server_group": {"name": "spread", "policies": ["anti-affinity"]}})
        self.assertEqual(r.status, 200, r)
        group = r.json()["server_group"]["id"]
        ids = []
        for i in range(3):
            r = c.api("POST", "/servers",
                      {"server": {"name": "aa%d" % i, "imageRef": image, "flavorRef": "42",
                                  "networks": "none"},
                       "os:scheduler_hints": {"group": group}})
            self.assertEqual(r.status, 202, r)
            ids.append(r.json()["server"]["id"])
        servers = [workloads.wait_for(lambda s=s: (c.server(s) or {}).get("status") == "ACTIVE"
                                      and c.server(s), 120, what="ACTIVE " + s) for s in ids]
        hosts = [s["OS-EXT-SRV-ATTR:host"] for s in servers]
        self.assertEqual(sorted(hosts), ["host1", "host2", "host3"])
        # A fourth member has no host left: ERROR with Nova's fault.
        r = c.api("POST", "/servers",
                  {"server": {"name": "aa4", "imageRef": image, "flavorRef": "42",
                              "networks": "none"},
                   "os:scheduler_hints": {"group": group}})
        self.assertEqual(r.status, 202, r)
        fourth = workloads.wait_for(lambda: (c.server(r.json()["server"]["id"]) or {}).get(
            "status") == "ERROR" and c.server(r.json()["server"]["id"]), 60, what="ERROR")
        self.assertIn("No valid host", fourth["fault"]["message"])

        victim = c.agents[1]
        victim.kill9()
        workloads.wait_for(lambda: c.hypervisors()[victim.host]["state"] == "down", 30,
                           what="host down")
        on_victim = [s for s in servers if s["OS-EXT-SRV-ATTR:host"] == victim.host][0]
        shown = c.server(on_victim["id"])
        self.assertEqual(shown["host_status"], "DOWN")
        self.assertEqual(c.hypervisors()["host1"]["state"], "up")

    def test_kill9_during_100_concurrent_creates(self):
        c = Cluster(self)
        workloads.wait_for(lambda: len(c.hypervisors()) == 3, 60, what="3 hypervisors")
        image = c.image(self.fixtures)
        project = c.srv.request("GET", c.srv.v3 + "/auth/tokens", token=c.token,
                                headers={"X-Subject-Token": c.token}).json()["token"]["project"]["id"]
        c.api("PUT", "/os-quota-sets/" + project,
              {"quota_set": {"instances": 1000, "cores": 1000, "ram": 1000000}})

        accepted, refused = [], []

        def create(i):
            try:
                r = c.api("POST", "/servers", {"server": {"name": "crash%03d" % i,
                                                          "imageRef": image, "flavorRef": "42",
                                                          "networks": "none"}})
            except OSError:
                return None  # the server died under us: not acknowledged
            if r.status == 202:
                accepted.append(r.json()["server"]["id"])
            else:
                refused.append(r.status)
            return r.status

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(create, i) for i in range(100)]
            time.sleep(1.0)
            c.srv.kill9()
            c.agents[0].kill9()
            concurrent.futures.wait(futures)
        self.assertTrue(accepted, "no create was acknowledged before the kill")
        c.srv.start()
        c.agents[0].start()
        c.token = c.srv.admin_token()

        seen = {}

        def settled():
            r = c.api("GET", "/servers/detail?limit=1000", headers=ADMIN_V)
            if r.status != 200:
                seen["last"] = r.status
                return None
            servers = r.json()["servers"]
            pending = [(s["id"], s["status"], s["OS-EXT-STS:task_state"],
                        s.get("OS-EXT-SRV-ATTR:host")) for s in servers
                       if s["status"] not in ("ACTIVE", "ERROR") or s["OS-EXT-STS:task_state"]]
            seen["last"] = pending[:5] + ["... %d pending of %d" % (len(pending), len(servers))]
            return None if pending else servers
        try:
            servers = workloads.wait_for(settled, 300, interval=1.0, what="all servers settled")
        except AssertionError as e:
            raise AssertionError("%s; still pending: %s\nagent log:\n%s\nserver log:\n%s" % (
                e, seen.get("last"), c.agents[0].log_tail(), c.srv.log_tail())) from None
        ids = [s["id"] for s in servers]
        print("\n  %d creates acknowledged before the kill, %d refused, %d servers after restart "
              "(%d ACTIVE)" % (len(accepted), len(refused), len(servers),
                               sum(s["status"] == "ACTIVE" for s in servers)))
        self.assertEqual(len(ids), len(set(ids)), "duplicated server ids")
        missing = set(accepted) - set(ids)
        self.assertFalse(missing, "acknowledged creates lost: %s" % sorted(missing))
        names = [s["name"] for s in servers]
        self.assertEqual(len(names), len(set(names)), "a create was applied twice")

        # Quota usage equals what exists.
        r = c.api("GET", "/os-quota-sets/%s/detail" % project, headers=ADMIN_V)
        self.assertEqual(r.json()["quota_set"]["instances"]["in_use"], len(servers))

        # Every runc container belongs to an ACTIVE server; no orphan anywhere.
        active = {s["id"] for s in servers if s["status"] == "ACTIVE"}

        def containers_match():
            found = set()
            for item in workloads.leftovers(c.srv.data_dir):
                kind, _, name = item.partition(":")
                if kind == "runc":
                    found.add(name.replace("concord-", ""))
            return found == active or None
        workloads.wait_for(containers_match, 120, interval=1.0,
                           what="runc containers == ACTIVE servers")

        # Delete everything: nothing may be left behind.
        for sid in ids:
            self.assertEqual(c.api("DELETE", "/servers/" + sid).status, 204)
        workloads.wait_for(lambda: not workloads.leftovers(c.srv.data_dir), 180, interval=1.0,
                           what="no workload left after deleting every server")


if __name__ == "__main__":
    unittest.main()
