#!/usr/bin/env python3
"""libsrtp (through pylibsrtp) as an SRTP codec for cross-implementation tests.

Reads lines `<op> <hex>` on stdin, answers one line per input: the result as hex, or
`error <reason>`. Ops: `protect`, `unprotect` (RTP), `protect_rtcp`, `unprotect_rtcp`.
argv[1] is base64(key16 || salt14); one outbound and one inbound session share it.
"""
import base64
import sys

from pylibsrtp import Error, Policy, Session


def main() -> None:
    key = base64.b64decode(sys.argv[1])
    profile = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    tx = Session(policy=Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
    rx = Session(policy=Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
    ops = {
        "protect": tx.protect,
        "protect_rtcp": tx.protect_rtcp,
        "unprotect": rx.unprotect,
        "unprotect_rtcp": rx.unprotect_rtcp,
    }
    for line in sys.stdin:
        op, _, data = line.strip().partition(" ")
        try:
            out = ops[op](bytes.fromhex(data)).hex()
        except (Error, KeyError, ValueError) as e:
            out = f"error {e}"
        print(out, flush=True)


if __name__ == "__main__":
    main()
