"""Starts and stops the real `concord all-in-one` binary for out-of-process tests.

Every wait here is bounded and every process started here is stopped by the owner's cleanup,
even when a test fails, so a broken binary makes tests fail quickly instead of hanging.
Standard library only (runs on /usr/bin/python3 next to Debian's OpenStack tools).

Environment:
  CONCORD_BIN            the binary (default /work/main/build/default/src/cmd/concord). The
                         Keystone stand-in tests/integration/reference_keystone.py accepts the
                         same command line and can be used to prove the harnesses.
  CONCORD_START_TIMEOUT  seconds to wait for server.json (default 60)
  CONCORD_KEEP_TMP=1     keep temp dirs (data dir and server log) for post-mortems
"""
import glob
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

DEFAULT_BIN = "/work/main/build/default/src/cmd/concord"
HTTP_TIMEOUT = 30.0


def binary():
    return os.environ.get("CONCORD_BIN") or DEFAULT_BIN


def unmount_volumes_under(root):
    """Detaches the database volumes mounted under an engine root (each instance's
    <root>/<id>/v, src/compute/driver/database_volume.h), so the root can be removed:
    rmtree stops at a mount point, and a leaked mount keeps its loop device."""
    prefix = os.path.normpath(root) + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    for point in sorted(points, key=len, reverse=True):
        point = point.replace("\\040", " ")
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


class LaunchError(Exception):
    pass


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict with lower-case names
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        text = self.body[:300].decode("utf-8", errors="replace")
        return "<%d %s %r>" % (self.status, self.header("content-type"), text)


def parse_openrc(text):
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if words and words[0] == "export":
            words = words[1:]
        for w in words:
            if "=" in w:
                k, v = w.split("=", 1)
                env[k] = v
    return env


def parse_clouds_yaml(text):
    """Reads auth keys from clouds.yaml without a YAML library (flat `key: value` lines)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s+([A-Za-z_]+):\s*(.*?)\s*$", line)
        if not m or not m.group(2):
            continue
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out.setdefault(m.group(1), value)
    return out


class Server:
    """One `concord all-in-one` process on port 0 with its own data dir."""

    def __init__(self, data_dir=None, admin_password=None, extra_args=(), port=0):
        self.tmp = tempfile.mkdtemp(prefix="concord-it-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.admin_password = admin_password
        self.extra_args = list(extra_args)
        self.port = port  # 0: a free one per start; fixed when peers must find it after a restart
        self.proc = None
        self.url = None
        self.auth_url = None
        self.info = {}
        self.log_path = os.path.join(self.tmp, "server.log")
        self.starts = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, timeout=None):
        if self.proc is not None and self.proc.poll() is None:
            raise LaunchError("already running")
        timeout = timeout or float(os.environ.get("CONCORD_START_TIMEOUT", "60"))
        os.makedirs(self.data_dir, exist_ok=True)
        ready = os.path.join(self.data_dir, "server.json")
        # A previous run's file must not be mistaken for readiness.
        if os.path.exists(ready):
            os.unlink(ready)
        cmd = [binary(), "all-in-one", "--data_dir=" + self.data_dir, "--server.port=%d" % self.port,
               "--log.level=" + os.environ.get("CONCORD_LOG_LEVEL", "warn")]
        if self.admin_password:
            cmd.append("--bootstrap.admin_password=" + self.admin_password)
        cmd += self.extra_args
        log = open(self.log_path, "ab")
        log.write(("\n==== start %d: %s\n" % (self.starts, " ".join(cmd))).encode())
        log.flush()
        self.starts += 1
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise LaunchError("concord exited with %d before it was ready:\n%s"
                                  % (code, self.log_tail()))
            if os.path.exists(ready):
                try:
                    with open(ready) as f:
                        self.info = json.load(f)
                    break
                except (OSError, ValueError):
                    pass  # write-then-rename promises a whole file; tolerate a slow FS anyway
            if time.monotonic() > deadline:
                self.kill9()
                raise LaunchError("concord did not write %s within %.0f s:\n%s"
                                  % (ready, timeout, self.log_tail()))
            time.sleep(0.05)
        if self.info.get("pid") not in (None, self.proc.pid):
            raise LaunchError("server.json pid %s is not the launched process %d"
                              % (self.info.get("pid"), self.proc.pid))
        self.url = self.info["url"].rstrip("/")
        self._read_credentials()
        return self

    def _read_credentials(self):
        rc_path = os.path.join(self.data_dir, "openrc")
        cy_path = os.path.join(self.data_dir, "clouds.yaml")
        rc = {}
        if os.path.exists(rc_path):
            with open(rc_path) as f:
                rc = parse_openrc(f.read())
        cy = {}
        if os.path.exists(cy_path):
            with open(cy_path) as f:
                cy = parse_clouds_yaml(f.read())
        self.auth_url = (rc.get("OS_AUTH_URL") or cy.get("auth_url") or
                         self.url + "/identity/v3").rstrip("/")
        password = rc.get("OS_PASSWORD") or cy.get("password")
        if self.admin_password and password and password != self.admin_password:
            raise LaunchError("openrc/clouds.yaml password differs from --bootstrap.admin_password")
        self.admin_password = self.admin_password or password
        if not self.admin_password:
            raise LaunchError("no admin password in %s or %s" % (rc_path, cy_path))

    def stop(self, timeout=20):
        """SIGTERM, then kill -9 after `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        code = self.proc.returncode
        return code

    def kill9(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # The whole session: the Keystone stand-in has uWSGI children.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        """Stops the server (if running) and removes the temp dir unless CONCORD_KEEP_TMP."""
        try:
            self.stop()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.kill9()
            self.reap_database_engines()
            if os.environ.get("CONCORD_KEEP_TMP"):
                print("concord_launcher: kept", self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def reap_database_engines(self):
        """Stops the database engines the in-process agent left running and removes their root.

        Engines run detached as concord-db under /var/lib/concord/database/<FNV-1a 64 of the
        agent's state folder> (src/compute/driver/database_driver.cc) and outlive the server by
        design, so instances a failing test did not delete would otherwise keep their addresses
        and ports and break the next run on this machine."""
        roots = []
        for state_dir in glob.glob(os.path.join(os.path.abspath(self.data_dir), "agent-*")):
            h = 14695981039346656037
            for c in os.path.normpath(state_dir).encode():
                h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
            roots.append("/var/lib/concord/database/%016x/" % h)
        if not roots:
            return
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(root in cmd for root in roots):
                pids.append(int(entry))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.time() + 10
        while pids and time.time() < deadline:
            pids = [p for p in pids if os.path.exists("/proc/%d" % p)]
            time.sleep(0.05)
        for root in roots:
            unmount_volumes_under(root)
            shutil.rmtree(root, ignore_errors=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", errors="replace").splitlines()
            return "\n".join(data[-lines:])
        except OSError:
            return "(no log)"

    @property
    def is_reference(self):
        return self.info.get("reference") == "keystone"

    # ---- HTTP ------------------------------------------------------------------------------

    @property
    def host_port(self):
        u = urllib.parse.urlsplit(self.url)
        return u.hostname, u.port

    @property
    def v3(self):
        """Path prefix of Keystone v3 (e.g. /identity/v3)."""
        return urllib.parse.urlsplit(self.auth_url).path.rstrip("/")

    def request(self, method, path, body=None, headers=None, token=None, timeout=HTTP_TIMEOUT):
        """One request on a fresh connection. `body` may be bytes, str or a JSON value."""
        host, port = self.host_port
        hdrs = {"Accept": "application/json"}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        if token:
            hdrs["X-Auth-Token"] = token
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def raw(self, data, timeout=10.0):
        """Sends raw bytes, returns (response bytes, closed_by_server)."""
        host, port = self.host_port
        s = socket.create_connection((host, port), timeout=timeout)
        try:
            s.sendall(data)
            chunks = []
            closed = False
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                chunks.append(chunk)
            return b"".join(chunks), closed
        finally:
            s.close()

    # ---- identity helpers ------------------------------------------------------------------

    def password_auth_body(self, username, password, project=None, domain="Default",
                           user_id=None):
        user = {"id": user_id} if user_id else {"name": username, "domain": {"name": domain}}
        user["password"] = password
        auth = {"identity": {"methods": ["password"], "password": {"user": user}}}
        if project:
            auth["scope"] = {"project": {"name": project, "domain": {"name": domain}}}
        return {"auth": auth}

    def issue_token(self, username, password, project=None):
        r = self.request("POST", self.v3 + "/auth/tokens",
                         self.password_auth_body(username, password, project))
        if r.status != 201:
            raise LaunchError("token for %s: %r" % (username, r))
        return r.header("x-subject-token"), r.json()["token"]

    def admin_token(self):
        return self.issue_token("admin", self.admin_password, "admin")[0]


def start_server(testcase_or_module_cleanup, **kwargs):
    """Starts a server and registers its cleanup with addCleanup / addModuleCleanup."""
    srv = Server(**kwargs)
    testcase_or_module_cleanup(srv.cleanup)
    srv.start()
    return srv
