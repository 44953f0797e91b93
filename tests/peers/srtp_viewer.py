"""A live-view receiver that plays the iPhone's media side, built on libsrtp (pylibsrtp).

It binds one UDP port for RTP and RTCP (HomeKit muxes them), decrypts every SRTP/SRTCP packet
the accessory sends with the accessory's key, checks the RTP stream, answers each sender report
with an SRTCP receiver report (as iOS does; the accessory uses them as liveness), reassembles the
H.264 access units (RFC 6184: single NAL, STAP-A, FU-A) into an Annex B file for ffprobe, and
prints one JSON summary on stdout when it stops.

Usage: srtp_viewer.py --rx-key B64 --tx-key B64 [--port 0] [--seconds 3] [--out file.h264]
                      [--rr-until S] [--idle S] [--ready-file F]
Keys are base64 of master key (16 B) || master salt (14 B). --rx-key decrypts what the accessory
sends; --tx-key protects our receiver reports. The chosen port is written to --ready-file (or
stdout's first line) before anything is received.
"""

import argparse
import base64
import json
import socket
import struct
import sys
import time

from pylibsrtp import Error, Policy, Session

OUR_SSRC = 0x1234ABCD


def policy(key, direction):
    return Policy(key=key, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)


def receiver_report(reporter_ssrc, source_ssrc, highest_seq):
    # RFC 3550 6.4.2: one report block, no loss figures (iOS-style liveness only).
    header = struct.pack("!BBH", 0x81, 201, 7)
    block = struct.pack("!II", reporter_ssrc, source_ssrc)
    block += struct.pack("!IIIII", 0, highest_seq & 0xFFFFFFFF, 0, 0, 0)
    return header + block


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rx-key", required=True)
    ap.add_argument("--tx-key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--idle", type=float, default=0.0, help="stop after this much silence (0: never)")
    ap.add_argument("--rr-until", type=float, default=1e9, help="stop answering SRs after S seconds")
    ap.add_argument("--out")
    ap.add_argument("--ready-file")
    args = ap.parse_args()

    rx = Session(policy=policy(base64.b64decode(args.rx_key), Policy.SSRC_ANY_INBOUND))
    tx = Session(policy=policy(base64.b64decode(args.tx_key), Policy.SSRC_ANY_OUTBOUND))

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(str(port))
    else:
        print(port, flush=True)

    s = {
        "rtp_packets": 0, "rtcp_packets": 0, "rejected": 0, "max_datagram": 0,
        "payload_types": [], "ssrcs": [], "seq_gaps": 0, "markers": 0,
        "access_units": 0, "idr_units": 0, "ts_steps": {}, "first_nal_types": [],
        "first_unit_has_sps_pps": False, "first_unit_is_idr": False,
        "sender_reports": 0, "first_sr_s": None, "receiver_reports_sent": 0,
        "bye": False, "first_packet_s": None, "last_packet_s": None, "stopped_by": "time",
    }
    start = time.monotonic()
    sock.settimeout(0.05)
    out = open(args.out, "wb") if args.out else None
    last_seq = None
    last_ts = None
    unit_types = []   # NAL types of the access unit being received
    fu = None         # FU-A reassembly buffer
    last_rx = start
    peer = None
    highest_seq = 0

    def emit(nal):
        unit_types.append(nal[0] & 0x1F)
        if out:
            out.write(b"\x00\x00\x00\x01" + nal)

    while True:
        now = time.monotonic()
        if now - start >= args.seconds:
            break
        if args.idle and s["rtp_packets"] and now - last_rx >= args.idle:
            s["stopped_by"] = "idle"
            break
        try:
            data, peer = sock.recvfrom(65535)
        except socket.timeout:
            continue
        now = time.monotonic()
        last_rx = now
        s["max_datagram"] = max(s["max_datagram"], len(data))
        if len(data) < 2:
            s["rejected"] += 1
            continue
        if 200 <= data[1] <= 207:
            try:
                plain = rx.unprotect_rtcp(data)
            except Error:
                s["rejected"] += 1
                continue
            s["rtcp_packets"] += 1
            off = 0
            while off + 4 <= len(plain):
                pt = plain[off + 1]
                length = (struct.unpack("!H", plain[off + 2:off + 4])[0] + 1) * 4
                if pt == 200:
                    s["sender_reports"] += 1
                    if s["first_sr_s"] is None:
                        s["first_sr_s"] = now - start
                    sender = struct.unpack("!I", plain[off + 4:off + 8])[0]
                    if now - start < args.rr_until:
                        rr = tx.protect_rtcp(receiver_report(OUR_SSRC, sender, highest_seq))
                        sock.sendto(rr, peer)
                        s["receiver_reports_sent"] += 1
                elif pt == 203:
                    s["bye"] = True
                off += length
            continue
        try:
            plain = rx.unprotect(data)
        except Error:
            s["rejected"] += 1
            continue
        if s["first_packet_s"] is None:
            s["first_packet_s"] = now - start
        s["last_packet_s"] = now - start
        s["rtp_packets"] += 1
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", plain[:12])
        cc = b0 & 0x0F
        payload = plain[12 + 4 * cc:]
        marker, pt = b1 >> 7, b1 & 0x7F
        highest_seq = seq
        if pt not in s["payload_types"]:
            s["payload_types"].append(pt)
        if ssrc not in s["ssrcs"]:
            s["ssrcs"].append(ssrc)
        if last_seq is not None and seq != (last_seq + 1) & 0xFFFF:
            s["seq_gaps"] += 1
        last_seq = seq
        if last_ts is not None and ts != last_ts:
            step = str((ts - last_ts) & 0xFFFFFFFF)
            s["ts_steps"][step] = s["ts_steps"].get(step, 0) + 1
        last_ts = ts
        if not payload:
            continue
        kind = payload[0] & 0x1F
        if kind == 24:  # STAP-A
            p = 1
            while p + 2 <= len(payload):
                n = struct.unpack("!H", payload[p:p + 2])[0]
                emit(payload[p + 2:p + 2 + n])
                p += 2 + n
        elif kind == 28:  # FU-A
            fu_header = payload[1]
            if fu_header & 0x80:
                fu = bytearray([(payload[0] & 0xE0) | (fu_header & 0x1F)])
            if fu is not None:
                fu += payload[2:]
                if fu_header & 0x40:
                    emit(bytes(fu))
                    fu = None
        else:
            emit(bytes(payload))
        if marker:
            s["markers"] += 1
            s["access_units"] += 1
            if 5 in unit_types:
                s["idr_units"] += 1
            if s["access_units"] == 1:
                s["first_nal_types"] = unit_types[:]
                s["first_unit_has_sps_pps"] = 7 in unit_types and 8 in unit_types
                s["first_unit_is_idr"] = 5 in unit_types
            unit_types = []
    if out:
        out.close()
    print(json.dumps(s), flush=True)


if __name__ == "__main__":
    sys.exit(main())
