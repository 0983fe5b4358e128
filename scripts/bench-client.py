#!/usr/bin/env python3
"""Non-decoding WHEP load client (aiortc) for comparing live relays with the same client.

    python bench-client.py --whep URL --pid PID [--login BASE USER PASSWORD]
        [--viewers 1,10,50] [--secs 15]

N aiortc peer connections receive video (ICE, DTLS, SRTP, RTP depacketizing); the decoder
thread is replaced by one that only counts frames, so the client spends no CPU decoding.
For each N it measures the relay process's CPU (utime+stime from /proc/PID/stat) with no
viewer, then with N viewers, and prints a Markdown row. Used by scripts/bench-live.sh, which
installs aiortc (PyPI) in a venv in the cache. aiortc's DTLS certificate is ECDSA, so both
str0m (Panoptes) and GStreamer's webrtcbin accept it.
"""

import argparse
import asyncio
import json
import os
import threading
import time
import urllib.request

import aiortc.rtcrtpreceiver as receiver
from aiortc import RTCPeerConnection, RTCSessionDescription

COUNT = {"frames": 0, "bytes": 0}
LOCK = threading.Lock()


def counting_worker(loop, input_q, output_q, decode_error):
    """Stands in for aiortc's decoder thread: counts encoded frames, decodes nothing."""
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            break
        _codec, frame = task
        with LOCK:
            COUNT["frames"] += 1
            COUNT["bytes"] += len(frame.data)


receiver.decoder_worker = counting_worker


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def cpu_percent(pid, secs):
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    await asyncio.sleep(secs)
    return (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0) * 100


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status, dict(r.headers), r.read()


class Viewer:
    def __init__(self, args, auth):
        self.args, self.auth, self.pc, self.location = args, auth, RTCPeerConnection(), None

    async def start(self):
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", lambda track: None)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"content-type": "application/sdp", **self.auth}
        loop = asyncio.get_running_loop()
        status, h, body = await loop.run_in_executor(
            None, http, "POST", self.args.whep, self.pc.localDescription.sdp.encode(), headers
        )
        assert status == 201, status
        self.location = h.get("Location") or h.get("location")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))

    async def stop(self):
        await self.pc.close()
        if self.location:
            base = self.args.whep.split("/", 3)
            url = f"{base[0]}//{base[2]}{self.location}"
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, http, "DELETE", url, None, self.auth)
            except Exception:  # the session may have ended already
                pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--whep", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--login", nargs=3, metavar=("BASE", "USER", "PASSWORD"))
    ap.add_argument("--viewers", default="1,10,50")
    ap.add_argument("--secs", type=float, default=15)
    args = ap.parse_args()
    auth = {}
    if args.login:
        base, user, password = args.login
        body = json.dumps({"name": user, "password": password}).encode()
        _, h, data = http("POST", f"{base}/api/auth/login", body, {"content-type": "application/json"})
        cookie = (h.get("Set-Cookie") or h.get("set-cookie")).split(";")[0]
        auth = {"cookie": cookie, "x-csrf-token": json.loads(data)["csrf_token"]}
    print("| viewers | relay CPU, no viewer | with viewers | per viewer | Mbit/s received | frames/s per viewer |")
    print("| --- | --- | --- | --- | --- | --- |", flush=True)
    for n in [int(v) for v in args.viewers.split(",")]:
        idle = await cpu_percent(args.pid, args.secs)
        viewers = [Viewer(args, auth) for _ in range(n)]
        for v in viewers:
            await v.start()
        await asyncio.sleep(3)
        with LOCK:
            f0, b0 = COUNT["frames"], COUNT["bytes"]
        t0 = time.monotonic()
        busy = await cpu_percent(args.pid, args.secs)
        dt = time.monotonic() - t0
        with LOCK:
            frames, data = COUNT["frames"] - f0, COUNT["bytes"] - b0
        print(
            f"| {n} | {idle:.1f} % | {busy:.1f} % | {(busy - idle) / n:.2f} % | "
            f"{data * 8 / dt / 1e6:.1f} | {frames / dt / n:.1f} |",
            flush=True,
        )
        await asyncio.gather(*(v.stop() for v in viewers))
        await asyncio.sleep(2)


if __name__ == "__main__":
    asyncio.run(main())
