#!/usr/bin/python3
"""Endpoint proxy cost per transaction: CPU, syscalls and context switches (run as root).

TPS on a shared 2-core machine moves by 20-50% between runs; what a proxy costs per transaction
does not. This runs pgbench through PgBouncer and through one or more concord-db-proxy
binaries (session and/or transaction mode; the same environment as proxy.py) and, for the
serving process, prints per transaction:

  cpu_us     its user+system CPU time (/proc/<pid>/stat, all threads)
  syscalls   system calls it entered (perf stat -e raw_syscalls:sys_enter -p <pid>)
  cs         context switches, voluntary + involuntary (/proc/<pid>/task/*/status)

  bench/database/proxy_cost.py --bin new=build/hA/src/database/proxy/concord-db-proxy \\
      --bin old=/tmp/concord-db-proxy.old --clients 8,64 --duration 5 --repeats 2

--breakdown adds per-syscall counts (perf stat on the syscalls:sys_enter_* tracepoints the
proxies use). Targets run interleaved; every line is printed as it finishes and a table of
medians at the end.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import loadavg, start_environment, stop_environment  # noqa: E402

BREAKDOWN = ["epoll_wait", "epoll_ctl", "recvfrom", "sendto", "recvmsg", "sendmsg", "read",
             "write", "readv", "writev", "futex", "splice"]


def proc_cost(pid):
    """(CPU seconds, context switches) of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    cs = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        cs += int(line.split()[1])
        except FileNotFoundError:
            pass
    return cpu, cs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", action="append", default=[], metavar="NAME=PATH",
                    help="a concord-db-proxy to measure (repeatable)")
    ap.add_argument("--modes", default="session,transaction")
    ap.add_argument("--no-pgbouncer", action="store_true")
    ap.add_argument("--direct", action="store_true", help="also run direct (TPS only)")
    ap.add_argument("--workloads", default="select-only")
    ap.add_argument("--clients", default="8,64")
    ap.add_argument("--protocols", default="simple,extended")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--pool-size", type=int, default=20)
    ap.add_argument("--breakdown", action="store_true", help="count syscalls by name too")
    ap.add_argument("--hold", action="store_true",
                    help="start everything, print the targets' ports and pids, and wait for "
                         "SIGTERM (for perf record/strace by hand)")
    args = ap.parse_args()
    bins = [b.split("=", 1) for b in args.bin]
    if not bins and "CONCORD_DB_PROXY" in os.environ:
        bins = [("concord", os.environ["CONCORD_DB_PROXY"])]
    modes = args.modes.split(",")
    events = ["raw_syscalls:sys_enter"]
    if args.breakdown:
        events += [f"syscalls:sys_enter_{n}" for n in BREAKDOWN]

    work = tempfile.mkdtemp(prefix="concord-bench-proxy-cost-")
    procs = []
    signal.signal(signal.SIGTERM, lambda *_: (stop_environment(work, procs), sys.exit(1)))
    try:
        env, all_targets = start_environment(
            work, procs, args.scale, args.pool_size,
            [(f"{name}-{mode}", path, mode) for name, path in bins for mode in modes])
        targets = [t for t in all_targets
                   if (t[0] != "direct" or args.direct)
                   and (t[0] != "pgbouncer" or not args.no_pgbouncer)]
        if args.hold:
            for name, port, pid in targets:
                print(f"{name}: port {port} pid {pid}", flush=True)
            print("PGPASSWORD=" + env["PGPASSWORD"] + " pgbench -h 127.0.0.1 -U bench bench; "
                  "SIGTERM stops", flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            return
        cases = [(w, int(c), p) for w in args.workloads.split(",")
                 for c in args.clients.split(",") for p in args.protocols.split(",")]
        results = {}

        def run(case, port, pid):
            workload, c, proto = case
            argv = ["pgbench", "-n", "-T", str(args.duration), "-c", str(c), "-j", "2", "-M",
                    proto, "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "bench"]
            if workload == "select-only":
                argv.insert(1, "-S")
            perf = None
            if pid:
                before = proc_cost(pid)
                perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(events), "-p",
                                         str(pid)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
            p = subprocess.run(argv, env=env, capture_output=True, text=True,
                               timeout=args.duration * 4 + 120)
            row = {}
            if pid:
                after = proc_cost(pid)
                perf.send_signal(signal.SIGINT)
                counts = {}
                for line in perf.communicate(timeout=30)[1].splitlines():
                    parts = line.split(",")
                    if len(parts) > 2 and parts[0].strip().isdigit():
                        counts[parts[2].split(":")[-1].replace("sys_enter_", "")] = int(parts[0])
            tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout)
            tx = re.search(r"number of transactions actually processed: (\d+)", p.stdout)
            if p.returncode != 0 or not tps or not tx or int(tx.group(1)) == 0:
                print(f"  pgbench failed: {p.stderr.strip()[-300:]}", flush=True)
                return None
            n = int(tx.group(1))
            row["tps"] = float(tps.group(1))
            if pid:
                # The connection phase is inside the window too; a few hundred logins against
                # tens of thousands of transactions.
                row["cpu_us"] = (after[0] - before[0]) * 1e6 / n
                row["cs"] = (after[1] - before[1]) / n
                row["syscalls"] = counts.get("sys_enter", 0) / n
                for k in BREAKDOWN:
                    if k in counts:
                        row[k] = counts[k] / n
            return row

        for rep in range(args.repeats):
            for case in cases:
                for name, port, pid in targets:
                    row = run(case, port, pid)
                    if row is None:
                        continue
                    results.setdefault((case, name), []).append(row)
                    print(f"rep {rep + 1} {case[0]} c={case[1]} {case[2]} {name}: "
                          + " ".join(f"{k}={v:.2f}" if k != "tps" else f"tps={v:.0f}"
                                     for k, v in row.items()) + f" (load {loadavg()})",
                          flush=True)

        print("\nMedians per transaction of the serving process "
              "(cpu_us = CPU microseconds, cs = context switches):\n")
        keys = ["tps", "cpu_us", "syscalls", "cs"] + (BREAKDOWN if args.breakdown else [])
        print("| workload | clients | protocol | target | " + " | ".join(keys) + " |")
        print("|---|---|---|---|" + "---:|" * len(keys))
        for case in cases:
            for name, _, _ in targets:
                rows = results.get((case, name), [])
                cells = []
                for k in keys:
                    vals = [r[k] for r in rows if k in r]
                    med = statistics.median(vals) if vals else None
                    cells.append("-" if med is None else
                                 f"{med:,.0f}" if k == "tps" else f"{med:.2f}")
                print(f"| {case[0]} | {case[1]} | {case[2]} | {name} | " + " | ".join(cells)
                      + " |")
    finally:
        stop_environment(work, procs)


if __name__ == "__main__":
    main()
