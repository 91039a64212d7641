#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from ../shared/vectors (read in place; the vectors are not copied
# into the repository) plus the example configs. Run from the repository root or from fuzz/.
set -euo pipefail
cd "$(dirname "$0")"
vectors=${VECTORS:-../../shared/vectors}
for target in jbd jbd_up16s jk_pb renogy eg4_ll foxess jk_rs485 daly eg4_lifepower; do
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
