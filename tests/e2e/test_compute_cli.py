"""End-to-end compute with the real `openstack` CLI (python3-openstackclient 6.0).

A tenant uploads an image, lists flavors, creates a keypair and launches servers that really run
(a runc container from a busybox rootfs, and a QEMU TCG VM from a tiny bootable disk), sees the
console output, stops, starts, reboots, resizes and deletes them; two tenants cannot see or touch
each other's servers, images or keypairs; going over quota gives Nova's 403.

Workloads are real; every test's cleanup reaps what is left under the server's data folder
(tests/integration/workloads.py), after first asserting that Concord itself left nothing.
"""
import json
import os
import subprocess
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import concord_launcher  # noqa: E402
import workloads  # noqa: E402

OPENSTACK = os.environ.get("OPENSTACK_CLI", "/usr/bin/openstack")
CLI_TIMEOUT = 300
SRV = None
FIX = None
S = {}


def setUpModule():
    global SRV, FIX
    FIX = workloads.fixtures()
    SRV = concord_launcher.start_server(unittest.addModuleCleanup)
    unittest.addModuleCleanup(workloads.reap, SRV.data_dir)
    S["sfx"] = uuid.uuid4().hex[:6]


def env_for(user=None, password=None, project=None, version=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["HOME"] = SRV.tmp
    env.update(OS_AUTH_URL=SRV.auth_url, OS_USERNAME=user or "admin",
               OS_PASSWORD=password or SRV.admin_password, OS_PROJECT_NAME=project or "admin",
               OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
               OS_IDENTITY_API_VERSION="3", OS_REGION_NAME="RegionOne", OS_INTERFACE="public")
    if version:
        env["OS_COMPUTE_API_VERSION"] = version
    return env


def osc(env, *args, timeout=CLI_TIMEOUT):
    p = subprocess.run([OPENSTACK] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def ok(env, *args, timeout=CLI_TIMEOUT):
    code, out, err = osc(env, *args, timeout=timeout)
    if code != 0:
        raise AssertionError("openstack %s failed (%d):\n%s\n%s\nserver log:\n%s"
                             % (" ".join(args), code, out, err, SRV.log_tail()))
    return out


def okj(env, *args, timeout=CLI_TIMEOUT):
    return json.loads(ok(env, *(list(args) + ["-f", "json"]), timeout=timeout))


def wait_status(env, server, status, timeout=180):
    def check():
        code, out, _ = osc(env, "server", "show", server, "-f", "json")
        if code != 0:
            return None
        s = json.loads(out)
        if s["status"] == "ERROR" and status != "ERROR":
            raise AssertionError("server %s went to ERROR: %s" % (server, s.get("fault")))
        return s if s["status"] == status else None
    return workloads.wait_for(check, timeout, interval=0.5, what="%s %s" % (server, status))


def wait_console(env, server, needle, timeout=180):
    def check():
        code, out, _ = osc(env, "console", "log", "show", server)
        return out if code == 0 and needle in out else None
    return workloads.wait_for(check, timeout, interval=1.0, what="console of %s" % server)


class ComputeCliTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        admin = env_for()
        sfx = S["sfx"]
        for t in ("a", "b"):
            project, user = "p%s-%s" % (t, sfx), "u%s-%s" % (t, sfx)
            ok(admin, "project", "create", project)
            ok(admin, "user", "create", "--password", "pw-" + t, "--project", project, user)
            ok(admin, "role", "add", "--project", project, "--user", user, "member")
            S[t] = (user, "pw-" + t, project)
        S["env_a"] = env_for(*S["a"], version="2.37")
        S["env_b"] = env_for(*S["b"], version="2.37")

    def test_1_container_lifecycle(self):
        a = S["env_a"]
        img = okj(a, "image", "create", "--file", os.path.join(FIX, "busybox-rootfs.tar"),
                  "--disk-format", "raw", "--container-format", "docker", "busybox-" + S["sfx"])
        S["container_image"] = img["id"]
        shown = okj(a, "image", "show", img["id"])
        self.assertEqual(shown["status"], "active")
        flavors = okj(a, "flavor", "list")
        self.assertIn("c1.micro", [f["Name"] for f in flavors])
        key = ok(a, "keypair", "create", "k-" + S["sfx"])
        self.assertIn("PRIVATE KEY", key)

        srv = okj(a, "server", "create", "--image", img["id"], "--flavor", "c1.micro",
                  "--key-name", "k-" + S["sfx"], "--network", "none", "--wait", "c1")
        self.assertEqual(srv["status"], "ACTIVE")
        sid = srv["id"]
        wait_console(a, sid, "concord-guest:")

        ok(a, "server", "stop", sid)
        s = wait_status(a, sid, "SHUTOFF")
        # -f json gives the raw integer (4), the table the name.
        self.assertIn(s["OS-EXT-STS:power_state"], (4, "Shutdown"))
        ok(a, "server", "start", sid)
        s = wait_status(a, sid, "ACTIVE")
        self.assertIn(s["OS-EXT-STS:power_state"], (1, "Running"))
        ok(a, "server", "reboot", "--wait", sid)
        ok(a, "server", "reboot", "--hard", "--wait", sid)
        self.assertEqual(wait_status(a, sid, "ACTIVE")["status"], "ACTIVE")

        ok(a, "server", "resize", "--flavor", "m1.tiny", "--wait", sid)
        wait_status(a, sid, "VERIFY_RESIZE")
        ok(a, "server", "resize", "confirm", sid)
        s = wait_status(a, sid, "ACTIVE")
        self.assertIn("m1.tiny", json.dumps(s["flavor"]))

        net = okj(a, "server", "create", "--image", img["id"], "--flavor", "c1.micro",
                  "--network", "auto", "--wait", "c2")
        addrs = okj(a, "server", "show", net["id"])["addresses"]
        self.assertTrue(addrs, "network auto gave no address")
        S["container_servers"] = [sid, net["id"]]

        ok(a, "server", "delete", "--wait", net["id"])
        code, _, err = osc(a, "server", "show", net["id"])
        self.assertNotEqual(code, 0)
        self.assertIn("No server with a name or ID", err)

    def test_2_isolation(self):
        a, b = S["env_a"], S["env_b"]
        sid = S["container_servers"][0]
        code, _, err = osc(b, "server", "show", sid)
        self.assertNotEqual(code, 0, "tenant b sees tenant a's server")
        code, _, _ = osc(b, "server", "stop", sid)
        self.assertNotEqual(code, 0, "tenant b stopped tenant a's server")
        code, _, _ = osc(b, "server", "delete", sid)
        self.assertNotEqual(code, 0, "tenant b deleted tenant a's server")
        self.assertNotIn(sid, ok(b, "server", "list"))
        code, _, _ = osc(b, "image", "show", S["container_image"])
        self.assertNotEqual(code, 0, "tenant b sees tenant a's private image")
        self.assertNotIn("k-" + S["sfx"], ok(b, "keypair", "list"))
        self.assertEqual(wait_status(a, sid, "ACTIVE")["status"], "ACTIVE")

    def test_3_quota(self):
        admin, b = env_for(), S["env_b"]
        ok(admin, "quota", "set", "--instances", "1", S["b"][2])
        img = okj(b, "image", "create", "--file", os.path.join(FIX, "busybox-rootfs.tar"),
                  "--disk-format", "raw", "--container-format", "docker", "bb-b")
        okj(b, "server", "create", "--image", img["id"], "--flavor", "c1.nano", "--network",
            "none", "--wait", "q1")
        code, out, err = osc(b, "server", "create", "--image", img["id"], "--flavor", "c1.nano",
                             "--network", "none", "q2")
        self.assertNotEqual(code, 0)
        self.assertIn("Quota exceeded for instances", err)
        self.assertIn("HTTP 403", err)
        quota = okj(b, "quota", "show")
        self.assertEqual(quota.get("instances"), 1)

    def test_4_vm_lifecycle(self):
        a = S["env_a"]
        img = okj(a, "image", "create", "--file", os.path.join(FIX, "vm-disk.qcow2"),
                  "--disk-format", "qcow2", "--container-format", "bare", "vm-" + S["sfx"])
        srv = okj(a, "server", "create", "--image", img["id"], "--flavor", "m1.tiny",
                  "--network", "none", "--wait", "v1", timeout=600)
        sid = srv["id"]
        wait_console(a, sid, "concord-guest: hello from the vm", timeout=300)
        ok(a, "server", "stop", sid)
        wait_status(a, sid, "SHUTOFF", timeout=180)
        ok(a, "server", "start", sid)
        wait_status(a, sid, "ACTIVE", timeout=180)
        ok(a, "server", "reboot", "--hard", "--wait", sid, timeout=300)
        ok(a, "server", "delete", "--wait", sid, timeout=300)
        code, _, _ = osc(a, "server", "show", sid)
        self.assertNotEqual(code, 0)

    def test_5_cleanup_leaves_nothing(self):
        a = S["env_a"]
        for sid in S.get("container_servers", [])[:1]:
            ok(a, "server", "delete", "--wait", sid)
        b = S["env_b"]
        for line in okj(b, "server", "list"):
            ok(b, "server", "delete", "--wait", line["ID"])
        workloads.wait_for(lambda: not workloads.leftovers(SRV.data_dir), 60,
                           what="no runc container or QEMU process left")


if __name__ == "__main__":
    unittest.main()
