#!/usr/bin/env python3
"""Non-decoding WHEP load client (aiortc) for comparing live relays with the same client.

    python bench-client.py --relay name=panoptes,whep=URL,pid=PID[,login=BASE|USER|PASSWORD]
        [,metrics=BASE|TOKEN] [--relay name=webrtcbin,whep=URL,pid=PID,delay=URL]
        [--viewers 1,10,50] [--secs 15] [--per-proc 10] [--delay-secs 10]

N aiortc peer connections receive video (ICE, DTLS, SRTP, RTP depacketizing, jitter buffer);
the decoder thread is replaced by one that only counts complete frames, so the client spends
no CPU decoding. The viewers are spread over worker processes (--per-proc viewers each): one
asyncio process could not keep up with 50 viewers (it got 13.7 of 25 frames/s per viewer).

For each N, and for each relay in turn (so every relay is measured at N under the same
conditions, in the same run), it measures the relay process's CPU (utime+stime from
/proc/PID/stat) for --secs with no viewer, then connects N viewers, waits 3 s, and measures
again for --secs while counting every viewer's frames; then the delay inside the relay:
  - `metrics=BASE|TOKEN` (Panoptes): the summary `panoptes_live_relay_delay_seconds` from
    /metrics at the end of the window (quantiles over its last 60 s; the client waits until
    60 s have passed since that relay's previous viewers left, so they cover this N only:
    the 3 s settle and the window) and its mean over the window from _sum/_count;
  - `delay=URL` (scripts/bench-webrtcbin.py): GET URL?secs=S&sample=10 after the CPU window
    (its probes cost CPU, so they are not attached during it).
Whether the client kept up is printed with every row: frames/s per viewer (min and median
over the viewers), the workers' CPU, the machine's busy share over the window, and UDP
receive- and send-buffer drops in the network namespace (/proc/net/snmp RcvbufErrors,
SndbufErrors: a relay's non-blocking socket whose send buffer is full drops there) and
packets dropped at a full CPU input backlog (/proc/net/softnet_stat, machine-wide).

Used by scripts/bench-live.sh, which installs aiortc (PyPI) in a venv in the cache. aiortc's
DTLS certificate is ECDSA, so both str0m (Panoptes) and GStreamer's webrtcbin accept it.
"""

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def http(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


# ---------------------------------------------------------------- worker process (viewers)


def worker_main(conn):
    """Runs up to --per-proc viewers in one asyncio loop; obeys commands from the parent."""
    import aiortc.rtcrtpreceiver as receiver
    from aiortc import RTCPeerConnection, RTCSessionDescription

    counts = {}  # id(track queue) -> [frames, bytes, gaps, frames missing in gaps, last RTP ts]
    lock = threading.Lock()

    def counting_worker(loop, input_q, output_q, decode_error=None):
        """Stands in for aiortc's decoder thread: counts complete frames, decodes nothing."""
        key = id(output_q)
        while True:
            task = input_q.get()
            if task is None:
                asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
                break
            _codec, frame = task
            with lock:
                c = counts.setdefault(key, [0, 0, 0, 0, None])
                c[0] += 1
                c[1] += len(frame.data)
                # A jump of the 90 kHz timestamp by more than 1.5 frame intervals (25 fps):
                # frames that never completed here.
                if c[4] is not None:
                    step = (frame.timestamp - c[4]) % (1 << 32)
                    if 5400 < step < 90000 * 60:
                        c[2] += 1
                        c[3] += round(step / 3600) - 1
                c[4] = frame.timestamp

    receiver.decoder_worker = counting_worker

    class Viewer:
        def __init__(self, whep, auth):
            self.whep, self.auth, self.location, self.key = whep, auth, None, None
            self.pc = RTCPeerConnection()

        async def start(self):
            self.pc.addTransceiver("video", direction="recvonly")

            @self.pc.on("track")
            def on_track(track):
                self.key = id(track._queue)

            await self.pc.setLocalDescription(await self.pc.createOffer())
            headers = {"content-type": "application/sdp", **self.auth}
            loop = asyncio.get_running_loop()
            status, h, body = await loop.run_in_executor(
                None, http, "POST", self.whep, self.pc.localDescription.sdp.encode(), headers
            )
            if status != 201:
                raise RuntimeError(f"WHEP POST answered {status}")
            self.location = h.get("Location") or h.get("location")
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))

        def count(self):
            with lock:
                return tuple(counts.get(self.key, (0, 0, 0, 0, None))[:4])

        async def stop(self):
            await self.pc.close()
            if self.location:
                base = self.whep.split("/", 3)
                url = f"{base[0]}//{base[2]}{self.location}"
                try:
                    await asyncio.get_running_loop().run_in_executor(None, http, "DELETE", url, None, self.auth)
                except Exception:  # the session may have ended already
                    pass

    async def serve():
        loop = asyncio.get_running_loop()
        inbox = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
        viewers = []
        while True:
            cmd, *args = await inbox.get()
            if cmd == "start":
                whep, auth, n = args
                errors = []
                for _ in range(n):
                    v = Viewer(whep, auth)
                    try:
                        await v.start()
                        viewers.append(v)
                    except Exception as e:
                        errors.append(repr(e))
                        await v.pc.close()
                conn.send(("started", len(viewers), errors))
            elif cmd == "counts":
                conn.send(("counts", [v.count() for v in viewers]))
            elif cmd == "stop":
                await asyncio.gather(*(v.stop() for v in viewers))
                viewers = []
                conn.send(("stopped",))
            elif cmd == "exit":
                return

    asyncio.run(serve())


class Workers:
    def __init__(self, procs):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child,), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)

    def ask_all(self, msgs):
        for c, m in zip(self.conns, msgs):
            if m is not None:
                c.send(m)
        return [c.recv() if m is not None else None for c, m in zip(self.conns, msgs)]

    def start(self, whep, auth, n):
        split = [n // len(self.conns) + (1 if i < n % len(self.conns) else 0) for i in range(len(self.conns))]
        replies = self.ask_all([("start", whep, auth, k) if k else None for k in split])
        started = sum(r[1] for r in replies if r)
        errors = [e for r in replies if r for e in r[2]]
        return started, errors

    def counts(self):
        return [c for r in self.ask_all([("counts",)] * len(self.conns)) for c in r[1]]

    def stop(self):
        self.ask_all([("stop",)] * len(self.conns))

    def cpu_ticks(self):
        return sum(cpu_ticks(p.pid) for p in self.procs)

    def close(self):
        for c in self.conns:
            c.send(("exit",))
        for p in self.procs:
            p.join(5)


# ---------------------------------------------------------------- measurements


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def udp_buffer_errors():
    """Datagrams the kernel dropped: (receive buffer full, send buffer full) in this network
    namespace, and packets dropped because a CPU's input backlog was full (machine-wide;
    veth delivers through it)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    with open("/proc/net/softnet_stat") as f:
        backlog = sum(int(line.split()[1], 16) for line in f)
    return (int(rows[1][rows[0].index("RcvbufErrors")]), int(rows[1][rows[0].index("SndbufErrors")]), backlog)


class Window:
    """CPU of some processes and of the machine over a stretch of time."""

    def __init__(self, pids, workers=None):
        self.pids, self.workers = pids, workers
        self.t0 = time.monotonic()
        self.c0 = [cpu_ticks(p) for p in pids]
        self.w0 = workers.cpu_ticks() if workers else 0
        self.m0 = machine_ticks()
        self.d0 = udp_buffer_errors()

    def end(self):
        dt = time.monotonic() - self.t0
        pct = lambda a, b: (b - a) / TICK / dt * 100  # noqa: E731  % of one core
        m1 = machine_ticks()
        return {
            "secs": dt,
            "cpu": [pct(a, cpu_ticks(p)) for p, a in zip(self.pids, self.c0)],
            "client": pct(self.w0, self.workers.cpu_ticks()) if self.workers else 0.0,
            "machine": (m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1]) * 100,
            "drops": tuple(b - a for a, b in zip(self.d0, udp_buffer_errors())),
        }


def panoptes_metrics(metrics):
    """From Panoptes' /metrics: the delay summary's quantiles (ms), its _sum and _count, and
    the totals of datagrams dropped at its socket and of viewer resyncs."""
    base, token = metrics.split("|", 1)
    _, _, body = http("GET", f"{base}/metrics", headers={"authorization": f"Bearer {token}"})
    m = {"q": {}, "sum": 0.0, "count": 0, "dropped": 0, "resyncs": 0}
    for line in body.decode().splitlines():
        value = line.split()[-1] if line and not line.startswith("#") else None
        if line.startswith("panoptes_live_relay_delay_seconds{quantile="):
            m["q"][line.split('"')[1]] = float(value) * 1000
        elif line.startswith("panoptes_live_relay_delay_seconds_sum"):
            m["sum"] = float(value)
        elif line.startswith("panoptes_live_relay_delay_seconds_count"):
            m["count"] = int(float(value))
        elif line.startswith("panoptes_live_datagrams_dropped_total"):
            m["dropped"] += int(float(value))
        elif line.startswith("panoptes_live_resyncs_total"):
            m["resyncs"] += int(float(value))
    return m


def login(spec):
    base, user, password = spec.split("|", 2)
    body = json.dumps({"name": user, "password": password}).encode()
    _, h, data = http("POST", f"{base}/api/auth/login", body, {"content-type": "application/json"})
    cookie = (h.get("Set-Cookie") or h.get("set-cookie")).split(";")[0]
    return {"cookie": cookie, "x-csrf-token": json.loads(data)["csrf_token"]}


def parse_relay(text):
    r = dict(kv.split("=", 1) for kv in text.split(","))
    r["pid"] = int(r["pid"])
    r.setdefault("name", f"pid {r['pid']}")
    return r


def fmt_ms(q):
    return " / ".join(f"{q[k]:.1f}" if q and k in q else "?" for k in ("p50", "p99", "max"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", action="append", required=True, type=parse_relay,
                    help="name=NAME,whep=URL,pid=PID[,login=BASE|USER|PASSWORD][,metrics=BASE|TOKEN][,delay=URL]")
    ap.add_argument("--viewers", default="1,10,50")
    ap.add_argument("--secs", type=float, default=15)
    ap.add_argument("--per-proc", type=int, default=10, help="viewers per client process")
    ap.add_argument("--delay-secs", type=float, default=10)
    ap.add_argument("--json", help="also write every row to this file (JSON lines)")
    args = ap.parse_args()
    counts = [int(v) for v in args.viewers.split(",")]
    workers = Workers(max(1, math.ceil(max(counts) / args.per_proc)))
    for r in args.relay:
        r["auth"] = login(r["login"]) if "login" in r else {}
        r["left"] = None  # when its last viewers left (Panoptes' rolling summary)
        r["rows"] = {}
    out = open(args.json, "a") if args.json else None
    print(f"client: {len(workers.procs)} aiortc processes, up to {args.per_proc} viewers each; "
          f"{args.secs:g} s windows; {os.cpu_count()} CPUs", flush=True)
    print("| relay | viewers | CPU no viewer | with viewers | per viewer | Mbit/s (all) "
          "| frames/s per viewer: min / median | client CPU | machine busy (all cores) | drops: UDP rcv / snd / backlog "
          "| delay in relay p50 / p99 / max (ms) | mean (ms) |")
    print("| --- " * 12 + "|", flush=True)
    try:
        for n in counts:
            for r in args.relay:
                if "metrics" in r and r["left"] is not None:
                    time.sleep(max(0.0, r["left"] + 61 - time.monotonic()))
                w = Window([r["pid"]])
                time.sleep(args.secs)
                idle = w.end()["cpu"][0]
                started, errors = workers.start(r["whep"], r["auth"], n)
                if errors:
                    print(f"client: {r['name']}: {len(errors)} viewers failed to start: {errors[:3]}",
                          file=sys.stderr, flush=True)
                time.sleep(3)
                if "metrics" in r:
                    pm0 = panoptes_metrics(r["metrics"])
                c0 = workers.counts()
                w = Window([r["pid"]], workers)
                time.sleep(args.secs)
                c1 = workers.counts()
                m = w.end()
                busy = m["cpu"][0]
                fps = [(b[0] - a[0]) / m["secs"] for a, b in zip(c0, c1)]
                fps += [0.0] * (n - len(fps))  # viewers that never started
                order = list(fps)  # by worker, then start order
                fps = sorted(fps)
                mbit = sum(b[1] - a[1] for a, b in zip(c0, c1)) * 8 / m["secs"] / 1e6
                delay, mean, relay_drops = None, None, ""
                if "metrics" in r:
                    pm = panoptes_metrics(r["metrics"])
                    delay = {"p50": pm["q"].get("0.5"), "p99": pm["q"].get("0.99"), "max": pm["q"].get("1")}
                    if pm["count"] > pm0["count"]:
                        mean = (pm["sum"] - pm0["sum"]) / (pm["count"] - pm0["count"]) * 1000
                    relay_drops = (f" (relay: {pm['dropped'] - pm0['dropped']} datagrams dropped, "
                                   f"{pm['resyncs'] - pm0['resyncs']} resyncs)")
                elif "delay" in r:
                    _, _, body = http("GET", f"{r['delay']}?secs={args.delay_secs:g}&sample=10",
                                      timeout=args.delay_secs + 30)
                    d = json.loads(body)
                    delay = d["sent_ms"]
                    mean = delay["mean"] if delay else None
                row = {
                    "relay": r["name"], "viewers": n, "started": started, "idle": idle, "busy": busy,
                    "per_viewer": (busy - idle) / n, "mbit": mbit, "fps_min": fps[0],
                    "fps_median": statistics.median(fps), "client_cpu": m["client"],
                    "machine": m["machine"], "drops": m["drops"], "delay": delay, "delay_mean": mean,
                    "load": os.getloadavg()[0], "fps": [round(f, 2) for f in order],
                    "gaps": [(b[2] - a[2], b[3] - a[3]) for a, b in zip(c0, c1)],
                }
                r["rows"][n] = row
                print(f"| {r['name']} | {n} | {idle:.1f} % | {busy:.1f} % | {row['per_viewer']:.2f} % "
                      f"| {mbit:.1f} | {fps[0]:.1f} / {row['fps_median']:.1f} | {m['client']:.0f} % "
                      f"| {m['machine']:.0f} % | {' / '.join(map(str, m['drops']))}{relay_drops} | {fmt_ms(delay)} "
                      f"| {'?' if mean is None else f'{mean:.1f}'} |", flush=True)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                workers.stop()
                r["left"] = time.monotonic()
                time.sleep(2)
        if len(args.relay) >= 2:
            a, b = args.relay[0], args.relay[1]
            print()
            print(f"| viewers | {a['name']} per viewer | {b['name']} per viewer | ratio "
                  f"| {a['name']} process | {b['name']} process |")
            print("| --- | --- | --- | --- | --- | --- |")
            for n in counts:
                x, y = a["rows"][n], b["rows"][n]
                ratio = x["per_viewer"] / y["per_viewer"] if y["per_viewer"] > 0 else float("nan")
                print(f"| {n} | {x['per_viewer']:.2f} % | {y['per_viewer']:.2f} % | {ratio:.2f} "
                      f"| {x['busy']:.1f} % | {y['busy']:.1f} % |", flush=True)
    finally:
        workers.close()


if __name__ == "__main__":
    main()
