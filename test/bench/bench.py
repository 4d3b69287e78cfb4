#!/usr/bin/python3
"""The webhook benchmark's measurements; run by test/bench/run.sh, which
provides the cluster (webhook preloaded) and nginx, and cleans up.

Every wait for deliveries counts lines in nginx's arrivals log (one line per
request: arrival time in ms, webhook-id, status), so nothing polls the
database while the worker works; the time of the last arrival ends each
measurement. Phases run one after the other and each starts with nothing in
flight.
"""
import glob
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

import psycopg2

ENV = os.environ
DIR = ENV["BENCH_DIR"]
PG_PORT = ENV["BENCH_PG_PORT"]
RECV_PORT = ENV["BENCH_RECV_PORT"]
PG_BIN = ENV["PG_BIN"]
SRC = ENV["BENCH_SRC"]
BENCH = os.path.join(SRC, "test", "bench")
OUT = os.path.join(BENCH, "out", "results.json")
ARRIVALS = os.path.join(DIR, "nginx", "arrivals.log")
SCALE = float(ENV.get("BENCH_SCALE", "1"))
REPEAT = 3                      # samples per figure; the figure is their median
URL = f"http://127.0.0.1:{RECV_PORT}/hook"
CONTENT = "Hello from the benchmark: a chat message of about a hundred bytes, like people send."


def scaled(n, least):
    return max(least, int(round(n * SCALE)))


SIZES = {
    "wrk_seconds": scaled(5, 2),
    "pgbench_seconds": scaled(20, 3),
    "bulk_rows": scaled(100_000, 1000),
    "single_row_events": scaled(100_000, 1000),
    "latency_inserts": scaled(500, 50),
    "backlog_small": scaled(10_000, 500),
    "backlog_large": scaled(1_000_000, 10_000),
    "fanout_endpoints": 10,
    "fanout_events": scaled(10_000, 500),
    "workers_events": scaled(100_000, 1000),
}


def log(msg):
    print(f"   {msg}", flush=True)


def phase(msg):
    print(f"== {msg}", flush=True)


def connect():
    c = psycopg2.connect(host=DIR, port=PG_PORT, user="postgres", dbname="postgres")
    c.autocommit = True
    return c


DB = None


def q(sql, args=None):
    with DB.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def q1(sql, args=None):
    r = q(sql, args)
    return r[0][0] if r else None


# ---------------------------------------------------------------- arrivals

class Arrivals:
    """Reads nginx's arrivals log from where the last wait stopped."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.partial = b""

    def skip(self):
        """Forget everything logged so far (after nginx's 100 ms flush)."""
        time.sleep(0.3)
        self.f.seek(0, 2)
        self.partial = b""

    def wait(self, n, keep=False, idle_timeout=30.0, deadline=None):
        """Wait for n more requests; (count, first, last arrival time, [lines])."""
        count = 0
        first = last = None
        kept = []
        idle_since = time.time()
        while count < n:
            data = self.f.read()
            if not data:
                if time.time() - idle_since > idle_timeout or (deadline and time.time() > deadline):
                    break
                time.sleep(0.05)
                continue
            idle_since = time.time()
            data = self.partial + data
            cut = data.rfind(b"\n") + 1
            self.partial = data[cut:]
            data = data[:cut]
            lines_here = data.count(b"\n")
            if lines_here == 0:
                continue
            if keep or count + lines_here > n:
                lines = data.split(b"\n")[:lines_here]
                take = lines[: n - count]
                if keep:
                    kept.extend(take)
                if first is None:
                    first = float(take[0].split(b" ", 1)[0])
                last = float(take[-1].split(b" ", 1)[0])
                count += len(take)
            else:
                if first is None:
                    first = float(data[: data.index(b" ")])
                last_line = data[data.rfind(b"\n", 0, len(data) - 1) + 1:]
                last = float(last_line.split(b" ", 1)[0])
                count += lines_here
        return count, first, last, kept


ARR = None


class Incomplete(Exception):
    pass


def wait_deliveries(n, keep=False, timeout=None, partial=False):
    """Wait for n deliveries: (first, last arrival time, [lines]); or, when
    partial, (count, last) even if they did not all come within timeout."""
    if timeout is None:
        timeout = 120 + n / 1000.0
    count, first, last, kept = ARR.wait(n, keep=keep, deadline=time.time() + timeout)
    if partial:
        return count, last
    if count < n:
        raise Incomplete(f"only {count:,} of {n:,} deliveries arrived (nothing for 30 s, or "
                         f"not all within {timeout:.0f} s); {worker_state()}")
    return first, last, kept


# ---------------------------------------------------------------- the worker

def worker_pids():
    """The delivery workers of this database, lowest pid first: those
    webhook.worker_status shows (with webhook.workers_per_database there may
    be several, sharing the work by event id), or, should that view fail,
    the backends pg_stat_activity calls 'webhook worker'."""
    try:
        return [r[0] for r in q("SELECT pid FROM webhook.worker_status "
                                "WHERE database = current_database() ORDER BY pid")]
    except psycopg2.Error:
        return [r[0] for r in q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker' "
                                "AND datname = current_database() ORDER BY pid")]


def worker_pid():
    """One worker (the first), for the checks that need only to know one runs."""
    pids = worker_pids()
    return pids[0] if pids else None


STOPPED = os.path.join(DIR, "worker-stopped.pid")     # run.sh's cleanup continues them


def stop_workers(pids):
    """SIGSTOP every worker, each between rounds: stopped inside one, it
    could hold a lock (a buffer mapping lock, say) that every other backend
    then waits for. A worker reports its state before its round takes any
    lock."""
    stopped = []
    try:
        for pid in pids:
            stopped.append(pid)
            with open(STOPPED, "w") as f:
                f.write(" ".join(map(str, stopped)))
            deadline = time.time() + 30
            while True:
                os.kill(pid, signal.SIGSTOP)
                if q1("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)) == "idle":
                    break
                os.kill(pid, signal.SIGCONT)
                if time.time() > deadline:
                    raise RuntimeError(f"worker {pid} was never idle for 30 s: cannot stop it safely")
                time.sleep(0.01)
    except BaseException:
        continue_workers(stopped)
        raise


def continue_workers(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    if os.path.exists(STOPPED):
        os.unlink(STOPPED)


def proc_stat(pid):
    """The fields of /proc/<pid>/stat after the command name: [11] user and
    [12] system CPU time in clock ticks, [19] the start time."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pids):
    """User + system CPU time the workers have used, in seconds, summed."""
    total = 0
    for pid in pids:
        fields = proc_stat(pid)
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class BackendCpu(threading.Thread):
    """CPU time (user, system) of pgbench's client backends over its run:
    the backends are those that started after this thread and run the
    INSERT (not pgbench's own setup connection); /proc is sampled every
    50 ms until they exit (the last 50 ms of each are not counted)."""

    def __init__(self, clients):
        super().__init__(daemon=True)
        self.clients = clients
        self.last = {}
        self.stop = threading.Event()

    def run(self):
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT now()")
                t0 = cur.fetchone()[0]
            deadline = time.time() + 10
            pids = []
            while not self.stop.is_set() and time.time() < deadline:
                with conn.cursor() as cur:
                    cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'"
                                " AND backend_start >= %s AND query LIKE 'INSERT%%'", (t0,))
                    pids = [r[0] for r in cur.fetchall()]
                if len(pids) >= self.clients:
                    break
                time.sleep(0.01)
        finally:
            conn.close()
        tck = os.sysconf("SC_CLK_TCK")
        started = {}                    # pid -> its start time, so a reused pid is not read
        while pids:
            for pid in list(pids):
                try:
                    fields = proc_stat(pid)
                except OSError:
                    fields = None
                if fields is None or started.setdefault(pid, fields[19]) != fields[19]:
                    pids.remove(pid)
                    continue
                self.last[pid] = (int(fields[11]) / tck, int(fields[12]) / tck)
            self.stop.wait(0.05)

    def finish(self):
        """(user, system) seconds, or None unless every client backend was seen."""
        self.join(timeout=30)
        if len(self.last) != self.clients:
            return None
        return tuple(sum(v[i] for v in self.last.values()) for i in (0, 1))


def wal_lsn():
    return q1("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) / 1024.0      # MB
    out["private"] = out["RssAnon"] + out["RssFile"]
    return out


def workers_status(pids):
    """proc_status of the largest worker, key by key (with one worker, its own)."""
    out = {}
    for pid in pids:
        for k, v in proc_status(pid).items():
            out[k] = max(out.get(k, 0), v)
    return out


class RssSampler(threading.Thread):
    """Samples the workers' memory every 100 ms; keeps the peaks (of any one
    worker: each has its own memory)."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = list(pids)
        self.peak = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                s = workers_status(self.pids)
            except OSError:
                return
            for k, v in s.items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            self.stop.wait(0.1)

    def finish(self):
        self.stop.set()
        self.join()
        return self.peak


def wait_worker_idle(timeout=30):
    """Until the workers have recorded everything they sent (no pending deliveries)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not q1("SELECT EXISTS (SELECT 1 FROM webhook.delivery WHERE status = 'pending' AND in_flight)"):
            return
        time.sleep(0.1)


# ---------------------------------------------------------------- helpers

def median(xs):
    return statistics.median(xs) if xs else None


def checkpoint():
    q("CHECKPOINT")


def bulk_insert(table, n, offset=0):
    t = time.perf_counter()
    q(f"""INSERT INTO {table} (channel_id, "user", content)
          SELECT 'channel-' || (g %% 100), 'U' || (g %% 1000), %s
          FROM generate_series(%s, %s) AS g""", (CONTENT, offset + 1, offset + n))
    return time.perf_counter() - t


def pgbench(table, clients, seconds=None, transactions=None, log_prefix=None):
    """pgbench's one-row INSERTs: (tps, transactions). Each row's "user" ends
    in its client's number, and with log_prefix pgbench logs each
    transaction's end (-l), so that a row's commit time can be found."""
    script = os.path.join(DIR, f"insert_{table}.sql")
    with open(script, "w") as f:
        f.write("\\set ch random(1, 100)\n\\set u random(1, 1000)\n"
                f"INSERT INTO {table} (channel_id, \"user\", content) "
                f"VALUES ('channel-' || :ch, 'U' || :u || '/' || :client_id, '{CONTENT}');\n")
    cmd = [os.path.join(PG_BIN, "pgbench"), "-n", "-M", "prepared", "-h", DIR, "-p", PG_PORT,
           "-U", "postgres", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
           "-f", script]
    if log_prefix:
        for old in glob.glob(log_prefix + ".*"):
            os.unlink(old)
        cmd += ["-l", "--log-prefix", log_prefix]
    cmd += ["-T", str(seconds)] if seconds else ["-t", str(transactions // clients)]
    cmd.append("postgres")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"pgbench failed: {r.stderr.strip()}")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", r.stdout).group(1))
    done = int(re.search(r"number of transactions actually processed: (\d+)", r.stdout).group(1))
    return tps, done


def drained_rate(n, t0):
    _, last, _ = wait_deliveries(n)
    return n / (last - t0), last - t0


PGBENCH_LOG = os.path.join(DIR, "pgbench_log")


def percentile(xs, p):
    """Nearest rank, of a sorted list."""
    return xs[max(0, math.ceil(p / 100.0 * len(xs)) - 1)]


def commit_to_arrival_ms(kept, log_prefix):
    """Latency of pgbench's inserts, each transaction's end (pgbench's -l
    log: client, transaction number, ..., epoch seconds, microseconds) to its
    delivery's arrival: the k-th row a client inserted (by id, its "user"
    ending in /client) is that client's k-th transaction. As a check of
    that matching, each transaction's start as pgbench saw it (end minus its
    latency) is compared with the row's "timestamp" (now(): the server's
    start of the transaction): "match_skew_ms", which a row matched to
    another transaction would push to about a transaction's time or more."""
    ends = {}
    for path in glob.glob(log_prefix + ".*"):
        with open(path) as f:
            for line in f:
                c, t, lat_us, _script, sec, usec = line.split()[:6]
                ends.setdefault(int(c), []).append((int(t), int(sec) + int(usec) / 1e6, float(lat_us) / 1e6))
    arrival = {}
    for line in kept:
        t, wid, _status = line.decode().split(" ")
        m = re.match(r"msg_(\d+)_(\d+)$", wid)
        if m:
            arrival[int(m.group(1))] = float(t) + 0.0005   # $msec is truncated to the ms: take the middle
    rows = q("SELECT event_id, (event->'record'->>'id')::bigint, event->'record'->>'user', "
             "extract(epoch FROM (event->'record'->>'timestamp')::timestamptz)::float8 "
             "FROM webhook.delivery WHERE event_id = ANY (%s)", (list(arrival),))
    by_client = {}
    for ev, mid, user, began in rows:
        by_client.setdefault(int(user.rsplit("/", 1)[1]), []).append((mid, ev, began))
    lat, skew = [], []
    for c, evs in by_client.items():
        done = sorted(ends.get(c, []))
        if len(done) != len(evs):       # a transaction not logged, or a row not seen: leave the client out
            continue
        for (_, end, took), (_, ev, began) in zip(done, sorted(evs)):
            lat.append((arrival[ev] - end) * 1000.0)
            skew.append(abs(end - took - began) * 1000.0)
    lat.sort()
    skew.sort()
    if not lat:
        raise RuntimeError("could not match any delivery to pgbench's logged commits")
    return {"p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
            "min": lat[0], "max": lat[-1], "matched": len(lat), "deliveries": len(arrival),
            "match_skew_ms": {"p50": percentile(skew, 50), "p99": percentile(skew, 99), "max": skew[-1]}}


# ---------------------------------------------------------------- the phases

R = {}          # figures
ERRORS = {}


MEM_BY_PHASE = {}


STUCK = []      # why the remaining phases are skipped


def run_phase(name, fn):
    if STUCK:
        ERRORS[name] = "skipped: " + STUCK[0]
        print(f"!! {name} skipped: {STUCK[0]}", flush=True)
        return
    try:
        fn()
        pids = worker_pids()
        if pids:
            MEM_BY_PHASE[name] = workers_status(pids)
    except Exception as e:      # one failed phase must not lose the others
        ERRORS[name] = f"{type(e).__name__}: {e}"
        print(f"!! {name} failed: {ERRORS[name]}", flush=True)
        # leave nothing behind for the next phase
        stopped = []
        if os.path.exists(STOPPED):
            with open(STOPPED) as f:
                stopped = [int(p) for p in f.read().split()]
        continue_workers(sorted(set(stopped + worker_pids())))
        if not drain_everything():
            state = worker_state()
            if len(RESTARTS) < 2 and restart_worker():
                RESTARTS.append(f"after {name} ({state})")
                ERRORS[name] += f"; the worker delivered nothing for 60 s ({state}): the benchmark restarted it"
                print(f"!! the worker delivered nothing for 60 s ({state}); restarted it", flush=True)
                if drain_everything():
                    return
            STUCK.append(f"after {name}, the worker delivered nothing for 60 s with work left ({worker_state()})")
            print(f"!! {STUCK[0]}; the remaining phases are skipped", flush=True)


RESTARTS = []


def restart_worker():
    """Terminate the stuck workers; new ones are started (fresh plans)."""
    old = worker_pids()
    continue_workers(old)
    for pid in old:
        q("SELECT pg_terminate_backend(%s)", (pid,))
    for _ in range(200):
        time.sleep(0.1)
        new = worker_pids()
        if len(new) >= max(1, len(old)) and not set(new) & set(old):
            return True
    return False


def worker_state():
    r = q("SELECT state, extract(epoch FROM now() - xact_start)::int FROM pg_stat_activity "
          "WHERE pid = ANY (%s) ORDER BY pid", (worker_pids(),))
    if not r:
        return "no worker running"
    where = ", ".join(f"in one round for {age} s" if age is not None else state for state, age in r)
    left = q1("SELECT count(*) FROM webhook.queue")
    held = q1("SELECT count(*) FROM webhook.delivery WHERE status = 'pending'")
    return f"{'worker' if len(r) == 1 else f'{len(r)} workers'} {where}; {left:,} events queued, {held:,} deliveries pending"


def drain_everything(stall=60):
    """Wait until the queue is empty and nothing is pending, then forget the
    log; give up when nothing arrives for `stall` seconds."""
    done = False
    seen = os.path.getsize(ARRIVALS)
    progress = time.time()
    while time.time() - progress < stall:
        if not q1("SELECT EXISTS (SELECT 1 FROM webhook.queue)") and \
           not q1("SELECT EXISTS (SELECT 1 FROM webhook.delivery WHERE status = 'pending')"):
            done = True
            break
        time.sleep(0.5)
        size = os.path.getsize(ARRIVALS)
        if size != seen:
            seen, progress = size, time.time()
    ARR.skip()
    return done


def p_capacity():
    phase(f"1. receiver capacity: wrk, keep-alive, 1 thread, POST, {SIZES['wrk_seconds']} s x {REPEAT} per connection count")
    out = {}
    for conns in (16, 64):
        samples = []
        for _ in range(REPEAT):
            r = subprocess.run(["wrk", "-t", "1", "-c", str(conns), "-d", f"{SIZES['wrk_seconds']}s",
                                "-s", os.path.join(BENCH, "post.lua"), URL],
                               capture_output=True, text=True, check=True)
            m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
            if non2xx:
                raise RuntimeError(f"nginx answered {non2xx.group(1)} requests with non-2xx")
            samples.append(float(m.group(1)))
        out[conns] = samples
        log(f"{conns} connections: {median(samples):,.0f} req/s (samples {', '.join(f'{s:,.0f}' for s in samples)})")
    best = max(out, key=lambda c: median(out[c]))
    R["receiver_capacity"] = {"value": median(out[best]), "unit": "req/s", "connections": best,
                              "samples": out[best], "by_connections": {str(c): out[c] for c in out}}
    ARR.skip()


def p_trigger():
    secs = SIZES["pgbench_seconds"]
    phase(f"2. trigger cost: pgbench, one-row INSERTs, 4 clients, {secs} s per run: untracked, tracked, and "
          f"(to tell the trigger from the worker) tracked with the worker stopped, in turn x {REPEAT}")
    plain, tracked, stopped, drain, cpus, lats = [], [], [], [], [], []
    # backend CPU and WAL bytes per transaction: the trigger's cost whatever
    # the disk does (the TPS figures wait on WAL flushes)
    cost = {"untracked": [], "tracked": [], "tracked, worker stopped": []}

    def costed(table, name):
        """pgbench, with its backends' CPU and the WAL per transaction. The
        WAL is read as pgbench ends: a worker keeping up has delivered all but
        the last few ms by then, and later reads catch autovacuum's WAL too.
        Every run logs its transactions (the same cost in each); the tracked
        one's log gives the commit times for the latency."""
        cpu, wal0 = BackendCpu(4), wal_lsn()
        cpu.start()
        try:
            tps, n = pgbench(table, 4, seconds=secs, log_prefix=PGBENCH_LOG)
            t_end, wal = time.time(), float(wal_lsn() - wal0) / n
        finally:
            cpu.stop.set()
            used = cpu.finish()
        cost[name].append((used and tuple(t * 1e6 / n for t in used), wal))
        return tps, n, t_end

    for i in range(REPEAT):
        checkpoint()
        tps, _, _ = costed("message_plain", "untracked")
        plain.append(tps)
        checkpoint()
        ARR.skip()
        pids = worker_pids()
        cpu0 = cpu_seconds(pids)
        prof = start_perf(pids, "worker-trigger") if i == 0 and ENV.get("BENCH_PERF") == "trigger" else None
        tps, n, t_end = costed("message", "tracked")
        if prof:
            finish_perf(prof, "worker-trigger")
        tracked.append(tps)
        _, last, kept = wait_deliveries(n, keep=True)
        drain.append(max(0.0, last - t_end))
        wait_worker_idle()
        cpus.append((cpu_seconds(pids) - cpu0) * 1e6 / n)
        lat = commit_to_arrival_ms(kept, PGBENCH_LOG)
        lats.append(lat)
        checkpoint()
        ARR.skip()
        pids = worker_pids()
        stop_workers(pids)
        try:
            tps, n2, _ = costed("message", "tracked, worker stopped")
            stopped.append(tps)
        finally:
            continue_workers(pids)
        wait_deliveries(n2)
        log(f"run {i + 1}: untracked {plain[-1]:,.0f} tps, tracked {tracked[-1]:,.0f} tps (the last of its {n:,} "
            f"deliveries arrived {drain[-1]:.2f} s after pgbench ended; worker CPU {cpus[-1]:.0f} us per delivery; "
            f"commit -> receiver p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms over {lat['matched']:,}), "
            f"tracked with the worker stopped {tps:,.0f} tps")
    R["insert_tps_untracked"] = {"value": median(plain), "unit": "tps", "samples": plain}
    R["insert_tps_tracked"] = {"value": median(tracked), "unit": "tps", "samples": tracked,
                               "delivery_lag_after_end_s": drain, "worker_cpu_us_per_delivery": cpus}
    R["keeping_up_worker_cpu_us_per_delivery"] = {
        "value": median(cpus), "unit": "us", "samples": cpus,
        "clock": "the workers' user + system CPU time (summed over them) from pgbench's start until every "
                 "result is recorded, per delivery, while 4 clients insert one-row transactions"}
    R["keeping_up_latency_ms"] = {
        "p50": median([x["p50"] for x in lats]), "p99": median([x["p99"] for x in lats]), "unit": "ms",
        "samples": lats,
        "clock": "each transaction's end as pgbench logged it (-l) -> nginx's $msec for its delivery; "
                 "the medians of the runs' percentiles"}
    R["insert_tps_ratio"] = {"value": median(tracked) / median(plain), "unit": "ratio"}
    R["insert_tps_tracked_worker_stopped"] = {"value": median(stopped), "unit": "tps", "samples": stopped}
    for name, key in (("untracked", "untracked"), ("tracked", "tracked"),
                      ("tracked, worker stopped", "tracked_worker_stopped")):
        seen = [c for c, _ in cost[name] if c is not None]     # None: a backend not seen
        R[f"insert_backend_cpu_us_{key}"] = {"value": median([u + s for u, s in seen]), "unit": "us",
                                             "user": median([u for u, _ in seen]),
                                             "system": median([s for _, s in seen]),
                                             "samples": [u + s for u, s in seen]}
        R[f"insert_wal_bytes_{key}"] = {"value": median([w for _, w in cost[name]]), "unit": "bytes",
                                        "samples": [w for _, w in cost[name]]}
    un, tr = R["insert_backend_cpu_us_untracked"], R["insert_backend_cpu_us_tracked_worker_stopped"]

    def us(v):
        return "-" if v is None else f"{v:.0f}"
    log(f"backend CPU per transaction (untracked / tracked, worker stopped): {us(un['value'])} / "
        f"{us(tr['value'])} us (user {us(un['user'])} / {us(tr['user'])}, system {us(un['system'])} / "
        f"{us(tr['system'])}); WAL per transaction: {R['insert_wal_bytes_untracked']['value']:.0f} / "
        f"{R['insert_wal_bytes_tracked_worker_stopped']['value']:.0f} bytes, "
        f"{R['insert_wal_bytes_tracked']['value']:.0f} with the worker's own while it keeps up")


def p_bulk():
    n = SIZES["bulk_rows"]
    phase(f"3+4b. bulk cost, and throughput of one statement: INSERT of {n:,} rows, untracked and tracked in turn x {REPEAT}")
    plain, tracked, rates, cpus = [], [], [], []
    for i in range(REPEAT):
        checkpoint()
        plain.append(bulk_insert("message_plain", n))
        checkpoint()
        ARR.skip()
        pids = worker_pids()
        cpu0 = cpu_seconds(pids)
        tracked.append(bulk_insert("message", n))
        t_commit = time.time()
        rate, secs = drained_rate(n, t_commit)
        rates.append(rate)
        wait_worker_idle()
        cpus.append((cpu_seconds(pids) - cpu0) * 1e6 / n)
        log(f"run {i + 1}: untracked {plain[-1]:.3f} s, tracked {tracked[-1]:.3f} s; "
            f"all {n:,} delivered {secs:.2f} s after the commit: {rate:,.0f}/s "
            f"(worker CPU {cpus[-1]:.0f} us per delivery)")
    R["bulk_insert_s_untracked"] = {"value": median(plain), "unit": "s", "samples": plain, "rows": n}
    R["bulk_insert_s_tracked"] = {"value": median(tracked), "unit": "s", "samples": tracked, "rows": n}
    R["bulk_insert_ratio"] = {"value": median(tracked) / median(plain), "unit": "ratio"}
    R["deliveries_per_s_bulk"] = {"value": median(rates), "unit": "deliveries/s", "samples": rates,
                                  "events": n, "clock": "from the commit of the INSERT to the arrival of the last delivery"}
    R["bulk_worker_cpu_us_per_delivery"] = {"value": median(cpus), "unit": "us", "samples": cpus,
                                            "clock": "the workers' CPU time from the INSERT's start until every "
                                                     "result is recorded, per delivery"}


def p_single():
    n = SIZES["single_row_events"]
    phase(f"4a. throughput, single-row transactions: {n:,} one-row INSERTs by pgbench (4 clients, as fast as they go), "
          f"committed while the worker is stopped (SIGSTOP), then drained; and with the worker running x {REPEAT}")
    rates, cpus, e2e, producer, lags, e2e_cpus = [], [], [], [], [], []
    for i in range(REPEAT):
        b = backlog(n, fill="single")
        if not b["complete"]:
            raise Incomplete(f"only {b['arrived']:,} of {n:,} deliveries arrived")
        rates.append(b["rate"])
        cpus.append(b["cpu_us"])
        checkpoint()
        ARR.skip()
        pids = worker_pids()
        cpu0 = cpu_seconds(pids)
        t0 = time.time()
        tps, done = pgbench("message", 4, transactions=n)
        t_end = time.time()
        rate, secs = drained_rate(done, t0)
        wait_worker_idle()
        e2e_cpus.append((cpu_seconds(pids) - cpu0) * 1e6 / done)
        e2e.append(rate)
        producer.append(tps)
        lags.append(secs - (t_end - t0))
        log(f"run {i + 1}: queued, then drained in {b['seconds']:.2f} s: {b['rate']:,.0f}/s "
            f"(worker CPU {b['cpu_us']:.0f} us per delivery); "
            f"while inserting at {tps:,.0f} tps: all delivered {secs:.2f} s after the first began, "
            f"{lags[-1]:.2f} s after the last commit: {rate:,.0f}/s (worker CPU {e2e_cpus[-1]:.0f} us per delivery)")
    R["deliveries_per_s_single_row"] = {"value": median(rates), "unit": "deliveries/s", "samples": rates,
                                        "events": n,
                                        "clock": "from the worker's SIGCONT to the arrival of the last delivery"}
    R["worker_cpu_us_per_delivery"] = {"value": median(cpus), "unit": "us", "samples": cpus,
                                       "clock": "the workers' user + system CPU time (summed) over the drain, "
                                                "until it has recorded every result, per delivery"}
    R["deliveries_per_s_single_row_while_inserting"] = {
        "value": median(e2e), "unit": "deliveries/s", "samples": e2e, "producer_tps": producer,
        "lag_after_last_commit_s": lags, "worker_cpu_us_per_delivery": e2e_cpus,
        "clock": "from the start of the first INSERT to the arrival of the last delivery; "
                 "bounded by the producer's rate"}


def p_latency():
    n = SIZES["latency_inserts"]
    phase(f"5. latency: {n} single-row INSERTs, one client, 10 ms apart; commit (as the client saw it) -> arrival at nginx")
    checkpoint()
    ARR.skip()
    commits = {}
    c = connect()
    cur = c.cursor()
    pids = worker_pids()
    cpu0 = cpu_seconds(pids)
    start = time.time() + 0.05
    for i in range(n):
        delay = start + i * 0.010 - time.time()
        if delay > 0:
            time.sleep(delay)
        cur.execute('INSERT INTO message (channel_id, "user", content) VALUES (%s, %s, %s) RETURNING id',
                    ("channel-latency", "U1", f"latency probe {i}"))
        msg_id = cur.fetchone()[0]
        commits[msg_id] = time.time()
    c.close()
    _, _, kept = wait_deliveries(n, keep=True)
    wait_worker_idle()
    cpu_us = (cpu_seconds(pids) - cpu0) * 1e6 / n
    arrival = {}
    for line in kept:
        t, wid, _status = line.decode().split(" ")
        m = re.match(r"msg_(\d+)_(\d+)$", wid)
        arrival[int(m.group(1))] = float(t) + 0.0005   # $msec is truncated to the ms: take the middle
    rows = q("SELECT event_id, (event->'record'->>'id')::bigint FROM webhook.delivery WHERE event_id = ANY (%s)",
             (list(arrival),))
    lat = sorted((arrival[ev] - commits[mid]) * 1000.0 for ev, mid in rows if mid in commits)
    if len(lat) < n:
        raise RuntimeError(f"matched only {len(lat)} of {n} arrivals to their commits")

    def pct(p):     # nearest rank
        return lat[max(0, math.ceil(p / 100.0 * len(lat)) - 1)]
    R["latency_ms"] = {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": lat[-1], "min": lat[0],
                       "mean": statistics.mean(lat), "unit": "ms", "inserts": n,
                       "resolution": "nginx's $msec: 1 ms, truncated; arrivals are taken at the middle of their ms"}
    R["worker_cpu_us_per_event_at_100_per_s"] = {
        "value": cpu_us, "unit": "us",
        "clock": "the worker's user + system CPU time over the phase, until it has recorded every result, "
                 "per event: its claim, its request and the recording of its result"}
    log(f"p50 {pct(50):.1f} ms, p90 {pct(90):.1f} ms, p99 {pct(99):.1f} ms, max {lat[-1]:.1f} ms; "
        f"worker CPU {cpu_us:.0f} us per event")


def start_perf(pids, name):
    """Record a perf profile of the workers into out/NAME.perf.data."""
    prof = subprocess.Popen(["perf", "record", "-g", "-o", os.path.join(BENCH, "out", f"{name}.perf.data"),
                             "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return prof


def finish_perf(prof, name):
    """Stop a recording and write its flat report to out/NAME-perf.txt."""
    prof.send_signal(signal.SIGINT)
    prof.wait()
    with open(os.path.join(BENCH, "out", f"{name}-perf.txt"), "w") as f:
        subprocess.run(["perf", "report", "-i", os.path.join(BENCH, "out", f"{name}.perf.data"), "--stdio",
                        "--no-children", "-g", "none", "--sort", "dso,sym"], stdout=f, stderr=subprocess.DEVNULL)


def backlog(n, perf=False, timeout=None, fill="bulk"):
    """n events queued while the worker is stopped (in INSERTs of up to
    100,000 rows, or by pgbench in one-row transactions); deliveries/s once
    it runs again."""
    pids = worker_pids()
    stop_workers(pids)
    try:
        if fill == "bulk":
            done = 0
            while done < n:
                k = min(100_000, n - done)
                bulk_insert("message", k, done)
                done += k
        else:
            _, done = pgbench("message", 4, transactions=n)
            n = done
        queued = q1("SELECT count(*) FROM webhook.queue")
        checkpoint()
        ARR.skip()
        before = workers_status(pids)
        sampler = RssSampler(pids)
        sampler.start()
        prof = start_perf(pids, "worker") if perf else None
        t0 = time.time()
        cpu0 = cpu_seconds(pids)
    finally:
        continue_workers(pids)
    count, last = wait_deliveries(n, timeout=timeout, partial=True)
    if prof:
        finish_perf(prof, "worker")
    wait_worker_idle()
    cpu = cpu_seconds(pids) - cpu0
    time.sleep(1.0)
    after = workers_status(pids)
    peak = sampler.finish()
    return {"events": n, "queued": queued, "arrived": count, "rate": count / (last - t0) if last else 0.0,
            "seconds": last - t0 if last else None, "complete": count == n,
            "cpu_us": cpu * 1e6 / count if count else None,
            "mem_before": before, "mem_after": after, "mem_peak": peak, "workers": len(pids)}


def p_backlog():
    small, large = SIZES["backlog_small"], SIZES["backlog_large"]
    phase(f"7+6. backlog: {small:,} (x {REPEAT}) and {large:,} events queued while the receiver cannot "
          f"be reached (the worker stopped with SIGSTOP), then drained; memory over the {large:,}")
    rates, cpus = [], []
    for i in range(REPEAT):
        b = backlog(small)
        if not b["complete"]:
            raise Incomplete(f"only {b['arrived']:,} of {small:,} deliveries arrived")
        rates.append(b["rate"])
        cpus.append(b["cpu_us"])
        log(f"{small:,} queued: delivered in {b['seconds']:.2f} s, {b['rate']:,.0f}/s "
            f"(worker CPU {b['cpu_us']:.0f} us per delivery)")
    limit = float(ENV.get("BENCH_BACKLOG_TIMEOUT", "300"))
    b = backlog(large, perf=ENV.get("BENCH_PERF") == "1", timeout=limit)
    if b["complete"]:
        log(f"{large:,} queued: delivered in {b['seconds']:.2f} s, {b['rate']:,.0f}/s "
            f"(worker CPU {b['cpu_us']:.0f} us per delivery)")
    else:
        ERRORS["backlog"] = (f"only {b['arrived']:,} of {large:,} delivered in {limit:.0f} s "
                             f"(BENCH_BACKLOG_TIMEOUT); the figures are over those")
        log(f"{large:,} queued: only {b['arrived']:,} delivered in {limit:.0f} s, {b['rate']:,.0f}/s; gave up")
        ERRORS["backlog"] += f" ({worker_state()})"
        # what is left would weigh on the next phase: drop it, unless the
        # worker holds it locked (then the next phase is skipped)
        try:
            q("SET lock_timeout = '5s'")
            q("DELETE FROM webhook.queue")
            q("UPDATE webhook.delivery SET status = 'failed', last_error = 'dropped by the benchmark' "
              "WHERE status = 'pending' AND NOT in_flight")
        except psycopg2.Error as e:
            log(f"could not drop what is left: {str(e).strip()}")
        finally:
            q("RESET lock_timeout")
        time.sleep(5)
        if not drain_everything(stall=30):
            STUCK.append(f"after the backlog, the worker delivered nothing for 30 s with work left "
                         f"({worker_state()})")
            print(f"!! {STUCK[0]}; the remaining phases are skipped", flush=True)
    R["backlog_small_per_s"] = {"value": median(rates), "unit": "deliveries/s", "samples": rates, "events": small,
                                "worker_cpu_us_per_delivery": cpus}
    R["backlog_large_per_s"] = {"value": b["rate"], "unit": "deliveries/s", "events": large, "seconds": b["seconds"],
                                "delivered": b["arrived"], "complete": b["complete"],
                                "worker_cpu_us_per_delivery": b["cpu_us"]}
    R["backlog_ratio"] = {"value": b["rate"] / median(rates), "unit": "ratio"}
    before, after, peak = b["mem_before"], b["mem_after"], b["mem_peak"]
    R["worker_memory"] = {
        "deliveries": b["arrived"], "unit": "MB",
        "before": before, "after": after, "peak_sampled": peak,
        "growth_private": after["private"] - before["private"],
        "peak_private": max(peak.get("private", 0), after["private"]),
        "growth_vmrss": after["VmRSS"] - before["VmRSS"],
        "vmhwm": after["VmHWM"],
        "note": "private = RssAnon + RssFile = VmRSS without the shared memory (shared_buffers pages the worker "
                "touched, which VmRSS and VmHWM count)"}
    log(f"worker memory: private (RssAnon+RssFile) {before['private']:.1f} -> {after['private']:.1f} MB, "
        f"peak {R['worker_memory']['peak_private']:.1f} MB; VmRSS {before['VmRSS']:.1f} -> {after['VmRSS']:.1f} MB, "
        f"VmHWM {after['VmHWM']:.1f} MB")


def p_fanout():
    n, k = SIZES["fanout_events"], SIZES["fanout_endpoints"]
    phase(f"8. fan-out: {k} endpoints, {n:,} events in one INSERT, {n * k:,} deliveries x {REPEAT}")
    for j in range(2, k + 1):
        q("SELECT webhook.create_endpoint(%s, name => %s, verify => false)", (f"{URL}/{j}", f"nginx-{j}"))
    rates, cpus = [], []
    for i in range(REPEAT):
        checkpoint()
        ARR.skip()
        pids = worker_pids()
        cpu0 = cpu_seconds(pids)
        bulk_insert("message", n)
        t_commit = time.time()
        rate, secs = drained_rate(n * k, t_commit)
        rates.append(rate)
        wait_worker_idle()
        cpus.append((cpu_seconds(pids) - cpu0) * 1e6 / (n * k))
        log(f"run {i + 1}: {n * k:,} delivered {secs:.2f} s after the commit: {rate:,.0f}/s "
            f"(worker CPU {cpus[-1]:.0f} us per delivery)")
    R["fanout_per_s"] = {"value": median(rates), "unit": "deliveries/s", "samples": rates,
                         "endpoints": k, "events": n, "worker_cpu_us_per_delivery": cpus}
    q("SELECT webhook.drop_endpoint(id) FROM webhook.endpoint WHERE name LIKE 'nginx-%%'")


def workers_setting():
    """webhook.workers_per_database, or None when this build has no such setting."""
    try:
        return int(q1("SHOW webhook.workers_per_database"))
    except psycopg2.Error:
        return None


def wait_workers(k, timeout=30):
    """Until webhook.worker_status shows k workers of this database (or the
    timeout): their pids."""
    deadline = time.time() + timeout
    while True:
        pids = worker_pids()
        if len(pids) == k or time.time() > deadline:
            return pids
        time.sleep(0.1)


def set_workers(k):
    """workers_per_database = k (ALTER SYSTEM, reload); the workers then running."""
    q(f"ALTER SYSTEM SET webhook.workers_per_database = {int(k)}")
    q("SELECT pg_reload_conf()")
    return wait_workers(k)


def p_workers():
    n = SIZES["workers_events"]
    phase(f"9. workers: {n:,} one-row INSERTs by pgbench (4 clients) committed while the workers are stopped "
          f"(SIGSTOP), then drained by 1 worker and by 2 (webhook.workers_per_database), alternated x {REPEAT}")
    unavailable = None
    if workers_setting() is None:
        unavailable = "webhook.workers_per_database is not a setting of this build"
        log(f"2 workers: not available ({unavailable})")
    rates, cpus, pairs = {1: [], 2: []}, {1: [], 2: []}, []
    try:
        for i in range(REPEAT):
            for k in (1, 2):
                if workers_setting() is not None:
                    pids = set_workers(k)
                    if len(pids) != k:
                        if k == 1:
                            raise RuntimeError(f"webhook.worker_status shows {len(pids)} workers with "
                                               f"workers_per_database = 1")
                        if not unavailable:
                            unavailable = (f"webhook.worker_status shows {len(pids)} worker(s) with "
                                           f"workers_per_database = 2")
                            log(f"2 workers: not available ({unavailable})")
                        continue
                elif k == 2:
                    continue
                b = backlog(n, fill="single")
                if not b["complete"]:
                    raise Incomplete(f"only {b['arrived']:,} of {n:,} deliveries arrived ({k} worker(s))")
                if b["workers"] != k:
                    raise RuntimeError(f"{b['workers']} workers drained the backlog, not {k}")
                rates[k].append(b["rate"])
                cpus[k].append(b["cpu_us"])
                pair = ""
                if k == 2:
                    pairs.append(rates[2][-1] / rates[1][-1])
                    pair = f"; 2 over 1: {pairs[-1]:.2f}"
                log(f"run {i + 1}, {k} worker{'s' if k > 1 else ''}: drained in {b['seconds']:.2f} s, "
                    f"{b['rate']:,.0f}/s (worker CPU {b['cpu_us']:.0f} us per delivery"
                    f"{', summed over both' if k > 1 else ''}){pair}")
    finally:
        if workers_setting() is not None:
            q("ALTER SYSTEM RESET webhook.workers_per_database")
            q("SELECT pg_reload_conf()")
            time.sleep(0.2)         # this session reads the reloaded file too
            wait_workers(workers_setting())
    for k in (1, 2):
        R[f"workers_{k}_deliveries_per_s"] = {
            "value": median(rates[k]), "unit": "deliveries/s", "samples": rates[k], "events": n,
            "worker_cpu_us_per_delivery": median(cpus[k]), "worker_cpu_us_samples": cpus[k],
            "clock": "from the workers' SIGCONT to the arrival of the last delivery; CPU summed over the workers "
                     "until every result is recorded"}
    R["workers_2_available"] = {"value": not unavailable and bool(rates[2]), "why_not": unavailable}
    R["workers_ratio"] = {"value": median(pairs), "unit": "ratio", "pairs": pairs,
                          "ratio_of_medians": (median(rates[2]) / median(rates[1])) if rates[2] and rates[1] else None,
                          "clock": "the median of the alternated pairs' ratios (2 workers over 1)"}


# ---------------------------------------------------------------- report

def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])

    def cmd(*a):
        try:
            r = subprocess.run(a, capture_output=True, text=True)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return None
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "postgresql": q1("SELECT version()"),
        "libcurl": cmd("curl-config", "--version"),
        "nginx": cmd("/usr/sbin/nginx", "-v"), "wrk": cmd("wrk", "-v"),
        "loadavg_at_start": os.getloadavg(),
    }


SETTINGS = ["shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size", "checkpoint_timeout",
            "autovacuum", "shared_preload_libraries", "webhook.databases", "webhook.max_concurrency",
            "webhook.endpoint_concurrency", "webhook.batch_size", "webhook.timeout", "webhook.retention",
            "webhook.workers_per_database"]


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "ratio":
        return f"{v:.2f}"
    if unit in ("s",):
        return f"{v:.3f} s"
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:,.0f} {unit}"


def print_rows(rows):
    w = [max(len(x[i]) for x in rows + [("figure", "value", "target", "")]) for i in range(4)]
    print()
    print(f"{'figure':<{w[0]}}  {'value':>{w[1]}}  {'target':<{w[2]}}  ")
    print("-" * (sum(w) + 8))
    for a, b, c, d in rows:
        print(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}  {d}")


def val(key, sub="value"):
    return R.get(key, {}).get(sub)


def table():
    """Every figure, without targets (summary() has them)."""
    rows = []   # (figure, value, "", "")
    figs = []

    def row(name, v, unit):
        rows.append((name, fmt(v, unit), "", ""))
        figs.append({"name": name, "value": v, "unit": unit})

    cap = val("receiver_capacity")
    row(f"1. receiver capacity (wrk, {val('receiver_capacity', 'connections')} conns)", cap, "req/s")
    row("2. 1-row INSERT, untracked", val("insert_tps_untracked"), "tps")
    row("2. 1-row INSERT, tracked", val("insert_tps_tracked"), "tps")
    row("2. tracked / untracked TPS", val("insert_tps_ratio"), "ratio")
    if val("keeping_up_worker_cpu_us_per_delivery") is not None:
        row("   worker CPU per delivery, keeping up", val("keeping_up_worker_cpu_us_per_delivery"), "us")
        row("   commit -> receiver p50, keeping up", val("keeping_up_latency_ms", "p50"), "ms")
        row("   commit -> receiver p99, keeping up", val("keeping_up_latency_ms", "p99"), "ms")
    v = val("insert_tps_tracked_worker_stopped")
    if v is not None and val("insert_tps_untracked"):
        row("   tracked, worker stopped (trigger alone)", v, "tps")
        row("   its ratio to untracked", v / val("insert_tps_untracked"), "ratio")
    if val("insert_backend_cpu_us_untracked") is not None:
        row("   backend CPU per transaction, untracked", val("insert_backend_cpu_us_untracked"), "us")
        row("   the same, tracked (trigger alone)", val("insert_backend_cpu_us_tracked_worker_stopped"), "us")
        row("   WAL per transaction, untracked", val("insert_wal_bytes_untracked"), "bytes")
        row("   the same, tracked (trigger alone)", val("insert_wal_bytes_tracked_worker_stopped"), "bytes")
        row("   the same, tracked, with the worker's", val("insert_wal_bytes_tracked"), "bytes")
    row(f"3. INSERT {SIZES['bulk_rows']:,} rows, untracked", val("bulk_insert_s_untracked"), "s")
    row(f"3. INSERT {SIZES['bulk_rows']:,} rows, tracked", val("bulk_insert_s_tracked"), "s")
    row("3. tracked / untracked time", val("bulk_insert_ratio"), "ratio")
    for key, name in (("deliveries_per_s_single_row", "4. deliveries/s, single-row txns"),
                      ("deliveries_per_s_bulk", "4. deliveries/s, one statement")):
        v = val(key)
        row(name, v, "deliveries/s")
        if v is not None and cap:
            row("   fraction of receiver capacity", v / cap, "ratio")
        if key == "deliveries_per_s_single_row" and val("worker_cpu_us_per_delivery") is not None:
            row("   worker CPU per delivery", val("worker_cpu_us_per_delivery"), "us")
        if key == "deliveries_per_s_bulk" and val("bulk_worker_cpu_us_per_delivery") is not None:
            row("   worker CPU per delivery", val("bulk_worker_cpu_us_per_delivery"), "us")
    v = val("deliveries_per_s_single_row_while_inserting")
    if v is not None:
        e2e = R["deliveries_per_s_single_row_while_inserting"]
        row("   single-row, while 4 clients insert", v, "deliveries/s")
        row("   its last delivery after the last commit", median(e2e["lag_after_last_commit_s"]), "s")
        row("   worker CPU per delivery", median(e2e["worker_cpu_us_per_delivery"]), "us")
    lat = R.get("latency_ms", {})
    row("5. commit -> receiver p50, 100 a second", lat.get("p50"), "ms")
    row("5. commit -> receiver p99, 100 a second", lat.get("p99"), "ms")
    if val("worker_cpu_us_per_event_at_100_per_s") is not None:
        row("   worker CPU per event, 100 a second", val("worker_cpu_us_per_event_at_100_per_s"), "us")
    mem = R.get("worker_memory", {})
    n = mem.get("deliveries", SIZES["backlog_large"])
    row(f"6. worker RSS* growth, {n:,} deliveries", mem.get("growth_private"), "MB")
    row("6. worker RSS* peak", mem.get("peak_private"), "MB")
    row("   of which heap (RssAnon), after", mem.get("after", {}).get("RssAnon"), "MB")
    if MEM_BY_PHASE:
        row("   RSS*, highest at the end of a phase", max(m["private"] for m in MEM_BY_PHASE.values()), "MB")
    row("   VmRSS growth, shared memory included", mem.get("growth_vmrss"), "MB")
    row("   VmHWM, shared memory included", mem.get("vmhwm"), "MB")
    row(f"7. backlog {SIZES['backlog_small']:,}", val("backlog_small_per_s"), "deliveries/s")
    if val("backlog_small_per_s", "worker_cpu_us_per_delivery"):
        row("   worker CPU per delivery", median(val("backlog_small_per_s", "worker_cpu_us_per_delivery")), "us")
    row(f"7. backlog {SIZES['backlog_large']:,}", val("backlog_large_per_s"), "deliveries/s")
    if val("backlog_large_per_s", "worker_cpu_us_per_delivery") is not None:
        row("   worker CPU per delivery", val("backlog_large_per_s", "worker_cpu_us_per_delivery"), "us")
    row("7. backlog large / small", val("backlog_ratio"), "ratio")
    row(f"8. fan-out, {SIZES['fanout_endpoints']} endpoints", val("fanout_per_s"), "deliveries/s")
    if val("fanout_per_s", "worker_cpu_us_per_delivery"):
        row("   worker CPU per delivery", median(val("fanout_per_s", "worker_cpu_us_per_delivery")), "us")
    if "workers_1_deliveries_per_s" in R:
        for k in (1, 2):
            key = f"workers_{k}_deliveries_per_s"
            if k == 2 and not val("workers_2_available"):
                rows.append(("9. drain, 2 workers", "not available", "", ""))
                figs.append({"name": "9. drain, 2 workers", "value": None, "unit": "deliveries/s",
                             "note": f"not available: {val('workers_2_available', 'why_not')}"})
                continue
            row(f"9. drain, {k} worker{'s' if k > 1 else ''}", val(key), "deliveries/s")
            row("   worker CPU per delivery" + (", both" if k > 1 else ""),
                val(key, "worker_cpu_us_per_delivery"), "us")
        if val("workers_2_available"):
            row("9. 2 workers over 1", val("workers_ratio"), "ratio")

    print_rows(rows)
    print("* RSS without shared memory: VmRSS - RssShmem = RssAnon + RssFile. VmRSS and VmHWM also count\n"
          "  every shared_buffers page the worker has touched, which grows with the tables, not with its memory.\n"
          "  With several workers, the largest one's. Worker CPU: user + system time from /proc, summed over\n"
          "  the database's delivery workers, until every result is recorded, divided by the deliveries.")
    return figs


def summary():
    """Issue 17's targets (worker CPU per delivery, 2 workers over 1, the
    trigger's cost, RSS), then the figures that must not get worse; met or not."""
    rows, out = [], []

    def row(name, v, unit, target, ok, missing=None):
        if v is None:
            shown, met = (missing, "") if missing else ("-", "no figure")
        else:
            shown, met = fmt(v, unit), ("met" if ok else "NOT MET")
        rows.append((name, shown, target, met))
        out.append({"name": name, "value": v, "unit": unit, "target": target,
                    "met": bool(ok) if v is not None else None, **({"note": missing} if missing else {})})

    drain, where = val("worker_cpu_us_per_delivery"), "4a"
    if drain is None and val("workers_1_deliveries_per_s", "worker_cpu_us_per_delivery") is not None:
        drain, where = val("workers_1_deliveries_per_s", "worker_cpu_us_per_delivery"), "9, 1 worker"
    row(f"worker CPU per delivery, draining a backlog ({where})", drain, "us", "<= 40 us",
        drain is not None and drain <= 40)
    cpu, p99 = val("keeping_up_worker_cpu_us_per_delivery"), val("keeping_up_latency_ms", "p99")
    row("worker CPU per delivery, keeping up with 4 clients (2)", cpu, "us", "<= 50 us, with p99 <= 5 ms",
        cpu is not None and cpu <= 50 and p99 is not None and p99 <= 5)
    row("   its commit -> receiver p99", p99, "ms", "<= 5 ms", p99 is not None and p99 <= 5)
    missing = None
    if "workers_1_deliveries_per_s" in R and not val("workers_2_available"):
        missing = "not available"
    r = val("workers_ratio")
    row("deliveries/s, 2 workers over 1, draining (9)", r, "ratio", ">= 1.7", r is not None and r >= 1.7, missing)
    r = val("insert_tps_ratio")
    row("tracked / untracked 1-row insert TPS (2)", r, "ratio", ">= 0.85", r is not None and r >= 0.85)
    r = val("bulk_insert_ratio")
    row(f"tracked / untracked bulk insert time, {SIZES['bulk_rows']:,} rows (3)", r, "ratio", "<= 2.3",
        r is not None and r <= 2.3)
    mem = R.get("worker_memory", {})
    v = mem.get("peak_private")
    row(f"worker RSS* peak over {mem.get('deliveries', SIZES['backlog_large']):,} deliveries (6)", v, "MB",
        "<= 24 MB", v is not None and v <= 24)
    lat = R.get("latency_ms", {})
    row("commit -> receiver p50, 100 a second (5)", lat.get("p50"), "ms", "<= 5 ms",
        lat.get("p50") is not None and lat["p50"] <= 5)
    row("commit -> receiver p99, 100 a second (5)", lat.get("p99"), "ms", "<= 25 ms",
        lat.get("p99") is not None and lat["p99"] <= 25)
    v = mem.get("growth_private")
    row("worker RSS* growth (6)", v, "MB", "<= 10 MB", v is not None and v <= 10)
    r = val("backlog_ratio")
    row("backlog large / small (7)", r, "ratio", ">= 0.8", r is not None and r >= 0.8)

    print("\nissue 17's targets (medians; the phase in brackets), then the figures that must not get worse:")
    print_rows(rows)
    return out


def main():
    global DB, ARR
    DB = connect()
    ARR = Arrivals(ARRIVALS)
    info = machine_info()
    settings = {}
    for s in SETTINGS:
        try:
            settings[s] = q1(f"SHOW {s}")
        except psycopg2.Error:
            settings[s] = None      # not a setting of this build
    print(f"== {info['nproc']} x {info['cpu']}, {info['memory_gb']} GB, Linux {info['kernel']}")
    print(f"   {info['postgresql'].split(' on ')[0]}, {info['libcurl']}, {info['nginx']}")
    print("   settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()))
    print("   client sessions commit synchronously (synchronous_commit = on); the worker's own "
          "transactions commit asynchronously (it sets that itself)")
    print("   sizes: " + ", ".join(f"{k} = {v:,}" for k, v in SIZES.items()) + f" (BENCH_SCALE = {SCALE:g})")

    with open(os.path.join(BENCH, "setup.sql")) as f:
        q(f.read())
    q("SELECT webhook.create_endpoint(%s, name => 'nginx', verify => false)", (URL,))
    # the launcher starts the worker once CREATE EXTENSION has committed
    for _ in range(300):
        if worker_pid():
            break
        time.sleep(0.1)
    if ENV.get("BENCH_STATEMENTS") == "1":
        q("CREATE EXTENSION pg_stat_statements")
    mem_start = workers_status(worker_pids())

    started = time.time()
    phases = {"capacity": p_capacity, "trigger": p_trigger, "bulk": p_bulk, "single": p_single,
              "latency": p_latency, "backlog": p_backlog, "fanout": p_fanout,
              "workers": p_workers}
    chosen = ENV.get("BENCH_PHASES", "").split(",") if ENV.get("BENCH_PHASES") else list(phases)
    for name in chosen:
        run_phase(name, phases[name])
    elapsed = time.time() - started

    states = dict(q("SELECT status, count(*) FROM webhook.delivery GROUP BY 1"))
    figs = table()
    targets = summary()
    print(f"\n   deliveries in webhook.delivery: {states}; the run took {elapsed / 60:.1f} min")
    if ERRORS:
        print("   phases that failed: " + "; ".join(f"{k}: {v}" for k, v in ERRORS.items()))
    if RESTARTS:
        print("   the benchmark restarted a stuck worker " + "; ".join(RESTARTS))

    if ENV.get("BENCH_STATEMENTS") == "1":
        R["statements"] = [
            {"calls": c, "total_ms": t, "mean_ms": m, "rows": r, "toplevel": tl, "query": qq[:400]}
            for c, t, m, r, tl, qq in q(
                "SELECT calls, round(total_exec_time::numeric, 1)::float8, round(mean_exec_time::numeric, 3)::float8,"
                " rows, toplevel, query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15")]
        print("\n   the costliest statements over the whole run (pg_stat_statements; the worker's and the trigger's"
              " among them):")
        for s in R["statements"][:10]:
            print(f"   {s['total_ms']:>10.0f} ms {s['calls']:>8} calls  {' '.join(s['query'].split())[:90]}")

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                   "elapsed_s": elapsed, "scale": SCALE, "sizes": SIZES, "machine": info,
                   "settings": settings, "worker_memory_at_start": mem_start,
                   "worker_memory_after_each_phase": MEM_BY_PHASE,
                   "table": figs, "targets": targets, "results": R, "errors": ERRORS,
                   "deliveries": states, "worker_restarts": RESTARTS}, f, indent=2, default=str)
    print(f"   written to {os.path.relpath(OUT, SRC)}")
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
