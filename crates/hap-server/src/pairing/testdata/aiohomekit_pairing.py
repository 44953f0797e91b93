"""aiohomekit's controller side of pair-setup and pair-verify, driven over stdin/stdout.

Used by hap-server's `pairing::interop` test: aiohomekit (Home Assistant's HomeKit
controller, pinned in tests/peers/requirements.txt) talks to our pure accessory state machines
without sockets.

    python aiohomekit_pairing.py <setup code> [<SRP private key a, hex>]

Protocol, one line each:
  -> "REQ <hex TLV body>"      a pair-setup or pair-verify request; the reply comes back as
  <- "<hex TLV body>"          one hex line on stdin
  -> "FRAME <hex>"             after pair-verify: "GET /accessories" encrypted with aiohomekit's
                               controller-to-accessory key, counter 0
  <- "<hex frame>"             the accessory's encrypted answer
  -> "PLAIN <hex>"             that answer, decrypted with aiohomekit's accessory-to-controller key
A failed check raises, so the process exits non-zero with a traceback on stderr.
"""

import struct
import sys
import uuid

from aiohomekit.crypto import srp
from aiohomekit.crypto.chacha20poly1305 import (
    ChaCha20Poly1305Decryptor,
    ChaCha20Poly1305Encryptor,
)
from aiohomekit.protocol import (
    get_session_keys,
    perform_pair_setup_part1,
    perform_pair_setup_part2,
)
from aiohomekit.protocol.tlv import TLV


def drive(state_machine):
    request, expected = state_machine.send(None)
    while True:
        print("REQ", bytes(TLV.encode_list(request)).hex(), flush=True)
        reply = bytes.fromhex(sys.stdin.readline().strip())
        try:
            request, expected = state_machine.send(TLV.decode_bytes(reply, expected=expected))
        except StopIteration as done:
            return done.value


def nonce(counter):
    return b"\0\0\0\0" + struct.pack("<Q", counter)


def main():
    code = sys.argv[1]
    if len(sys.argv) > 2:
        # Fix the SRP private key so the test can hit the leading-zero edge cases.
        a = int(sys.argv[2], 16)
        srp.SrpClient.generate_private_key = staticmethod(lambda: a)

    salt, b_pub = drive(perform_pair_setup_part1(False))
    pairing = drive(perform_pair_setup_part2(code, str(uuid.uuid4()).upper(), salt, b_pub))
    _, derive = drive(get_session_keys(pairing))
    c2a = derive(b"Control-Salt", b"Control-Write-Encryption-Key")
    a2c = derive(b"Control-Salt", b"Control-Read-Encryption-Key")

    plain = b"GET /accessories HTTP/1.1\r\n\r\n"
    aad = struct.pack("<H", len(plain))
    sealed = ChaCha20Poly1305Encryptor(c2a).encrypt(aad, nonce(0), plain)
    print("FRAME", (aad + sealed).hex(), flush=True)
    frame = bytes.fromhex(sys.stdin.readline().strip())
    length = struct.unpack("<H", frame[:2])[0]
    answer = ChaCha20Poly1305Decryptor(a2c).decrypt(frame[:2], nonce(0), frame[2 : 2 + length + 16])
    print("PLAIN", bytes(answer).hex(), flush=True)


if __name__ == "__main__":
    main()
