"""A live-view audio receiver on libsrtp (pylibsrtp): the iPhone's audio port.

It binds one UDP port (RTP and RTCP muxed, as HomeKit does), decrypts every SRTP/SRTCP packet
with the accessory's key and prints one JSON summary of the RTP headers and sender reports when
it stops. It answers nothing (the video port carries liveness).

Usage: srtp_audio.py --rx-key B64 [--seconds 3] [--ready-file F]
The key is base64 of master key (16 B) || master salt (14 B). The bound port is written to
--ready-file (or stdout's first line) before anything is received.
"""

import argparse
import base64
import json
import socket
import struct
import sys
import time

from pylibsrtp import Error, Policy, Session


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rx-key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--ready-file")
    args = ap.parse_args()

    rx = Session(policy=Policy(key=base64.b64decode(args.rx_key), ssrc_type=Policy.SSRC_ANY_INBOUND,
                               srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(str(port))
    else:
        print(port, flush=True)

    s = {"rtp_packets": 0, "rejected": 0, "payload_types": [], "ssrcs": [], "seq_gaps": 0,
         "ts_steps": {}, "markers": 0, "payload_sizes": [], "sender_reports": []}
    start = time.monotonic()
    sock.settimeout(0.05)
    last_seq = last_ts = None
    while time.monotonic() - start < args.seconds:
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            continue
        if len(data) >= 2 and 200 <= data[1] <= 207:
            try:
                plain = rx.unprotect_rtcp(data)
            except Error:
                s["rejected"] += 1
                continue
            off = 0
            while off + 4 <= len(plain):
                pt = plain[off + 1]
                length = (struct.unpack("!H", plain[off + 2:off + 4])[0] + 1) * 4
                if pt == 200 and off + 20 <= len(plain):
                    ssrc, ntp_hi, ntp_lo, rtp_ts, packets = struct.unpack("!IIIII", plain[off + 4:off + 24])
                    s["sender_reports"].append({"ssrc": ssrc, "ntp": ntp_hi + ntp_lo / 2**32,
                                                "rtp": rtp_ts, "packets": packets})
                off += length
            continue
        try:
            plain = rx.unprotect(data)
        except Error:
            s["rejected"] += 1
            continue
        s["rtp_packets"] += 1
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", plain[:12])
        pt = b1 & 0x7F
        s["markers"] += b1 >> 7
        if pt not in s["payload_types"]:
            s["payload_types"].append(pt)
        if ssrc not in s["ssrcs"]:
            s["ssrcs"].append(ssrc)
        if last_seq is not None and seq != (last_seq + 1) & 0xFFFF:
            s["seq_gaps"] += 1
        if last_ts is not None:
            step = str((ts - last_ts) & 0xFFFFFFFF)
            s["ts_steps"][step] = s["ts_steps"].get(step, 0) + 1
        last_seq, last_ts = seq, ts
        s["payload_sizes"].append(len(plain) - 12 - 4 * (b0 & 0x0F))
    print(json.dumps(s), flush=True)


if __name__ == "__main__":
    sys.exit(main())
