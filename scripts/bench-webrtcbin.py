#!/usr/bin/python3
"""Reference WebRTC relay for benchmarks: GStreamer webrtcbin behind a minimal WHEP endpoint.

Relays one RTSP H.264 stream without transcoding, as Panoptes does: one RTSP session
(rtspsrc ! depay ! h264parse) shared through a tee; per viewer a queue, an RTP payloader
(with the payload type the viewer offered) and a webrtcbin. Used by scripts/bench-live.sh to
compare CPU per viewer with Panoptes' str0m relay on the same stream in the same run.

    /usr/bin/python3 scripts/bench-webrtcbin.py --rtsp URL --port PORT

POST /whep (application/sdp offer) -> 201 + answer (ICE candidates included, no trickle) and
Location /whep/N; DELETE /whep/N ends it. GET /delay?secs=S&sample=K measures the delay
inside the relay for S seconds on K viewers (see Relay.measure_delay) and answers JSON.
Errors and warnings of the pipeline go to stderr. Prints "READY" when the HTTP server listens.
libnice offers no loopback candidates: run it where a non-loopback interface exists (the
benchmark script makes a veth pair inside its own network namespace).

Needs: python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-nice, gstreamer1.0-plugins-bad.

Clients: aiortc (scripts/bench-client.py) works. The str0m client (live_load) does not get
media: ICE connects, but webrtcbin (GStreamer 1.22) presents an RSA DTLS certificate and
str0m 0.25 aborts the handshake with alert 40 (handshake_failure); setting an ECDSA
certificate through dtlssrtpdec's `pem` or the DTLS transport's `certificate` did not change
the fingerprint webrtcbin writes in its answer. BENCH_DEBUG=1 prints the answers.
"""

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

Gst.init(None)


class Relay:
    def __init__(self, rtsp, gst_defaults=False):
        self.gst_defaults = gst_defaults
        self.pipe = Gst.parse_launch(
            f"rtspsrc location={rtsp} protocols=tcp latency=0 ! rtph264depay ! "
            "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! "
            "tee name=t allow-not-linked=true"
        )
        self.tee = self.pipe.get_by_name("t")

        self.viewers = {}
        self.next_id = 0
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus)
        bus.connect("message::warning", self.on_bus)
        self.pipe.set_state(Gst.State.PLAYING)

    @staticmethod
    def lean_agent(_bin, _sub, element):
        factory = element.get_factory()
        if factory and factory.get_name() in ("nicesrc", "nicesink"):
            agent = element.get_property("agent")
            if agent is not None and agent.get_property("upnp"):
                agent.set_property("upnp", False)
                agent.set_property("ice-tcp", False)

    @staticmethod
    def on_bus(_bus, msg):
        err, dbg = msg.parse_error() if msg.type == Gst.MessageType.ERROR else msg.parse_warning()
        print(f"bench-webrtcbin: {msg.src.get_name()}: {err.message} ({dbg})", file=sys.stderr, flush=True)

    def add(self, offer_text):
        """Runs on the GLib main loop. Returns (id, answer) through a callback."""
        m = re.findall(r"a=rtpmap:(\d+) H264/90000", offer_text)
        pts = [pt for pt in m if re.search(rf"a=fmtp:{pt} .*packetization-mode=1", offer_text)]
        pt = int((pts or m or ["96"])[0])
        self.next_id += 1
        vid = self.next_id
        q = Gst.ElementFactory.make("queue")
        q.set_property("leaky", 2)
        q.set_property("max-size-buffers", 100)
        pay = Gst.ElementFactory.make("rtph264pay")
        pay.set_property("pt", pt)
        pay.set_property("config-interval", -1)
        pay.set_property("aggregate-mode", "zero-latency")
        wrtc = Gst.ElementFactory.make("webrtcbin")
        wrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        if not self.gst_defaults:
            # As Panoptes: ICE over UDP only. libnice's defaults also gather TCP candidates
            # (more sockets per viewer) and start a UPnP IGD discovery per agent (a thread, a
            # GUPnP context and an HTTP server socket per viewer). The agent is reached
            # through the nicesrc/nicesink webrtcbin creates with the transport, before
            # gathering starts: reading webrtcbin's `ice-agent` from Python broke the
            # agent's reference count (CRITICALs, then no transport).
            wrtc.connect("deep-element-added", self.lean_agent)
        for e in (q, pay, wrtc):
            self.pipe.add(e)
        q.link(pay)
        caps = Gst.Caps.from_string(
            f"application/x-rtp,media=video,encoding-name=H264,payload={pt},clock-rate=90000"
        )
        pay.link_filtered(wrtc, caps)
        # The branch must be PLAYING, downstream first, before the tee pushes into it: a
        # buffer reaching a pad that is not active yet returns FLUSHING, the queue keeps
        # that result, and the tee hands it upstream at its next push (it stops at any
        # result but OK and NOT_LINKED), which pauses rtspsrc's tasks for good: every
        # viewer's media stops. Linking first and syncing after stalled the relay at a
        # random viewer (seen from the 7th on; every run with 40 or 50 viewers).
        for e in (wrtc, pay, q):
            e.sync_state_with_parent()
        tee_pad = self.tee.request_pad_simple("src_%u")
        tee_pad.link(q.get_static_pad("sink"))
        self.viewers[vid] = (q, pay, wrtc, tee_pad)
        done = threading.Event()
        result = {}

        def gathered(*_):
            if wrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
                if not done.is_set():
                    result["answer"] = wrtc.get_property("local-description").sdp.as_text()
                    if os.environ.get("BENCH_DEBUG"):
                        print(result["answer"], file=sys.stderr, flush=True)
                    done.set()

        wrtc.connect("notify::ice-gathering-state", gathered)

        def on_answer(promise, _):
            reply = promise.get_reply()
            answer = reply.get_value("answer")
            wrtc.emit("set-local-description", answer, Gst.Promise.new())
            GLib.timeout_add(50, lambda: (gathered(), False)[1])

        def on_remote_set(promise, _):
            wrtc.emit("create-answer", None, Gst.Promise.new_with_change_func(on_answer, None))

        _, sdp = GstSdp.SDPMessage.new_from_text(offer_text)
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdp)
        wrtc.emit("set-remote-description", offer, Gst.Promise.new_with_change_func(on_remote_set, None))
        return vid, done, result

    def remove(self, vid):
        """Unlinks a viewer's branch when no buffer is in flight on its tee pad (an IDLE
        probe), then stops and removes its elements; unlinking a live branch directly
        stalls the whole pipeline."""
        v = self.viewers.pop(vid, None)
        if not v:
            return False
        q, pay, wrtc, tee_pad = v

        def teardown():
            for e in (q, pay, wrtc):
                e.set_state(Gst.State.NULL)
                self.pipe.remove(e)
            return False

        def idle(pad, _info):
            pad.unlink(q.get_static_pad("sink"))
            self.tee.release_request_pad(pad)
            GLib.idle_add(teardown)
            return Gst.PadProbeReturn.REMOVE

        tee_pad.add_probe(Gst.PadProbeType.IDLE, idle)
        return True

    def measure_delay(self, secs, sample):
        """Delay inside the relay, measured for `secs` seconds on up to `sample` viewers spread
        over the connected ones (0: all), one viewer at a time (secs/sample each): from the
        moment a frame enters the tee (RTSP received, depayloaded, parsed: a complete frame,
        as in Panoptes' gateway) to the moment the last RTP packet of that frame (marker
        bit), SRTP-protected, reaches the viewer's nicesink, which hands it to the kernel
        (sendmsg) at once. Also reported: tee to the payloader's last packet (before rtpbin,
        SRTP and DTLS). Pad probes run Python for every packet of the viewer they watch, in
        that viewer's streaming threads: they are attached only for this window, never while
        the CPU is measured, and to one viewer at a time, because probing 10 viewers at once
        made the delay measured at 10 viewers ~5x larger (p50 6-7 ms instead of 1.1-1.7 ms:
        ten threads queueing for Python's lock). Called from an HTTP thread (adding and
        removing probes is thread-safe)."""
        tee_in = {}  # frame PTS -> monotonic ns when it entered the tee
        sent, paid = [], []
        vids = sorted(self.viewers)
        if 0 < sample < len(vids):
            vids = [vids[i * len(vids) // sample] for i in range(sample)]
        kinds = Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST

        def buffers(info):
            if info.type & Gst.PadProbeType.BUFFER_LIST:
                lst = info.get_buffer_list()
                return [lst.get(i) for i in range(lst.length())]
            return [info.get_buffer()]

        def on_tee(_pad, info):
            buf = info.get_buffer()
            if buf is not None:
                tee_in[buf.pts] = time.monotonic_ns()
            return Gst.PadProbeReturn.OK

        teesink = self.tee.get_static_pad("sink")
        tee_probe = teesink.add_probe(Gst.PadProbeType.BUFFER, on_tee)
        time.sleep(0.5)  # frames already in the branches entered the tee unseen
        sampled = 0
        for vid in vids:
            v = self.viewers.get(vid)
            if v is None:
                continue
            _q, pay, wrtc, _tp = v
            sinks = find_all(wrtc, "nicesink")
            if not sinks:
                continue
            sampled += 1
            pt = pay.get_property("pt")
            rtp_pts = {}  # RTP timestamp -> frame PTS, for this viewer's payloader

            def on_pay(_pad, info, rtp_pts=rtp_pts):
                now = time.monotonic_ns()
                for buf in buffers(info):
                    hdr = buf.extract_dup(0, 12)
                    rtp_pts[int.from_bytes(hdr[4:8], "big")] = buf.pts
                    if hdr[1] & 0x80 and buf.pts in tee_in:
                        paid.append(now - tee_in[buf.pts])
                return Gst.PadProbeReturn.OK

            def on_send(_pad, info, rtp_pts=rtp_pts, pt=pt):
                now = time.monotonic_ns()
                for buf in buffers(info):
                    hdr = buf.extract_dup(0, 12)
                    # RTP version 2, this payload type, marker bit: the frame's last packet
                    # (STUN, DTLS and RTCP packets fail one of these tests).
                    if len(hdr) < 12 or hdr[0] >> 6 != 2 or hdr[1] != (0x80 | pt):
                        continue
                    pts = rtp_pts.get(int.from_bytes(hdr[4:8], "big"))
                    if pts is not None and pts in tee_in:
                        sent.append(now - tee_in[pts])
                return Gst.PadProbeReturn.OK

            src = pay.get_static_pad("src")
            probes = [(src, src.add_probe(kinds, on_pay))]
            for sink in sinks:
                pad = sink.get_static_pad("sink")
                probes.append((pad, pad.add_probe(kinds, on_send)))
            time.sleep(secs / len(vids))
            for pad, pid in probes:
                pad.remove_probe(pid)
        teesink.remove_probe(tee_probe)
        return {
            "viewers": len(self.viewers),
            "sampled": sampled,
            "frames": len(sent),
            "sent_ms": quantiles(sent),
            "payloaded_ms": quantiles(paid),
        }


def quantiles(ns):
    if not ns:
        return None
    v = sorted(ns)
    q = lambda p: round(v[min(len(v) - 1, int(p * len(v)))] / 1e6, 2)  # noqa: E731
    return {"p50": q(0.5), "p99": q(0.99), "max": round(v[-1] / 1e6, 2), "mean": round(sum(v) / len(v) / 1e6, 2)}


def find_all(binobj, factory):
    found, it = [], binobj.iterate_recurse()
    while True:
        res, e = it.next()
        if res == Gst.IteratorResult.OK:
            if e.get_factory() and e.get_factory().get_name() == factory:
                found.append(e)
        elif res == Gst.IteratorResult.RESYNC:
            found, _ = [], it.resync()
        else:
            return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtsp", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--gst-defaults", action="store_true",
                    help="keep libnice's ICE-TCP candidates and UPnP discovery (on by default)")
    args = ap.parse_args()
    relay = Relay(args.rtsp, args.gst_defaults)
    loop = GLib.MainLoop()

    def on_main(fn):
        box, ev = {}, threading.Event()

        def run():
            try:
                box["v"] = fn()
            except Exception as e:  # reported to the HTTP thread as a 500
                print(f"bench-webrtcbin: {e!r}", file=sys.stderr, flush=True)
            ev.set()
            return False

        GLib.idle_add(run)
        ev.wait(10)
        return box.get("v")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            added = on_main(lambda: relay.add(body))
            if added is None:
                self.send_response(500)
                self.end_headers()
                return
            vid, done, result = added
            if not done.wait(10):
                self.send_response(504)
                self.end_headers()
                return
            answer = result["answer"].encode()
            self.send_response(201)
            self.send_header("content-type", "application/sdp")
            self.send_header("location", f"/whep/{vid}")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path != "/delay":
                self.send_response(404)
                self.end_headers()
                return
            q = parse_qs(url.query)
            body = json.dumps(
                relay.measure_delay(float(q.get("secs", ["10"])[0]), int(q.get("sample", ["10"])[0]))
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self):
            try:
                vid = int(self.path.rsplit("/", 1)[-1])
            except ValueError:
                vid = -1
            ok = on_main(lambda: relay.remove(vid))
            self.send_response(200 if ok else 404)
            self.end_headers()

    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY", flush=True)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    relay.pipe.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
