#!/usr/bin/python3
"""Reference WebRTC relay for benchmarks: GStreamer webrtcbin behind a minimal WHEP endpoint.

Relays one RTSP H.264 stream without transcoding, as Panoptes does: one RTSP session
(rtspsrc ! depay ! h264parse) shared through a tee; per viewer a queue, an RTP payloader
(with the payload type the viewer offered) and a webrtcbin. Used by scripts/bench-live.sh to
compare CPU per viewer with Panoptes' str0m relay on the same stream in the same run.

    /usr/bin/python3 scripts/bench-webrtcbin.py --rtsp URL --port PORT

POST /whep (application/sdp offer) -> 201 + answer (ICE candidates included, no trickle) and
Location /whep/N; DELETE /whep/N ends it. Prints "READY" when the HTTP server listens.
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
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

Gst.init(None)


class Relay:
    def __init__(self, rtsp):
        self.pipe = Gst.parse_launch(
            f"rtspsrc location={rtsp} protocols=tcp latency=0 ! rtph264depay ! "
            "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! "
            "tee name=t allow-not-linked=true"
        )
        self.tee = self.pipe.get_by_name("t")

        self.viewers = {}
        self.next_id = 0
        self.pipe.set_state(Gst.State.PLAYING)

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtsp", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="0.0.0.0")
    args = ap.parse_args()
    relay = Relay(args.rtsp)
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
