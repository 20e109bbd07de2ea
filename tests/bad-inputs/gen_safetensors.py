#!/usr/bin/env python3
"""gen_safetensors.py - write the malformed files of tests/bad-inputs/safetensors/.

Each case is NAME.safetensors plus NAME.safetensors.expect, an extended regex
(first line) that the one-line error message must match: qforge-inspect's
stderr in tests/cli/bad_inputs.sh, st_open()'s qf_err message in
tests/unit/st_bad_inputs_test.c. The files are checked in; rerun this
(python3 tests/bad-inputs/gen_safetensors.py) after editing. Apart from the
framing cases, every file is a small valid checkpoint (tensors a: F32 [2,2],
b: F32 [2]) with exactly one rule of the reader broken
(docs/formats.md). Regression inputs found by the fuzzer are
added as raw bytes at the end.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors")


def entry(dtype="F32", shape=(2, 2), offsets=(0, 16)):
    return '{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}' % (
        dtype, ",".join(str(d) for d in shape), offsets[0], offsets[1])


GOOD_A = entry()
GOOD_B = entry(shape=(2,), offsets=(16, 24))


def header(body):
    return '{"__metadata__":{"format":"pt"},%s}' % body


def image(hdr, data_len=24, hlen=None):
    h = hdr.encode() if isinstance(hdr, str) else hdr
    h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if hlen is None else hlen
    return struct.pack("<Q", n) + h + bytes(range(data_len))


CASES = []


def case(name, blob, regex):
    CASES.append((name, blob, regex))


# --- framing ---------------------------------------------------------------
case("empty", b"", r"file too small \(0 bytes\)")
case("short-4-bytes", b"\x10\x00\x00\x00", r"file too small \(4 bytes\)")
case("header-len-past-eof", struct.pack("<Q", 100) + b'{"a":1}', r"header length 100 exceeds file size 15")
case("header-len-huge", struct.pack("<Q", 1 << 62) + b"{}      ", r"header length [0-9]+ exceeds the [0-9]+ byte limit")
case("header-len-max-u64", struct.pack("<Q", 2**64 - 1) + b"{}      ", r"header length 18446744073709551615 exceeds the [0-9]+ byte limit")
case("header-len-zero", struct.pack("<Q", 0) + b"\0" * 8, r"header: invalid json: empty document")
# --- JSON ------------------------------------------------------------------
case("header-not-json", image("hello, world"), r"header: invalid json")
case("header-array", image("[1,2,3]"), r"header is not a json object")
case("header-string", image('"abc"'), r"header: invalid json: top-level value must be an object")
case("unterminated-string", image('{"a":{"dtype":"F32'), r"header: invalid json: truncated")
case("unterminated-object", image('{"a":' + GOOD_A), r"header: invalid json: truncated")
case("trailing-comma", image(header('"a":%s,' % GOOD_A)), r"header: invalid json: unexpected '\}'")
case("missing-comma", image(header('"a":%s "b":%s' % (GOOD_A, GOOD_B))), r"header: invalid json: expected ','")
case("trailing-garbage", image(header('"a":%s' % GOOD_A) + " x"), r"header: invalid json: unexpected 'x'")
case("bad-literal", image(header('"a":%s,"b":tru' % GOOD_A)), r"header: invalid json: bad literal 'tru'")
case("bad-escape", image(header('"a\\x":%s' % GOOD_A)), r"header: invalid json")
case("lone-surrogate", image(header('"a\\ud800":%s' % GOOD_A)), r"header: invalid json: bad string")
case("invalid-utf8-name", image(header('"a\xff":%s' % GOOD_A).encode("latin-1")), r"header: invalid json: bad string")
case("deep-nesting", image('{"__metadata__":' + "[" * 1000 + "]" * 1000 + "}"), r"header: invalid json: nesting deeper than 128")
# --- tensor entries --------------------------------------------------------
case("entry-not-object", image(header('"a":5')), r"tensor 'a': entry is not an object")
case("missing-dtype", image(header('"a":{"shape":[2,2],"data_offsets":[0,16]}')), r"tensor 'a': missing field 'dtype'")
case("missing-data-offsets", image(header('"a":{"dtype":"F32","shape":[2,2]}')), r"tensor 'a': missing field 'data_offsets'")
case("duplicate-field", image(header('"a":{"dtype":"F32","dtype":"F32","shape":[2,2],"data_offsets":[0,16]}')),
     r"tensor 'a': duplicate field")
case("dtype-not-string", image(header('"a":{"dtype":4,"shape":[2,2],"data_offsets":[0,16]}')), r"tensor 'a': dtype is not a string")
case("unknown-dtype", image(header('"a":%s' % entry(dtype="F7"))), r"tensor 'a': unknown dtype 'F7'")
case("unsupported-dtype", image(header('"a":%s' % entry(dtype="U32"))), r"tensor 'a': unsupported dtype 'U32'")
case("shape-not-array", image(header('"a":{"dtype":"F32","shape":4,"data_offsets":[0,16]}')), r"tensor 'a': shape is not an array")
case("shape-negative", image(header('"a":%s' % entry(shape=(-2, 2)))), r"tensor 'a': shape must be an array of non-negative integers")
case("shape-float", image(header('"a":{"dtype":"F32","shape":[2.0,2],"data_offsets":[0,16]}')),
     r"tensor 'a': shape must be an array of non-negative integers")
case("shape-string", image(header('"a":{"dtype":"F32","shape":["2",2],"data_offsets":[0,16]}')),
     r"tensor 'a': shape must be an array of non-negative integers")
case("too-many-dims", image(header('"a":%s' % entry(shape=(1,) * 9))), r"tensor 'a': 9 dims, more than the 8 supported")
case("element-count-overflow", image(header('"a":%s' % entry(shape=(1 << 32, 1 << 32, 2)))),
     r"tensor 'a': element count overflows 64 bits")
case("byte-size-overflow", image(header('"a":%s' % entry(shape=(1 << 62,)))),
     r"tensor 'a': byte size \(4611686018427387904 elements x 4\) overflows 64 bits")
case("size-mismatch", image(header('"a":%s' % entry(shape=(2, 3)))),
     r"tensor 'a': data_offsets span 16 bytes but F32 shape needs 24 \(size mismatch\)")
case("offsets-not-pair", image(header('"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8,16]}')),
     r"tensor 'a': data_offsets is not an array of 2 integers")
case("offsets-negative", image(header('"a":%s' % entry(offsets=(-16, 0)))), r"tensor 'a': data_offsets must be non-negative integers")
case("offsets-float", image(header('"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16.0]}')),
     r"tensor 'a': data_offsets must be non-negative integers")
case("begin-after-end", image(header('"a":%s' % entry(offsets=(16, 0)))), r"tensor 'a': data_offsets begin 16 > end 0")
case("offset-past-eof", image(header('"a":%s' % entry(offsets=(16, 32)))),
     r"tensor 'a': data range \[16,32\) exceeds the 24 byte data area")
case("offset-huge", image(header('"a":%s' % entry(shape=(1,), offsets=(1 << 62, (1 << 62) + 4)))),
     r"tensor 'a': data range \[4611686018427387904,4611686018427387908\) exceeds")
case("overlapping-tensors", image(header('"a":%s,"b":%s' % (GOOD_A, entry(shape=(2,), offsets=(8, 16))))),
     r"tensors 'a' and 'b' overlap \(data offsets \[0,16\) and \[8,16\)\)")
case("empty-tensor-inside-other", image(header('"a":%s,"e":%s' % (GOOD_A, entry(shape=(0,), offsets=(8, 8))))),
     r"tensors 'a' and 'e' overlap")
case("duplicate-tensor", image(header('"a":%s,"b":%s,"a":%s' % (GOOD_A, GOOD_B, GOOD_A))), r"duplicate tensor name 'a'")
case("nul-in-name", image(header('"a\\u0000b":%s' % GOOD_A)), r"tensor name 'a' contains a NUL character")
case("control-char-in-name", image(header('"a\\u0001":%s' % entry(shape=(3,)))), r"tensor 'a\\x01': data_offsets span")
# --- __metadata__ ----------------------------------------------------------
case("metadata-not-object", image('{"__metadata__":"pt","a":%s}' % GOOD_A), r"__metadata__ is not an object")
case("metadata-non-string", image('{"__metadata__":{"format":1},"a":%s}' % GOOD_A),
     r"__metadata__ value of 'format' is not a string")
case("metadata-null", image('{"__metadata__":null,"a":%s}' % GOOD_A), r"__metadata__ is not an object")
case("metadata-twice", image('{"__metadata__":{},"a":%s,"__metadata__":{}}' % GOOD_A), r"__metadata__ appears twice")
case("metadata-duplicate-key", image('{"__metadata__":{"k":"1","k":"2"},"a":%s}' % GOOD_A),
     r"__metadata__ key 'k' appears twice")

# --- fuzzer regressions (raw bytes) ----------------------------------------


def main():
    os.makedirs(OUT, exist_ok=True)
    names = set()
    for name, blob, regex in CASES:
        assert name not in names, name
        names.add(name)
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)
        with open(os.path.join(OUT, name + ".safetensors.expect"), "w") as f:
            f.write(regex + "\n")
    print("wrote %d cases to %s" % (len(CASES), OUT))


if __name__ == "__main__":
    main()
