// Reference HDS value codec for crates/hds/tests/node_crosscheck.rs: HAP-NodeJS's own
// DataStreamParser (pinned in package.json), driven through JSON on stdin/stdout.
//
// stdin:  {"decode": ["<hex payload>", ...], "encode": [{"header": J, "message": J}, ...],
//          "keys": [{"secret": hex, "controllerSalt": hex, "accessorySalt": hex}, ...],
//          "seal": [{"key": hex, "counter": n, "payload": hex}, ...]}
//         payload = header_len u8 || header || message (HDS plaintext layout)
// stdout: {"decoded": [{"header": J, "message": J} | {"error": "..."}], "encoded": ["<hex payload>", ...],
//          "keys": [{"accessoryToController": hex, "controllerToAccessory": hex}], "sealed": ["<hex frame>"]}
// keys and seal use HAP-NodeJS's own hapCrypto (HKDF and ChaCha20-Poly1305) the way
// DataStreamServer.prepareSession and sendHDSFrame do.
// J is JSON with tagged objects: {"$data": hex} = Buffer, {"$int64": n} = Int64 wrapper,
// {"$undefined": true} = a value HAP-NodeJS decoded to undefined.
"use strict";
const path = require("path");
const modules = process.env.HKSV_TEST_NODE_MODULES || path.join(__dirname, "node_modules");
const parser = require(path.join(modules, "@homebridge/hap-nodejs/dist/lib/datastream/DataStreamParser.js"));
const { DataStreamParser, DataStreamReader, DataStreamWriter, Int64 } = parser;
const hapCrypto = require(path.join(modules, "@homebridge/hap-nodejs/dist/lib/util/hapCrypto.js"));

function deriveKeys(k) {
  const salt = Buffer.concat([Buffer.from(k.controllerSalt, "hex"), Buffer.from(k.accessorySalt, "hex")]);
  const ikm = Buffer.from(k.secret, "hex");
  return {
    accessoryToController: hapCrypto.HKDF("sha512", salt, ikm, Buffer.from("HDS-Read-Encryption-Key"), 32).toString("hex"),
    controllerToAccessory: hapCrypto.HKDF("sha512", salt, ikm, Buffer.from("HDS-Write-Encryption-Key"), 32).toString("hex"),
  };
}

function sealFrame(s) {
  const payload = Buffer.from(s.payload, "hex");
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt8(1, 0);
  const nonce = Buffer.alloc(8);
  hapCrypto.writeUInt64LE(s.counter, nonce);
  const enc = hapCrypto.chacha20_poly1305_encryptAndSeal(Buffer.from(s.key, "hex"), nonce, header, payload);
  return Buffer.concat([header, enc.ciphertext, enc.authTag]).toString("hex");
}

function toJs(j) {
  if (Array.isArray(j)) return j.map(toJs);
  if (j !== null && typeof j === "object") {
    if ("$data" in j) return Buffer.from(j.$data, "hex");
    if ("$int64" in j) return new Int64(j.$int64);
    const o = {};
    for (const [k, v] of Object.entries(j)) o[k] = toJs(v);
    return o;
  }
  return j;
}

function toJson(v) {
  if (v === undefined) return { $undefined: true };
  if (Buffer.isBuffer(v)) return { $data: v.toString("hex") };
  if (Array.isArray(v)) return v.map(toJson);
  if (v !== null && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = toJson(x);
    return o;
  }
  return v;
}

function decodePayload(hex) {
  const payload = Buffer.from(hex, "hex");
  const headerLength = payload.readUInt8(0);
  const header = DataStreamParser.decode(new DataStreamReader(payload.subarray(1, 1 + headerLength)));
  const message = DataStreamParser.decode(new DataStreamReader(payload.subarray(1 + headerLength)));
  return { header: toJson(header), message: toJson(message) };
}

function encodePayload(item) {
  const hw = new DataStreamWriter();
  const mw = new DataStreamWriter();
  DataStreamParser.encode(toJs(item.header), hw);
  DataStreamParser.encode(toJs(item.message), mw);
  return Buffer.concat([Buffer.from([hw.length()]), hw.getData(), mw.getData()]).toString("hex");
}

let input = "";
process.stdin.on("data", (d) => { input += d; });
process.stdin.on("end", () => {
  const req = JSON.parse(input);
  const decoded = (req.decode || []).map((hex) => {
    try { return decodePayload(hex); } catch (e) { return { error: String(e.message || e) }; }
  });
  const encoded = (req.encode || []).map(encodePayload);
  const keys = (req.keys || []).map(deriveKeys);
  const sealed = (req.seal || []).map(sealFrame);
  process.stdout.write(JSON.stringify({ decoded, encoded, keys, sealed }));
});
