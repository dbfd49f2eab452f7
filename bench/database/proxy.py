#!/usr/bin/python3
"""Endpoint proxy benchmark driver (see proxy.sh).

One PostgreSQL 15 (temp folder, run as concord-db, scram-sha-256 on TCP), PgBouncer 1.18 in
transaction mode (Debian defaults except what 256 clients need), and concord-db-proxy in session
and transaction mode, all started here. With --endpoint-cpus the proxies run on those CPUs and
PostgreSQL and pgbench on the others, for every target (direct too): the endpoint on a host of
its own, as in a deployment (the endpoint is in the server, the engine on an agent's host). pgbench (-j 2) runs select-only (-S) and the TPC-B-like
default at each client count, simple and extended protocol, for a fixed duration, interleaved
target by target, repeated; -M prepared runs once per repeat through every target. Prints
min/median/max TPS and the ratio of medians to direct, and writes the table as Markdown.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
PASSWORD = "bench-pw"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def on_cpus(cpus):
    """A preexec_fn that confines the child (and what it starts) to `cpus`; None: no change."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def as_db_user(argv, cpus=None, **kw):
    return subprocess.run(["runuser", "-u", "concord-db", "--"] + argv, check=True,
                          capture_output=True, text=True, preexec_fn=on_cpus(cpus), **kw)


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def stop_environment(work, procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    try:
        as_db_user([f"{PG_BIN}/pg_ctl", "-D", f"{work}/data", "-m", "fast", "stop"])
    except Exception:
        pass
    shutil.rmtree(work, ignore_errors=True)


def cpu_list(text):
    """'1', '0,2' or '2-3' as a set of CPU numbers (taskset's -c syntax)."""
    cpus = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list: {text!r}") from None
    return cpus


def concord_default_pool_size(cpus):
    """What concord-db-proxy and the endpoints choose (proxy::default_pool_size): 4 per CPU,
    8 to 64."""
    return min(64, max(8, 4 * cpus))


def start_environment(work, procs, scale, pool_size, proxies, bouncers=(),
                      synchronous_commit="off", db_cpus=None, endpoint_cpus=None):
    """PostgreSQL, PgBouncer (default_pool_size `pool_size`), one more PgBouncer per (name,
    size) in `bouncers`, and one concord-db-proxy per (name, binary, mode[, pool size]) in
    `proxies` (transaction mode: `pool_size` unless given), in `work` (a fresh temp folder;
    stop_environment removes it); PostgreSQL's synchronous_commit is `synchronous_commit`.
    PostgreSQL runs on `db_cpus` and the proxies on `endpoint_cpus` (sets of CPU numbers; None:
    any).
    Started processes go to `procs`. Returns (environment for
    pgbench, [(target, port, pid of the serving process)]) with "direct" (pid None) and
    "pgbouncer" first."""
    os.chmod(work, 0o755)
    shutil.chown(work, "concord-db")
    pg_port, bouncer_port = free_port(), free_port()
    as_db_user([f"{PG_BIN}/initdb", "-D", f"{work}/data", "-U", "postgres",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-N"])
    with open(f"{work}/data/postgresql.conf", "a") as f:
        # 256 direct clients + pools + admin; the rest is Debian's default configuration.
        f.write(f"listen_addresses = '127.0.0.1'\nport = {pg_port}\n"
                f"unix_socket_directories = '{work}'\nmax_connections = 400\n"
                f"shared_buffers = 256MB\nsynchronous_commit = {synchronous_commit}\n")
    as_db_user([f"{PG_BIN}/pg_ctl", "-D", f"{work}/data", "-l", f"{work}/pg.log", "-w",
                "start"], cpus=db_cpus)
    psql = ["psql", "-h", work, "-p", str(pg_port), "-U", "postgres", "-X", "-q", "-tA"]
    subprocess.run(psql + ["-c", f"CREATE USER bench PASSWORD '{PASSWORD}'"], check=True)
    subprocess.run(psql + ["-c", "CREATE DATABASE bench OWNER bench"], check=True)
    verifier = subprocess.run(
        psql + ["-c", "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'"],
        check=True, capture_output=True, text=True).stdout.strip()
    users = f"{work}/users.txt"
    with open(users, "w") as f:
        f.write(f'"bench" "{verifier}"\n')
    shutil.chown(users, "concord-db")
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", "127.0.0.1", "-p",
                    str(pg_port), "-U", "bench", "bench"], check=True, env=env,
                   capture_output=True)

    # PgBouncer at its default pool size first, then any at other sizes (`bouncers`: name ->
    # pool size); each runs under runuser, so its own pid is read from its pidfile.
    targets = [("direct", pg_port, None)]
    bouncer_pids = []
    for name, size in [("pgbouncer", pool_size)] + list(bouncers):
        port = free_port()
        ini = f"{work}/{name}.ini"
        with open(ini, "w") as f:
            # pool_mode=transaction and scram auth against the same verifier; max_client_conn
            # is raised from its default 100 so 256 clients can connect at all.
            f.write(f"""[databases]
bench = host=127.0.0.1 port={pg_port} dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {users}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = {size}
logfile = {work}/{name}.log
pidfile = {work}/{name}.pid
""")
        shutil.chown(ini, "concord-db")
        procs.append(subprocess.Popen(["runuser", "-u", "concord-db", "--",
                                       "/usr/sbin/pgbouncer", ini], stdout=subprocess.DEVNULL,
                                      stderr=open(f"{work}/{name}.err", "w"),
                                      preexec_fn=on_cpus(endpoint_cpus)))
        targets.append((name, port, None))
        bouncer_pids.append(f"{work}/{name}.pid")
    for name, binary, mode, *size in proxies:
        port = free_port()
        argv = [binary, "--listen", f"127.0.0.1:{port}", "--backend", f"127.0.0.1:{pg_port}",
                "--mode", mode, "--log-level", "warn"]
        if mode == "transaction":
            argv += ["--pool-size", str(size[0] if size else pool_size), "--users-file", users]
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, preexec_fn=on_cpus(endpoint_cpus))
        procs.append(p)
        targets.append((name, port, p.pid))
    for name, port, _ in targets[1:]:
        try:
            wait_port(port)
        except RuntimeError as e:
            raise RuntimeError(f"{name}: {e}") from None
    for i, pidfile in enumerate(bouncer_pids):
        with open(pidfile) as f:
            name, port, _ = targets[1 + i]
            targets[1 + i] = (name, port, int(f.read().strip()))
    return env, targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    ap.add_argument("--clients", default="8,64,256")
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--pool-size", type=int, default=20,
                    help="PgBouncer's default_pool_size (its own default: 20)")
    ap.add_argument("--concord-pool-size", type=int,
                    default=concord_default_pool_size(os.cpu_count()),
                    help="Concord transaction mode's pool size (default: what Concord chooses "
                         "for this host's CPUs, 4 per CPU, 8 to 64); PgBouncer also runs at "
                         "this size when it differs from --pool-size")
    ap.add_argument("--synchronous-commit", choices=("off", "on"), default="off",
                    help="PostgreSQL's synchronous_commit: off (default) measures the proxies "
                         "rather than the disk's fsync; on is what a managed instance runs")
    ap.add_argument("--endpoint-cpus", type=cpu_list, default=None, metavar="LIST",
                    help="run PgBouncer and the Concord proxies on these CPUs (e.g. 1 or 2-3) "
                         "and PostgreSQL and pgbench on the others, for every target: the "
                         "endpoint on a host of its own. Default: everything shares every CPU")
    ap.add_argument("--quick", action="store_true", help="1 repeat, 3 s, 64 clients")
    ap.add_argument("--results", default="")
    args = ap.parse_args()
    db_cpus = None
    if args.endpoint_cpus:
        db_cpus = os.sched_getaffinity(0) - args.endpoint_cpus
        if not db_cpus or not args.endpoint_cpus <= os.sched_getaffinity(0):
            ap.error(f"--endpoint-cpus must name some but not all of the CPUs this runs on "
                     f"({sorted(os.sched_getaffinity(0))})")
    if args.quick:
        args.repeats, args.duration, args.clients = 1, 3, "64"
    clients = [int(c) for c in args.clients.split(",")]
    proxy_bin = os.environ["CONCORD_DB_PROXY"]

    work = tempfile.mkdtemp(prefix="concord-bench-proxy-")
    procs = []
    signal.signal(signal.SIGTERM, lambda *_: (stop_environment(work, procs), sys.exit(1)))
    try:
        same_size = f"pgbouncer-{args.concord_pool_size}"
        bouncers = [] if args.concord_pool_size == args.pool_size else \
            [(same_size, args.concord_pool_size)]
        env, targets = start_environment(
            work, procs, args.scale, args.pool_size,
            [("concord-session", proxy_bin, "session"),
             ("concord-transaction", proxy_bin, "transaction", args.concord_pool_size)],
            bouncers, args.synchronous_commit, db_cpus, args.endpoint_cpus)
        targets = [(name, port) for name, port, _ in targets]
        cases = []
        for workload in ("select-only", "tpcb"):
            for c in clients:
                for proto in ("simple", "extended"):
                    cases.append((workload, c, proto))
        prepared_clients = 64 if 64 in clients else clients[0]
        cases.append(("select-only", prepared_clients, "prepared"))

        results = {}  # (case, target) -> [tps or None]
        errors = {}
        loads = []

        def run(case, target, port):
            workload, c, proto = case
            argv = ["pgbench", "-n", "-T", str(args.duration), "-c", str(c), "-j", "2", "-M",
                    proto, "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "bench"]
            if workload == "select-only":
                argv.insert(1, "-S")
            p = subprocess.run(argv, env=env, capture_output=True, text=True,
                               timeout=args.duration * 4 + 120, preexec_fn=on_cpus(db_cpus))
            m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout)
            aborted = "aborted" in p.stderr or "Run was aborted" in p.stderr
            if p.returncode != 0 or not m or aborted:
                err = [l for l in p.stderr.splitlines() if "error" in l.lower()]
                errors[(case, target)] = err[0] if err else f"exit {p.returncode}"
                return None
            return float(m.group(1))

        total = len(cases) * len(targets) * args.repeats
        done = 0
        for rep in range(args.repeats):
            for case in cases:
                for target, port in targets:
                    loads.append(float(loadavg()))
                    tps = run(case, target, port)
                    results.setdefault((case, target), []).append(tps)
                    done += 1
                    print(f"[{done}/{total}] rep {rep + 1} {case[0]} c={case[1]} -M {case[2]} "
                          f"{target}: {tps if tps is not None else 'FAILED'} "
                          f"(load {loads[-1]:.2f})", flush=True)

        def fmt(v):
            return f"{v:,.0f}"

        lines = [f"# Endpoint proxy benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
                 "",
                 f"pgbench -j 2, {args.duration} s per run, {args.repeats} repeats interleaved "
                 f"({', '.join(t for t, _ in targets)}), scale {args.scale}; pool sizes: "
                 f"PgBouncer {args.pool_size} (default_pool_size)"
                 + (f", {same_size} {args.concord_pool_size}" if bouncers else "")
                 + f", Concord transaction {args.concord_pool_size}. PostgreSQL 15 with "
                 f"synchronous_commit={args.synchronous_commit}. "
                 + (f"CPUs: PgBouncer and the Concord proxies on {sorted(args.endpoint_cpus)}, "
                    f"PostgreSQL and pgbench on {sorted(db_cpus)}, for every target. "
                    if db_cpus else "Every process shares every CPU. ")
                 + "Machine: "
                 f"{os.cpu_count()} cores, load average during runs min {min(loads):.2f} / "
                 f"median {statistics.median(loads):.2f} / max {max(loads):.2f}.",
                 "",
                 "| workload | clients | protocol | target | TPS min / median / max | x direct |",
                 "|---|---|---|---|---|---|"]
        for case in cases:
            direct = [v for v in results[(case, "direct")] if v is not None]
            dmed = statistics.median(direct) if direct else None
            for target, _ in targets:
                vals = results[(case, target)]
                ok = [v for v in vals if v is not None]
                if len(ok) < len(vals):
                    cell = f"FAILED {len(vals) - len(ok)}/{len(vals)}: " + \
                        errors.get((case, target), "").replace("|", "/")[:90]
                    ratio = "-"
                    if ok:
                        cell += f" (ok runs: {fmt(statistics.median(ok))})"
                else:
                    med = statistics.median(ok)
                    cell = f"{fmt(min(ok))} / {fmt(med)} / {fmt(max(ok))}"
                    ratio = f"{med / dmed:.2f}" if dmed else "-"
                lines.append(f"| {case[0]} | {case[1]} | {case[2]} | {target} | {cell} | {ratio} |")

        # Goals from issue 4.
        lines += ["", "Goals (issue 4): at 64 clients Concord transaction >= 0.90 x direct; "
                  "Concord >= PgBouncer at every setting; prepared statements work under "
                  "transaction pooling.", ""]
        for case in cases:
            def med(t):
                ok = [v for v in results[(case, t)] if v is not None]
                return statistics.median(ok) if ok and len(ok) == len(results[(case, t)]) else None
            d, b, s, t = (med(x) for x in ("direct", "pgbouncer", "concord-session",
                                           "concord-transaction"))
            b_same = med(same_size) if bouncers else None
            verdicts = []
            if case[1] == 64 and d and t:
                verdicts.append(f"transaction/direct {t / d:.2f} "
                                f"({'met' if t / d >= 0.9 else 'NOT met'})")
            if b and t:
                verdicts.append(f"transaction/PgBouncer {t / b:.2f} "
                                f"({'met' if t >= b else 'NOT met'})")
            elif t and not b:
                verdicts.append("PgBouncer failed, Concord transaction works")
            if b_same and t:
                verdicts.append(f"transaction/{same_size} {t / b_same:.2f}")
            if b and s:
                verdicts.append(f"session/PgBouncer {s / b:.2f}")
            lines.append(f"- {case[0]} c={case[1]} -M {case[2]}: " + "; ".join(verdicts))
        table = "\n".join(lines) + "\n"
        print()
        print(table)
        if args.results:
            with open(args.results, "w") as f:
                f.write(table)
            print(f"written to {args.results}")
    finally:
        stop_environment(work, procs)


if __name__ == "__main__":
    main()
