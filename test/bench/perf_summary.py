#!/usr/bin/python3
"""Where a delivery's time goes, from a perf profile of the worker.

    test/bench/perf_summary.py test/bench/out/worker.perf.data [us_per_delivery]

Reads `perf report --children` (the profile must have call graphs: the
benchmark records with -g) and prints the share of the worker's samples
under each of its steps, and, given the CPU time per delivery the benchmark
measured, the microseconds each step takes of it. The steps overlap where
one calls another (the claim renders bodies); "other" is what no step
covers: libcurl's own work (built without frame pointers, so its callers
are lost), the loop's waits and bookkeeping.
"""
import re
import subprocess
import sys

STEPS = [
    ("a round's SQL (record, claim, bookkeeping)", ["do_round"]),
    ("  recording results (INSERT once / UPDATE)", ["WebhookRecordResults"]),
    ("  claiming events (the claim statement, events, jobs)", ["WebhookQueueClaimEvents"]),
    ("    the events built (webhook._event)", ["webhook_event"]),
    ("    bodies rendered (built-in formats)", ["WebhookRenderBuiltin"]),
    ("  claiming due retries", ["WebhookQueueClaimDue"]),
    ("  commit", ["CommitTransactionCommand"]),
    ("    executor start-up of the round's statements", ["standard_ExecutorStart"]),
    ("    index inserts", ["ExecInsertIndexTuples"]),
    ("    WAL records", ["XLogInsert"]),
    ("    relation extension", ["smgrextend"]),
    ("requests started (headers, signature, curl handle)", ["WebhookStartReadyJobs"]),
    ("  headers and signature", ["WebhookRequestHeaders"]),
    ("system calls", ["entry_SYSCALL_64_after_hwframe"]),
    ("  send", ["__sys_sendto"]),
    ("  recv", ["__sys_recvfrom"]),
    ("  poll / epoll", ["__x64_sys_poll", "__x64_sys_epoll_wait", "__x64_sys_epoll_ctl"]),
]


def children(path):
    out = subprocess.run(["perf", "report", "-i", path, "--children", "--stdio", "--sort", "sym"],
                         capture_output=True, text=True, check=True).stdout
    share = {}
    for line in out.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+([0-9.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if m:
            share.setdefault(m.group(3), float(m.group(1)))
    return share


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    share = children(sys.argv[1])
    us = float(sys.argv[2]) if len(sys.argv) > 2 else None
    worker = share.get("WebhookWorkerMain", 0.0)
    print(f"{'step':56} {'% of samples':>12}" + (f" {'us/delivery':>12}" if us else ""))
    for name, syms in STEPS:
        pct = sum(share.get(s, 0.0) for s in syms)
        line = f"{name:56} {pct:11.1f}%"
        if us:
            line += f" {us * pct / 100:12.1f}"
        print(line)
    print(f"{'(the worker loop, all it could attribute)':56} {worker:11.1f}%")


if __name__ == "__main__":
    main()
