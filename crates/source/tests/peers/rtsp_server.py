#!/usr/bin/env python3
"""A real RTSP server for the source crate's tests and the end-to-end tests in tests/: GStreamer's gst-rtsp-server (Debian
gir1.2-gst-rtsp-server-1.0 + python3-gi) serving an MP4 file (H.264 + AAC) on loopback.

usage: rtsp_server.py PORT FILE [USER PASSWORD]
Prints "READY rtsp://127.0.0.1:PORT/cam" once listening. /cam is one shared pipeline (clients
join it mid-stream); /cam-own gives each client its own pipeline from the file's start, as
independent cameras would be.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def make_factory(path: str, shared: bool, credentials: list) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( filesrc location={path} ! qtdemux name=d "
        "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(shared)
    if len(credentials) == 2:
        user, password = credentials
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(user, "media.factory.access", True)
        permissions.add_permission_for_role(user, "media.factory.construct", True)
        factory.set_permissions(permissions)
    return factory


def main() -> None:
    port, path = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    if len(sys.argv) >= 5:
        user, password = sys.argv[3], sys.argv[4]
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
    for mount, shared in (("/cam", True), ("/cam-own", False)):
        server.get_mount_points().add_factory(mount, make_factory(path, shared, sys.argv[3:5]))
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"READY rtsp://127.0.0.1:{port}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
