#!/usr/bin/python3
"""Runs the real Keystone (Debian's, under uWSGI) behind Concord's launch contract.

Why: the integration, e2e and Tempest harnesses must be proven against a real Keystone before
they are trusted against Concord, and they should not need a second code path to do it. This
script accepts the same command line as `concord all-in-one` and produces the same files
(server.json written last, clouds.yaml, openrc), so every harness runs unchanged with
CONCORD_BIN=tests/integration/reference_keystone.py. server.json also says
"reference": "keystone", so tests of Concord-only features (/healthz, /metrics) can skip.

Keystone is mounted at /identity (so the auth URL is <url>/identity/v3, as with Concord).
SIGTERM stops uWSGI and exits; if this process is killed with -9, uWSGI dies with it
(PR_SET_PDEATHSIG), which is what the crash tests need.

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
WSGI_FILE = "/usr/bin/keystone-wsgi-public"


def parse_args(argv):
    if not argv or argv[0] != "all-in-one":
        sys.exit("usage: reference_keystone.py all-in-one --data_dir=DIR [--server.port=N] "
                 "[--bootstrap.admin_password=PW] [--log.level=L]")
    opts = {"data_dir": None, "server.port": "0", "bootstrap.admin_password": None,
            "log.level": "warn"}
    for arg in argv[1:]:
        if not arg.startswith("--") or "=" not in arg:
            sys.exit("reference_keystone: unsupported argument %r" % arg)
        key, value = arg[2:].split("=", 1)
        opts[key] = value
    if not opts["data_dir"]:
        sys.exit("reference_keystone: --data_dir is required")
    return opts


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


def main():
    opts = parse_args(sys.argv[1:])
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
expiration = 3600
[fernet_tokens]
key_repository = {data}/fernet-keys
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

    env = dict(os.environ, OS_KEYSTONE_CONFIG_DIR=data, OS_KEYSTONE_CONFIG_FILES="keystone.conf")
    log = open(os.path.join(data, "uwsgi.log"), "ab")
    uwsgi = subprocess.Popen(
        [UWSGI, "--plugin", "python3", "--http-socket", "127.0.0.1:%d" % port,
         "--mount", "/identity=" + WSGI_FILE, "--manage-script-name", "--need-app",
         "--master", "--processes", "2", "--threads", "4", "--die-on-term",
         "--buffer-size", "65535", "--disable-logging"],
        env=env, stdout=log, stderr=log, preexec_fn=set_pdeathsig)

    def stop(signum, frame):
        uwsgi.terminate()
        try:
            uwsgi.wait(timeout=20)
        except subprocess.TimeoutExpired:
            uwsgi.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    deadline = time.monotonic() + 120
    while True:
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
        code = uwsgi.wait()
        sys.exit("reference_keystone: uwsgi exited unexpectedly with %d" % code)


if __name__ == "__main__":
    main()
