#!/usr/bin/python3
"""RTSP test camera for Panoptes tests and the demo.

Serves the pre-encoded clips made by scripts/setup.sh (scripts/make-clips.sh)
through GStreamer's RTSP server, looping forever in real time, without
re-encoding (parse + payload only):

    /h264-1080p          H.264 Main 1920x1080, 25 fps, GOP 2 s        (shared)
    /h264-720p           H.264 Main 1280x720                          (shared)
    /h264-360p           H.264 Main 640x360 (a "sub stream")          (shared)
    /h265-720p           H.265 Main 1280x720, open GOP (CRA frames)   (shared)
    /h264-720p-auth      as /h264-720p, RTSP Digest auth required     (shared)
    /h264-720p-private   as /h264-720p, one pipeline per client that
                         starts at the beginning of the clip          (not shared)

Usage:
    /usr/bin/python3 scripts/test-camera.py --port PORT [--bind 127.0.0.1]
        [--clips DIR] [--user panoptes] [--password secret]
        [--udp-ports 20000-29999] [--verbose]

--clips defaults to $PANOPTES_CLIPS, else the setup cache's clips directory.
--port 0 picks a free port. When the server listens it prints exactly one line
"READY rtsp://HOST:PORT" on stdout; logs go to stderr. SIGTERM/SIGINT stop it
cleanly (exit 0). A missing clip or a busy port exits 1 with a message.

RTP goes over TCP (interleaved) or UDP; the server's UDP ports come from
--udp-ports on the --bind address (ports in use are skipped). The listening
socket uses SO_REUSEADDR, so a new server can take the port of one that was
just killed.

How the clips are served: each clip (raw Annex-B .h264/.h265, no B-frames) is
read once and split into access units; every media pipeline is
"appsrc ! h264parse/h265parse ! rtph264pay/rtph265pay" and its appsrc gets the
access units in a loop with computed timestamps (frame n at n/25 s), so the
timestamps grow steadily across loop points; the server's sinks pace it in real
time. (h264parse on a raw stream sets DTS but no PTS, and rtph264pay needs PTS,
hence the appsrc rather than a looping multifilesrc.)

Run it with Debian's /usr/bin/python3, which has PyGObject (python3-gi); another
python3 re-executes the script with it.
"""

import argparse
import ipaddress
import os
import signal
import socket
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
except (ImportError, ValueError) as err:  # ValueError: typelib missing
    # Started with another python (e.g. pyenv's, without PyGObject): retry
    # once with Debian's, which has it.
    SYSTEM_PYTHON = "/usr/bin/python3"
    if (os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
            and os.access(SYSTEM_PYTHON, os.X_OK)
            and not os.environ.get("TEST_CAMERA_REEXEC")):
        os.environ["TEST_CAMERA_REEXEC"] = "1"
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit(
        "test-camera: cannot load GStreamer's Python bindings (%s).\n"
        "Run it with Debian's /usr/bin/python3 and install the packages with "
        "scripts/setup.sh (python3-gi, gir1.2-gst-rtsp-server-1.0, "
        "gstreamer1.0-plugins-*)." % err
    )

PROG = "test-camera"

# mount -> (clip base name, codec, shared, needs auth)
MOUNTS = {
    "/h264-1080p": ("h264-1080p", "h264", True, False),
    "/h264-720p": ("h264-720p", "h264", True, False),
    "/h264-360p": ("h264-360p", "h264", True, False),
    "/h265-720p": ("h265-720p", "h265", True, False),
    "/h264-720p-auth": ("h264-720p", "h264", True, True),
    "/h264-720p-private": ("h264-720p", "h264", False, False),
}

FPS = 25  # the clips' frame rate (scripts/make-clips.sh)
FRAME_NS = Gst.SECOND // FPS

# Per codec: caps of the elementary stream, then parser + payloader. The
# parser only checks and aligns the stream (no re-encoding); the payloader
# puts SPS/PPS (and VPS) in front of every keyframe (config-interval=-1) so a
# client joining a shared stream can start at the next keyframe.
PIPELINE = {
    "h264": ("video/x-h264,stream-format=byte-stream,alignment=au,framerate=%d/1" % FPS,
             "h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1"),
    "h265": ("video/x-h265,stream-format=byte-stream,alignment=au,framerate=%d/1" % FPS,
             "h265parse ! rtph265pay name=pay0 pt=96 config-interval=-1"),
}

ROLE_USER = "user"
ROLE_ANONYMOUS = "anonymous"


def log(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr, flush=True)


def default_clips_dir():
    if os.environ.get("PANOPTES_CLIPS"):
        return os.environ["PANOPTES_CLIPS"]
    cache = os.environ.get("PANOPTES_CACHE")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        cache = os.path.join(xdg, "panoptes")
    return os.path.join(cache, "clips")


def parse_udp_ports(text):
    try:
        lo, hi = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError("expected MIN-MAX, e.g. 20000-29999")
    if not (1024 <= lo < hi <= 65535) or (hi - lo) < 3:
        raise argparse.ArgumentTypeError("need 1024 <= MIN < MAX <= 65535, at least 4 ports")
    return lo, hi


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="test-camera.py",
        description="GStreamer RTSP test camera serving Panoptes' test clips.",
    )
    p.add_argument("--port", type=int, required=True,
                   help="RTSP TCP port (0: pick a free one; READY tells which)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on, RTSP and RTP/UDP (default 127.0.0.1)")
    p.add_argument("--clips", default=None,
                   help="clips directory (default $PANOPTES_CLIPS, else "
                        "${PANOPTES_CACHE:-${XDG_CACHE_HOME:-~/.cache}/panoptes}/clips)")
    p.add_argument("--user", default="panoptes", help="user of /h264-720p-auth (default panoptes)")
    p.add_argument("--password", default="secret",
                   help="password of /h264-720p-auth (default secret)")
    p.add_argument("--udp-ports", type=parse_udp_ports, default=(20000, 29999),
                   metavar="MIN-MAX",
                   help="server UDP port range for RTP/RTCP over UDP (default 20000-29999; "
                        "ports in use are skipped)")
    p.add_argument("--verbose", "-v", action="store_true", help="log client connections")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error("--port must be 0..65535")
    if args.clips is None:
        args.clips = default_clips_dir()
    return args


def resolve_bind(host):
    """Return the numeric address for --bind (a literal or a resolvable name)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise SystemExit("%s: cannot resolve --bind %s: %s" % (PROG, host, err))
    infos.sort(key=lambda i: i[0] != socket.AF_INET)  # prefer IPv4
    return infos[0][4][0]


# NAL unit types that open a new access unit when a picture came before them
# (AUD, SEI, parameter sets, ...); suffix SEI and end-of-sequence do not.
AU_OPENERS = {
    "h264": {6, 7, 8, 9, 14, 15, 16, 17, 18},
    "h265": {32, 33, 34, 35, 39, 41, 42, 43, 44} | set(range(48, 56)),
}


def split_access_units(data, codec):
    """Split an Annex-B elementary stream into access units (one per frame).

    A new access unit starts at an opener NAL (see AU_OPENERS) or at the first
    slice of a picture (first_mb_in_slice == 0 in H.264,
    first_slice_segment_in_pic_flag in H.265) once the current one holds a
    picture.
    """
    hevc = codec == "h265"
    openers = AU_OPENERS[codec]
    units = []
    au_start = None
    au_has_picture = False
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(data):
        nal = pos + 3
        start = pos - 1 if pos > 0 and data[pos - 1] == 0 else pos  # 4-byte start code
        if hevc:
            ntype = (data[nal] >> 1) & 0x3F
            vcl = ntype < 32
            flag_byte = nal + 2
        else:
            ntype = data[nal] & 0x1F
            vcl = 1 <= ntype <= 5
            flag_byte = nal + 1
        first_slice = vcl and flag_byte < len(data) and bool(data[flag_byte] & 0x80)
        if au_start is None:
            au_start = start
        elif au_has_picture and (ntype in openers or first_slice):
            units.append(data[au_start:start])
            au_start, au_has_picture = start, False
        au_has_picture = au_has_picture or vcl
        pos = data.find(b"\x00\x00\x01", nal)
    if au_start is not None and au_has_picture:
        units.append(data[au_start:])
    return units


class Clip:
    """A clip held in memory as one Gst.Buffer per access unit (frame)."""

    def __init__(self, path, codec):
        with open(path, "rb") as f:
            data = f.read()
        self.path = path
        self.buffers = [Gst.Buffer.new_wrapped(au) for au in split_access_units(data, codec)]
        if not self.buffers:
            raise ValueError("no %s access units in it" % codec.upper())


def load_clips(clips_dir):
    """Load the clips of all mounts; exit with a clear message if one is missing."""
    wanted = {}
    for clip, codec, _, _ in MOUNTS.values():
        wanted[clip] = (os.path.abspath(os.path.join(clips_dir, "%s.%s" % (clip, codec))), codec)
    missing = [path for path, _ in wanted.values() if not os.path.isfile(path)]
    if missing:
        for path in missing:
            log("missing clip %s" % path)
        log("make the clips with scripts/setup.sh (or pass --clips DIR / set PANOPTES_CLIPS)")
        sys.exit(1)
    clips = {}
    for clip, (path, codec) in wanted.items():
        try:
            clips[clip] = Clip(path, codec)
        except (OSError, ValueError) as err:
            log("cannot use clip %s: %s; make it again with scripts/setup.sh" % (path, err))
            sys.exit(1)
    return clips


class LoopFeeder:
    """Feeds one media pipeline's appsrc with a clip, looping forever.

    Timestamps are computed, not read from the file: frame n of the endless
    stream gets PTS = DTS = n / FPS, so they keep increasing across loops (the
    clips have no B-frames: decode order is presentation order). The RTSP
    server's sinks sync on the pipeline clock, which paces the stream in real
    time; appsrc asks for more ("need-data") as its small queue drains. Every
    new media pipeline starts at frame 0, the clip's first (IDR) frame.
    """

    def __init__(self, clip, appsrc):
        self.buffers = clip.buffers
        self.frame = 0
        appsrc.connect("need-data", self.on_need_data)

    def on_need_data(self, appsrc, _length):
        buf = self.buffers[self.frame % len(self.buffers)].copy()  # shares the memory
        buf.pts = buf.dts = self.frame * FRAME_NS
        buf.duration = FRAME_NS
        self.frame += 1
        appsrc.emit("push-buffer", buf)


def make_permissions(anonymous_construct):
    perms = GstRtspServer.RTSPPermissions.new()
    for role, construct in ((ROLE_USER, True), (ROLE_ANONYMOUS, anonymous_construct)):
        perms.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT,
                                      construct)
    return perms


def make_token(role):
    token = GstRtspServer.RTSPToken.new()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
    return token


def build_server(args, bind_addr, clips):
    server = GstRtspServer.RTSPServer.new()
    server.set_address(bind_addr)
    server.set_service(str(args.port))

    # Digest auth for the -auth mount. Every other mount lets the anonymous
    # role access and construct media. On the -auth mount anonymous keeps
    # "access" (so the mount exists: no 404) but lacks "construct", which makes
    # the server answer 401 with a Digest challenge.
    auth = GstRtspServer.RTSPAuth.new()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    auth.set_realm("panoptes-test-camera")
    auth.set_default_token(make_token(ROLE_ANONYMOUS))
    auth.add_digest(args.user, args.password, make_token(ROLE_USER))
    server.set_auth(auth)

    # Server-side RTP/RTCP UDP ports come from this pool, bound to the same
    # address as the RTSP socket (never the wildcard unless asked for).
    pool = GstRtspServer.RTSPAddressPool.new()
    lo, hi = args.udp_ports
    if not pool.add_range(bind_addr, bind_addr, lo, hi, 0):
        raise SystemExit("%s: invalid UDP address pool %s:%d-%d" % (PROG, bind_addr, lo, hi))

    def on_media_configure(_factory, media, clip):
        appsrc = media.get_element().get_by_name("src")
        # The feeder lives as long as the media object (and its pipeline).
        media.feeder = LoopFeeder(clip, appsrc)

    mounts = server.get_mount_points()
    for mount, (clip, codec, shared, needs_auth) in MOUNTS.items():
        caps, tail = PIPELINE[codec]
        factory = GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch(
            '( appsrc name=src format=time is-live=false max-buffers=4 caps="%s" ! %s )'
            % (caps, tail))
        factory.connect("media-configure", on_media_configure, clips[clip])
        factory.set_shared(shared)
        factory.set_address_pool(pool)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
        factory.set_permissions(make_permissions(anonymous_construct=not needs_auth))
        mounts.add_factory(mount, factory)

    if args.verbose:
        def on_client(_server, client):
            conn = client.get_connection()
            log("client connected from %s" % (conn.get_ip() if conn else "?"))
            client.connect("closed", lambda _c: log("client closed"))
        server.connect("client-connected", on_client)
    return server


def main(argv):
    args = parse_args(argv)
    Gst.init(None)
    clips = load_clips(args.clips)
    bind_addr = resolve_bind(args.bind)
    server = build_server(args, bind_addr, clips)
    loop = GLib.MainLoop()

    try:
        # Creates, binds (SO_REUSEADDR: restartable at once after a kill) and
        # listens on the socket.
        source = server.create_source(None)
    except GLib.Error as err:
        log("cannot listen on %s:%d: %s" % (bind_addr, args.port, err.message))
        return 1
    source.attach(None)

    def on_signal(signame):
        log("%s: stopping" % signame)
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, on_signal, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, on_signal, "SIGINT")

    port = server.get_bound_port()
    host = bind_addr
    if ipaddress.ip_address(host).is_unspecified:
        host = "127.0.0.1" if ipaddress.ip_address(host).version == 4 else "::1"
    if ":" in host:
        host = "[%s]" % host
    log("serving %s from %s (mounts: %s)" % (host, args.clips, " ".join(MOUNTS)))
    print("READY rtsp://%s:%d" % (host, port), flush=True)

    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
