#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from tests/vectors (the repository's copy of the shared vectors)
# plus the example configs. Run from the repository root or from fuzz/.
set -euo pipefail
cd "$(dirname "$0")"
vectors=${VECTORS:-../tests/vectors}
# seed TARGET VECTOR_FILE: every case's bytes as one corpus file of decode_TARGET.
seed() {
  dir=corpus/decode_$1
  mkdir -p "$dir"
  python3 - "$vectors/$2.json" "$dir" <<'PY'
import json, sys, hashlib, pathlib
cases = json.load(open(sys.argv[1]))
out = pathlib.Path(sys.argv[2])
for case in cases:
    data = bytes.fromhex(case["hex"].replace(" ", ""))
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)
PY
}
for target in jbd jbd_up16s jk_pb renogy eg4_ll foxess jk_rs485 daly eg4_lifepower daly_ble; do
  seed "$target" "$target"
done
# The BLE protocols with UART frames: jbd_ble carries jbd's, jk_ble jk_pb's (the 32S layout).
seed jbd_ble jbd
seed jk_ble jk_pb
mkdir -p corpus/decode_victron_can
python3 - "$vectors/victron_can.json" corpus/decode_victron_can <<'PY'
import json, sys, hashlib, pathlib
out = pathlib.Path(sys.argv[2])
for case in json.load(open(sys.argv[1])):
    data = int(case["can_id"], 16).to_bytes(2, "big") + bytes.fromhex(case["hex"].replace(" ", ""))
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)
PY
mkdir -p corpus/config_parse corpus/set_value
cp ../config/*.toml corpus/config_parse/ 2>/dev/null || true
# The example config is mostly comments, which the fuzzer would spend its time mutating: also
# seed it uncommented (every key with its default) and cut into one small file per section.
python3 - ../config/bms-bridge.toml corpus/config_parse <<'PY'
import re, sys, pathlib
out = pathlib.Path(sys.argv[2])
live = []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    m = re.match(r"^#\s?(\[\[?[a-z_.]+\]\]?\s*|[a-z_0-9]+\s*=\s*.*)$", line)
    if m:
        live.append(m.group(1))
    elif line.strip() and not line.lstrip().startswith("#"):
        live.append(line)
# prose that happens to look like a key ("0x41 = board 2 ...") is not config
live = [line for line in live if not line.startswith("0x")]
blocks, current = [], []
for line in live:
    if line.startswith("[") and not line.startswith("[[port.battery"):
        blocks.append(current)
        current = []
    current.append(line)
blocks.append(current)
(out / "uncommented.toml").write_text("\n".join(live) + "\n")
for i, block in enumerate(b for b in blocks if b):
    (out / f"section{i}.toml").write_text("\n".join(block) + "\n")
PY
# D-Bus variants (little endian): signature, padding, value.
python3 - corpus/set_value <<'PY'
import struct, sys, pathlib
out = pathlib.Path(sys.argv[1])
def v(sig, body):
    head = bytes([len(sig)]) + sig.encode() + b"\0"
    return head + b"\0" * ((-len(head)) % 8) + body
seeds = {
    "i1": v("i", struct.pack("<i", 1)), "i0": v("i", struct.pack("<i", 0)), "i7": v("i", struct.pack("<i", 7)),
    "d50": v("d", struct.pack("<d", 50.0)), "dnan": v("d", struct.pack("<d", float("nan"))),
    "b1": v("b", struct.pack("<I", 1)), "s": v("s", struct.pack("<I", 3) + b"abc\0"),
    "y": v("y", b"\x01"), "t": v("t", struct.pack("<Q", 2**63)), "ai": v("ai", struct.pack("<I", 0)),
    "vv": v("v", b"\x01i\0\0" + struct.pack("<i", 1)),
}
for name, data in seeds.items():
    (out / name).write_bytes(data)
PY
ls corpus | while read -r d; do echo "$d: $(ls corpus/$d | wc -l) seeds"; done
