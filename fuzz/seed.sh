#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from tests/vectors (the repository's copy of the shared vectors)
# plus the example configs. Run from the repository root or from fuzz/.
set -euo pipefail
cd "$(dirname "$0")"
vectors=${VECTORS:-../tests/vectors}
for target in jbd jbd_up16s jk_pb renogy eg4_ll foxess jk_rs485 daly eg4_lifepower eg4_lifepower4 daren_485; do
  dir=corpus/decode_$target
  mkdir -p "$dir"
  python3 - "$vectors/$target.json" "$dir" <<'PY'
import json, sys, hashlib, pathlib
cases = json.load(open(sys.argv[1]))
out = pathlib.Path(sys.argv[2])
for case in cases:
    data = bytes.fromhex(case["hex"].replace(" ", ""))
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)
PY
done
# CAN frames: the id first, two bytes for an 11-bit id, four with the top bit set for a 29-bit
# one (fuzz/src/lib.rs `can`).
for can in victron_can daly_can jk_can; do
    [ -f "$vectors/$can.json" ] || continue
    mkdir -p "corpus/decode_$can"
    python3 - "$vectors/$can.json" "corpus/decode_$can" <<'PY'
import json, sys, hashlib, pathlib
out = pathlib.Path(sys.argv[2])
for case in json.load(open(sys.argv[1])):
    can_id = int(case["can_id"], 16)
    head = can_id.to_bytes(2, "big") if can_id <= 0x7FF else (0x80000000 | can_id).to_bytes(4, "big")
    data = head + bytes.fromhex(case["hex"].replace(" ", ""))
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)
PY
done
# The registry target: every vector file, each case as `<protocol>\0<bytes>` (CAN: the id as
# above). A new protocol's vectors are picked up here without a line of its own.
mkdir -p corpus/decode_registry
python3 - "$vectors" corpus/decode_registry <<'PY'
import json, sys, hashlib, pathlib
out = pathlib.Path(sys.argv[2])
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    name = path.stem
    try:
        cases = json.load(open(path))
    except ValueError:
        continue
    for case in cases if isinstance(cases, list) else []:
        if "hex" not in case:
            continue
        data = bytes.fromhex(case["hex"].replace(" ", ""))
        if "can_id" in case:
            can_id = int(case["can_id"], 16)
            head = can_id.to_bytes(2, "big") if can_id <= 0x7FF else (0x80000000 | can_id).to_bytes(4, "big")
            data = head + data
        # The BLE protocols that carry UART frames are seeded with those frames too.
        for target in [name] + {"jbd": ["jbd_ble"], "jk_pb": ["jk_ble"]}.get(name, []):
            seed = target.encode() + b"\0" + data
            (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
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
