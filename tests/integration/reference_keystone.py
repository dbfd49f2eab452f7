#!/usr/bin/python3
"""Runs the real Keystone (Debian's, under uWSGI) behind Concord's launch contract.

Why: the integration, e2e and Tempest harnesses must be proven against a real Keystone before
they are trusted against Concord, and they should not need a second code path to do it. This
script accepts the same command line as `concord all-in-one` and produces the same files
(server.json written last, clouds.yaml, openrc), so every harness runs unchanged with
CONCORD_BIN=tests/integration/reference_keystone.py. server.json also says
"reference": "keystone", so tests of Concord-only features (/healthz, /metrics) can skip.

Keystone runs as two single-threaded uWSGI workers (lazy-apps, WAL): with SQLite, threads
or an app loaded before the fork make Keystone fail with cross-thread connection errors and
"database is locked". It is mounted at /identity (so the auth URL is <url>/identity/v3, as
with Concord). SIGTERM stops uWSGI and exits; if this process is killed with -9, uWSGI dies
with it (PR_SET_PDEATHSIG), which is what the crash tests need.

Run on /usr/bin/python3 (Debian's Python, which has keystone installed).
"""
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

KEYSTONE_MANAGE = "/usr/bin/keystone-manage"
UWSGI = "/usr/bin/uwsgi"
# uWSGI's --mount loads a file only when its name ends in .py/.wsgi, which Debian's
# keystone-wsgi-public does not; a two-line app file in the data dir stands in for it.
WSGI_APP = ("from keystone.server.wsgi import initialize_public_application\n"
            "application = initialize_public_application()\n")


def parse_args(argv):
    if not argv or argv[0] not in ("all-in-one", "token-rotate"):
        sys.exit("usage: reference_keystone.py all-in-one --data_dir=DIR [--server.port=N] "
                 "[--bootstrap.admin_password=PW] [--log.level=L]")
    opts = {"data_dir": None, "server.port": "0", "bootstrap.admin_password": None,
            "log.level": "warn", "identity.token_ttl": "1h", "command": argv[0]}
    for arg in argv[1:]:
        if not arg.startswith("--") or "=" not in arg:
            sys.exit("reference_keystone: unsupported argument %r" % arg)
        key, value = arg[2:].split("=", 1)
        opts[key] = value
    if not opts["data_dir"]:
        sys.exit("reference_keystone: --data_dir is required")
    return opts


def seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit) and text[:-len(unit)].isdigit():
            return max(1, int(int(text[:-len(unit)]) * units[unit]))
    return int(text)


def run(cmd, timeout=300):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout.decode(errors="replace"))
        sys.exit("reference_keystone: %s failed with %d" % (" ".join(cmd), proc.returncode))


def free_port():
    # A small race (the port is released before uWSGI binds it) is acceptable for a reference
    # tool; Concord itself binds port 0 and reports the real port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_atomic(path, text, mode=0o600):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def set_pdeathsig():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def token_rotate(opts):
    """`concord token-rotate` stand-in: keystone-manage fernet_rotate on the data dir."""
    data = os.path.abspath(opts["data_dir"])
    conf = os.path.join(data, "keystone.conf")
    if not os.path.exists(conf):
        sys.exit("reference_keystone: no keystone.conf in %s" % data)
    run([KEYSTONE_MANAGE, "--config-file", conf, "fernet_rotate",
         "--keystone-user", "root", "--keystone-group", "root"])
    print("rotated the token keys in %s/fernet-keys" % data)


def main():
    opts = parse_args(sys.argv[1:])
    if opts["command"] == "token-rotate":
        return token_rotate(opts)
    data = os.path.abspath(opts["data_dir"])
    os.makedirs(data, exist_ok=True)
    try:
        os.unlink(os.path.join(data, "server.json"))
    except FileNotFoundError:
        pass

    pw_file = os.path.join(data, "admin_password")
    password = opts["bootstrap.admin_password"]
    if password is None:
        if os.path.exists(pw_file):
            with open(pw_file) as f:
                password = f.read().strip()
        else:
            password = secrets.token_urlsafe(16)
    write_atomic(pw_file, password)

    conf = os.path.join(data, "keystone.conf")
    log_debug = "true" if opts["log.level"] in ("debug", "trace") else "false"
    with open(conf, "w") as f:
        f.write(f"""[DEFAULT]
debug = {log_debug}
use_stderr = true
[database]
connection = sqlite:///{data}/keystone.db
[token]
provider = fernet
expiration = {seconds(opts["identity.token_ttl"])}
[fernet_tokens]
key_repository = {data}/fernet-keys
max_active_keys = {opts.get("identity.max_active_keys", "3")}
[fernet_receipts]
key_repository = {data}/fernet-receipts
[credential]
key_repository = {data}/credential-keys
[identity]
password_hash_rounds = 4
[cache]
enabled = false
""")
    base = [KEYSTONE_MANAGE, "--config-file", conf]
    run(base + ["db_sync"])
    # In the default rollback-journal mode Keystone's own read connection blocks its writer's
    # commit (role create fails with "database is locked" after 5 s); WAL lets them coexist.
    import sqlite3
    db = sqlite3.connect(os.path.join(data, "keystone.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    for what, repo in (("fernet_setup", "fernet-keys"), ("credential_setup", "credential-keys")):
        if not os.path.isdir(os.path.join(data, repo)):
            run(base + [what, "--keystone-user", "root", "--keystone-group", "root"])
    port = int(opts["server.port"]) or free_port()
    url = "http://127.0.0.1:%d" % port
    run(base + ["bootstrap", "--bootstrap-password", password,
                "--bootstrap-admin-url", url + "/identity",
                "--bootstrap-internal-url", url + "/identity",
                "--bootstrap-public-url", url + "/identity",
                "--bootstrap-region-id", "RegionOne"])

    app_file = os.path.join(data, "keystone_app.py")
    with open(app_file, "w") as f:
        f.write(WSGI_APP)
    env = dict(os.environ, OS_KEYSTONE_CONFIG_DIR=data, OS_KEYSTONE_CONFIG_FILES="keystone.conf")
    log = open(os.path.join(data, "uwsgi.log"), "ab")
    uwsgi = subprocess.Popen(
        [UWSGI, "--plugin", "python3", "--http-socket", "127.0.0.1:%d" % port,
         "--mount", "/identity=" + app_file, "--manage-script-name", "--need-app",
         "--master", "--lazy-apps", "--processes", "2", "--threads", "1", "--die-on-term",
         "--buffer-size", "65535", "--disable-logging",
         # uWSGI's http-socket does not keep connections alive; without this header
         # keystoneauth reuses a closed socket and gets "Connection reset by peer".
         "--add-header", "Connection: close"],
        env=env, stdout=log, stderr=log, preexec_fn=set_pdeathsig)

    # The handler only records the request: calling Popen.wait from a signal handler while the
    # main loop is inside Popen.wait deadlocks on the Popen's internal lock.
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))

    def shutdown_if_asked():
        if not stopping:
            return
        uwsgi.terminate()
        try:
            uwsgi.wait(timeout=20)
        except subprocess.TimeoutExpired:
            uwsgi.kill()
            uwsgi.wait(timeout=20)
        sys.exit(0)

    deadline = time.monotonic() + 120
    while True:
        shutdown_if_asked()
        if uwsgi.poll() is not None:
            sys.exit("reference_keystone: uwsgi exited with %d (see %s/uwsgi.log)"
                     % (uwsgi.returncode, data))
        try:
            with urllib.request.urlopen(url + "/identity/v3", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            uwsgi.kill()
            sys.exit("reference_keystone: keystone did not answer within 120 s")
        time.sleep(0.2)

    auth_url = url + "/identity/v3"
    write_atomic(os.path.join(data, "clouds.yaml"), f"""clouds:
  concord-admin:
    auth:
      auth_url: {auth_url}
      username: admin
      password: "{password}"
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
""")
    write_atomic(os.path.join(data, "openrc"), f"""export OS_AUTH_URL={auth_url}
export OS_USERNAME=admin
export OS_PASSWORD='{password}'
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
export OS_INTERFACE=public
export OS_IDENTITY_API_VERSION=3
""")
    write_atomic(os.path.join(data, "server.json"),
                 json.dumps({"url": url, "pid": os.getpid(), "reference": "keystone"}), 0o644)

    while True:
        shutdown_if_asked()
        code = uwsgi.poll()
        if code is not None:
            sys.exit("reference_keystone: uwsgi exited unexpectedly with %d" % code)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
