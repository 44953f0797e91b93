"""Drives a running hksv-bridge with aiohomekit (Home Assistant's HomeKit controller).

Called by tests/hap_aiohomekit.rs in phases, each against a fresh bridge process:

  pair    <port> <code> <pairing.json>  wrong code, pair, verify, read, write, subscribe and
                                        receive an event, add/verify/remove a second (regular)
                                        pairing, save the pairing data
  verify  <port> <pairing.json>         pair-verify with the saved pairing (after a restart),
                                        read, then unpair (remove our own pairing)
  unpaired <port>                       /identify works again (only allowed while unpaired)
  bridge  <port> <code> <pairing.json>  bridge mode: pair (or pair-verify when the file exists),
                                        parse /accessories with aiohomekit's model, read every
                                        camera's MotionDetected, fetch a JPEG snapshot per aid

Each phase prints one JSON object on its last stdout line; a failed check raises, so the process
exits non-zero with a traceback. We connect by address and port: no multicast involved.
"""

import asyncio
import json
import os
import sys
import uuid
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from aiohomekit.characteristic_cache import CharacteristicCacheMemory
from aiohomekit.controller.ip.discovery import IpDiscovery
from aiohomekit.controller.ip.pairing import IpPairing
from aiohomekit.exceptions import AuthenticationError, UnpairedError
from aiohomekit.model import Accessories
from aiohomekit.model.categories import Categories
from aiohomekit.model.feature_flags import FeatureFlags
from aiohomekit.model.status_flags import StatusFlags
from aiohomekit.zeroconf import HomeKitService

HOST = "127.0.0.1"
MOTION_DETECTED = "00000022-0000-1000-8000-0026BB765291"
MOTION_SENSOR = "00000085-0000-1000-8000-0026BB765291"
IDENTIFY = "00000014-0000-1000-8000-0026BB765291"
ACCESSORY_INFORMATION = "0000003E-0000-1000-8000-0026BB765291"
PROTOCOL_INFORMATION = "000000A2-0000-1000-8000-0026BB765291"
VERSION = "00000037-0000-1000-8000-0026BB765291"


def controller_stub():
    # IpDiscovery/IpPairing only need `pairings` and a characteristic cache from the
    # controller; the real IpController would also start zeroconf, which we do not want.
    return SimpleNamespace(pairings={}, _char_cache=CharacteristicCacheMemory())


def description(port):
    return HomeKitService(
        name="hksv-bridge-under-test",
        id="00:00:00:00:00:00",
        model="hksv-bridge",
        feature_flags=FeatureFlags(0),
        status_flags=StatusFlags.UNPAIRED,
        config_num=1,
        state_num=1,
        category=Categories.IP_CAMERA,
        protocol_version="1.1",
        type="_hap._tcp.local.",
        address=HOST,
        addresses=[HOST],
        port=port,
    )


def find_char(accessories, ctype):
    for acc in accessories:
        for svc in acc["services"]:
            for ch in svc["characteristics"]:
                if ch["type"] == ctype:
                    return acc["aid"], ch["iid"], svc, ch
    raise AssertionError(f"characteristic {ctype} not found")


async def phase_pair(port, code, pairing_file):
    controller = controller_stub()
    result = {}

    # A wrong setup code must fail with Authentication (M4 Error=2).
    wrong = "".join("9" if c == "0" else "0" if c.isdigit() else c for c in code)
    disc = IpDiscovery(controller, description(port))
    finish = await disc.async_start_pairing("wrong")
    try:
        await finish(wrong)
        raise AssertionError("pairing with a wrong setup code succeeded")
    except AuthenticationError:
        result["wrong_code_rejected"] = True
    await disc.close()

    disc = IpDiscovery(controller, description(port))
    finish = await disc.async_start_pairing("main")
    pairing = await finish(code)
    result["paired"] = True

    accessories = await pairing.list_accessories_and_characteristics()
    result["service_types"] = sorted(s["type"] for a in accessories for s in a["services"])
    info = [s for a in accessories for s in a["services"] if s["type"] == ACCESSORY_INFORMATION]
    assert info and info[0]["iid"] == 1, "AccessoryInformation must have iid 1"
    _, _, _, version = find_char(accessories, VERSION)
    result["protocol_version"] = version["value"]

    aid, iid, _, motion = find_char(accessories, MOTION_DETECTED)
    assert motion["format"] == "bool" and "ev" in motion["perms"], motion
    values = await pairing.get_characteristics([(aid, iid)])
    result["motion_read"] = values[(aid, iid)]["value"]

    # Write: Identify (pw only).
    iaid, iiid, _, _ = find_char(accessories, IDENTIFY)
    write = await pairing.put_characteristics([(iaid, iiid, True)])
    result["identify_write_errors"] = {f"{k[0]}.{k[1]}": v for k, v in write.items()}

    # Subscribe and wait for events (the bridge toggles MotionDetected periodically).
    events = []
    got = asyncio.Event()

    def on_event(ev):
        if (aid, iid) in ev and "value" in ev[(aid, iid)]:
            events.append(ev[(aid, iid)]["value"])
            if len(events) >= 2:
                got.set()

    pairing.dispatcher_connect(on_event)
    await pairing.subscribe([(aid, iid)])
    await asyncio.wait_for(got.wait(), timeout=10)
    result["events"] = events[:2]

    pairings = await pairing.list_pairings()
    result["pairings_before"] = [(p["pairingId"], p["permissions"]) for p in pairings]

    # A second, regular (non-admin) controller.
    key2 = ed25519.Ed25519PrivateKey.generate()
    ltpk2 = key2.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    ltsk2 = key2.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    id2 = str(uuid.uuid4()).upper()
    await pairing.add_pairing(id2, ltpk2.hex(), "User")
    pairings = await pairing.list_pairings()
    result["pairings_with_second"] = sorted((p["pairingId"], p["permissions"]) for p in pairings)

    data2 = dict(pairing.pairing_data)
    data2.update(iOSPairingId=id2, iOSDeviceLTSK=ltsk2.hex(), iOSDeviceLTPK=ltpk2.hex())
    second = IpPairing(controller_stub(), data2)
    acc2 = await second.list_accessories_and_characteristics()
    result["second_verified"] = len(acc2) == len(accessories)
    try:
        await second.list_pairings()
        raise AssertionError("a regular controller listed pairings")
    except UnpairedError:
        # aiohomekit maps State=2 Error=Authentication on /pairings to UnpairedError.
        result["second_list_denied"] = True
    try:
        await second.add_pairing(str(uuid.uuid4()).upper(), ltpk2.hex(), "Admin")
        raise AssertionError("a regular controller added a pairing")
    except AuthenticationError:
        result["second_add_denied"] = True
    try:
        await second.remove_pairing(pairing.pairing_data["iOSPairingId"])
        raise AssertionError("a regular controller removed a pairing")
    except AuthenticationError:
        result["second_remove_denied"] = True

    await pairing.remove_pairing(id2)
    pairings = await pairing.list_pairings()
    result["pairings_after_remove"] = [(p["pairingId"], p["permissions"]) for p in pairings]
    # The removed controller's session is closed by the accessory.
    for _ in range(50):
        if not second.connection.is_connected:
            break
        await asyncio.sleep(0.1)
    result["second_session_closed"] = not second.connection.is_connected
    # aiohomekit reconnects in the background; for a removed controller pair-verify must fail
    # (M4 Authentication), and shutdown re-raises that when the attempt already ran.
    try:
        await second.shutdown()
        result["second_reconnect_refused"] = None
    except AuthenticationError:
        result["second_reconnect_refused"] = True

    with open(pairing_file, "w") as f:
        json.dump(pairing.pairing_data, f)
    result["controller_id"] = pairing.pairing_data["iOSPairingId"]
    await pairing.close()
    return result


async def phase_verify(port, pairing_file):
    with open(pairing_file) as f:
        data = json.load(f)
    data["AccessoryPort"] = port
    pairing = IpPairing(controller_stub(), data)
    result = {}
    accessories = await pairing.list_accessories_and_characteristics()
    result["verified"] = True
    aid, iid, _, _ = find_char(accessories, MOTION_DETECTED)
    values = await pairing.get_characteristics([(aid, iid)])
    result["motion_read"] = values[(aid, iid)]["value"]
    pairings = await pairing.list_pairings()
    result["pairings"] = [(p["pairingId"], p["permissions"]) for p in pairings]
    # Unpair: remove our own (last admin) pairing.
    result["unpaired"] = await pairing.remove_pairing(data["iOSPairingId"])
    await pairing.close()
    return result


async def phase_unpaired(port):
    disc = IpDiscovery(controller_stub(), description(port))
    identified = await disc.async_identify()
    await disc.close()
    return {"identify_ok": identified is True}


async def phase_bridge(port, code, pairing_file):
    controller = controller_stub()
    result = {}
    if os.path.exists(pairing_file):
        with open(pairing_file) as f:
            data = json.load(f)
        data["AccessoryPort"] = port
        pairing = IpPairing(controller, data)
        result["paired"] = "verified"
    else:
        disc = IpDiscovery(controller, description(port))
        finish = await disc.async_start_pairing("bridge")
        pairing = await finish(code)
        with open(pairing_file, "w") as f:
            json.dump(pairing.pairing_data, f)
        result["paired"] = "new"

    raw = await pairing.list_accessories_and_characteristics()
    model = Accessories.from_list(raw)
    result["accessories"] = []
    for acc in model:
        types = sorted(s.type for s in acc.services)
        entry = {"aid": acc.aid, "name": acc.name, "services": types}
        if MOTION_SENSOR in types:
            motion = acc.services.first(service_type=MOTION_SENSOR)
            iid = motion.characteristics_by_type[MOTION_DETECTED].iid
            values = await pairing.get_characteristics([(acc.aid, iid)])
            entry["motion_read"] = values[(acc.aid, iid)]["value"]
            # The demo source needs a moment for its first keyframe.
            jpeg = None
            for _ in range(40):
                jpeg = await pairing.image(acc.aid, 320, 180)
                if jpeg:
                    break
                await asyncio.sleep(0.25)
            entry["snapshot_is_jpeg"] = bool(jpeg) and jpeg[:2] == b"\xff\xd8"
        result["accessories"].append(entry)
    # A snapshot of the bridge itself (no camera) must fail, not crash the session.
    bridge_image = await pairing.image(1, 320, 180)
    result["bridge_snapshot_is_jpeg"] = bool(bridge_image) and bridge_image[:2] == b"\xff\xd8"
    await pairing.close()
    return result


def main():
    phase = sys.argv[1]
    port = int(sys.argv[2])
    if phase == "pair":
        out = asyncio.run(phase_pair(port, sys.argv[3], sys.argv[4]))
    elif phase == "verify":
        out = asyncio.run(phase_verify(port, sys.argv[3]))
    elif phase == "bridge":
        out = asyncio.run(phase_bridge(port, sys.argv[3], sys.argv[4]))
    elif phase == "unpaired":
        out = asyncio.run(phase_unpaired(port))
    else:
        raise SystemExit(f"unknown phase {phase}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
