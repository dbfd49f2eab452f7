"""Tokens across restarts, crashes, revocation, key rotation and expiry, on the real binary.

Tokens are Fernet tokens validated with the keys in the data dir, and revocations live in the
store, so both must survive a graceful restart and a kill -9. `concord token-rotate` promotes
the staged key; a token stays valid while its key is among the max_active_keys newest, and
becomes invalid (401) once rotated out. Expiry uses a 5 s TTL (the binary allows 1 s):
the token is issued when the module starts and checked last, so the wait overlaps other tests.
"""
import datetime
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import concord_launcher  # noqa: E402

MAX_ACTIVE_KEYS = 3
SHORT_TTL = "5s"
SHORT = {}


def setUpModule():
    # Issue the short-lived token first so its expiry overlaps the other tests.
    srv = concord_launcher.Server(extra_args=["--identity.token_ttl=" + SHORT_TTL])
    unittest.addModuleCleanup(srv.cleanup)
    srv.start()
    token, body = srv.issue_token("admin", srv.admin_password, "admin")
    SHORT.update(srv=srv, token=token, body=body)


def parse_time(text):
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    raise AssertionError("expires_at %r is in neither Keystone format" % text)


class TokenLifecycleTest(unittest.TestCase):
    def setUp(self):
        self.srv = concord_launcher.Server(
            extra_args=["--identity.max_active_keys=%d" % MAX_ACTIVE_KEYS])
        self.addCleanup(self.srv.cleanup)
        self.srv.start()

    def validate(self, subject, auth=None):
        auth = auth or self.srv.admin_token()
        return self.srv.request("GET", self.srv.v3 + "/auth/tokens", token=auth,
                                headers={"X-Subject-Token": subject})

    def assert_valid(self, token, what):
        r = self.validate(token)
        self.assertEqual(r.status, 200, "%s: validate: %r" % (what, r))
        r = self.srv.request("GET", self.srv.v3 + "/projects", token=token)
        self.assertEqual(r.status, 200, "%s: use as X-Auth-Token: %r" % (what, r))
        return r

    def assert_invalid(self, token, what):
        r = self.validate(token)
        self.assertEqual(r.status, 404, "%s: validate must be 404: %r" % (what, r))
        r = self.srv.request("GET", self.srv.v3 + "/projects", token=token)
        self.assertEqual(r.status, 401, "%s: use as X-Auth-Token must be 401: %r" % (what, r))

    def test_token_survives_graceful_restart(self):
        token, body = self.srv.issue_token("admin", self.srv.admin_password, "admin")
        self.assert_valid(token, "before restart")
        code = self.srv.stop()
        self.assertEqual(code, 0, "SIGTERM must exit 0:\n" + self.srv.log_tail())
        self.srv.start()
        self.assert_valid(token, "after restart")
        r = self.validate(token)
        self.assertEqual(r.json()["token"]["expires_at"], body["expires_at"])
        self.assertEqual(r.json()["token"]["project"]["id"], body["project"]["id"])

    def test_token_survives_kill9(self):
        token, _ = self.srv.issue_token("admin", self.srv.admin_password, "admin")
        self.srv.kill9()
        self.srv.start()
        self.assert_valid(token, "after kill -9")

    def test_revoked_token_stays_revoked_after_restart(self):
        admin = self.srv.admin_token()
        token, _ = self.srv.issue_token("admin", self.srv.admin_password, "admin")
        self.assert_valid(token, "before revoke")
        r = self.srv.request("DELETE", self.srv.v3 + "/auth/tokens", token=admin,
                             headers={"X-Subject-Token": token})
        self.assertEqual(r.status, 204, r)
        self.assert_invalid(token, "after revoke")
        self.srv.restart()
        self.assert_invalid(token, "revoked, after graceful restart")

    def test_revocation_acknowledged_then_kill9(self):
        admin = self.srv.admin_token()
        token, _ = self.srv.issue_token("admin", self.srv.admin_password, "admin")
        r = self.srv.request("DELETE", self.srv.v3 + "/auth/tokens", token=admin,
                             headers={"X-Subject-Token": token})
        self.assertEqual(r.status, 204, r)
        self.srv.kill9()
        self.srv.start()
        self.assert_invalid(token, "revoked, after kill -9")

    def test_disabled_user_tokens_rejected_after_restart(self):
        admin = self.srv.admin_token()
        name = "tl-user-%d" % os.getpid()
        r = self.srv.request("POST", self.srv.v3 + "/users",
                             {"user": {"name": name, "password": "pw-tl-1"}}, token=admin)
        self.assertEqual(r.status, 201, r)
        uid = r.json()["user"]["id"]
        token, _ = self.srv.issue_token(name, "pw-tl-1")
        self.assertEqual(self.validate(token, admin).status, 200)
        r = self.srv.request("PATCH", self.srv.v3 + "/users/" + uid,
                             {"user": {"enabled": False}}, token=admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.validate(token, admin).status, 404,
                         "token of a disabled user must not validate")
        self.srv.restart()
        self.assertEqual(self.validate(token).status, 404,
                         "token of a disabled user must not validate after restart")

    def rotate(self):
        p = subprocess.run([concord_launcher.binary(), "token-rotate",
                            "--data_dir=" + self.srv.data_dir,
                            "--identity.max_active_keys=%d" % MAX_ACTIVE_KEYS],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        self.assertEqual(p.returncode, 0, "token-rotate: %s" % p.stdout.decode(errors="replace"))

    def key_files(self):
        d = os.path.join(self.srv.data_dir, "fernet-keys")
        return sorted(int(f) for f in os.listdir(d) if f.isdigit())

    def test_key_rotation(self):
        t0, _ = self.srv.issue_token("admin", self.srv.admin_password, "admin")
        keys0 = self.key_files()
        # Rotation runs against a stopped server (as keystone-manage fernet_rotate would on a
        # host whose API is restarted); the restart makes key reload timing irrelevant.
        self.srv.stop()
        self.rotate()
        keys1 = self.key_files()
        self.assertNotEqual(keys0, keys1, "token-rotate did not change the key repository")
        self.assertIn(0, keys1, "no staged key 0 after rotation")
        self.assertEqual(max(keys1), max(keys0) + 1, "staged key was not promoted")
        self.srv.start()
        self.assert_valid(t0, "issued before one rotation")
        t1, _ = self.srv.issue_token("admin", self.srv.admin_password, "admin")
        self.assert_valid(t1, "issued after one rotation")
        # Rotate until t0's key is no longer among the active keys.
        self.srv.stop()
        for _ in range(MAX_ACTIVE_KEYS - 1):
            self.rotate()
        self.assertLessEqual(len(self.key_files()), MAX_ACTIVE_KEYS)
        self.srv.start()
        self.assert_valid(self.srv.admin_token(), "issued after all rotations")
        r = self.srv.request("GET", self.srv.v3 + "/projects", token=t0)
        self.assertEqual(r.status, 401, "token whose key was rotated out must be 401: %r" % r)
        r = self.validate(t0)
        self.assertEqual(r.status, 404, "validating a rotated-out token must be 404: %r" % r)

    def test_zz_expired_token(self):
        srv, token, body = SHORT["srv"], SHORT["token"], SHORT["body"]
        expires = parse_time(body["expires_at"])
        issued = parse_time(body["issued_at"])
        self.assertLessEqual((expires - issued).total_seconds(), 6,
                             "--identity.token_ttl=%s was not applied: %s .. %s"
                             % (SHORT_TTL, body["issued_at"], body["expires_at"]))
        wait = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + 2
        self.assertLess(wait, 120)
        if wait > 0:
            time.sleep(wait)
        fresh = srv.admin_token()
        r = srv.request("GET", srv.v3 + "/projects", token=token)
        self.assertEqual(r.status, 401, "expired X-Auth-Token must be 401: %r" % r)
        r = srv.request("GET", srv.v3 + "/auth/tokens", token=fresh,
                        headers={"X-Subject-Token": token})
        self.assertEqual(r.status, 404, "expired X-Subject-Token must be 404: %r" % r)


if __name__ == "__main__":
    unittest.main()
