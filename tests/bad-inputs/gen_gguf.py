#!/usr/bin/env python3
"""gen_gguf.py - write the malformed GGUF files of tests/bad-inputs/gguf/.

Each case is NAME.gguf plus NAME.gguf.expect, an extended regex that
qforge-inspect's stderr must match (tests/cli/bad_inputs.sh). The files are
checked in; rerun this (python3 tests/bad-inputs/gen_gguf.py) after editing.
Every file starts from one small valid GGUF (2 kv pairs, 2 tensors) and
breaks exactly one rule of the reader (docs/formats.md, GGUF).
"""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf")

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
F32_T, F16_T, Q4_0_T = 0, 1, 2


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name, dims, ttype, offset):
    return (s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", ttype, offset))


def pad(n, a=32):
    return b"\0" * ((a - n % a) % a)


DEFAULT_KVS = [kv("general.architecture", STR, s("llama")), kv("general.name", STR, s("bad"))]
# a.weight: f32 [8, 2] = 64 bytes at 0; b.weight: f32 [8] = 32 bytes at 64
DEFAULT_TENSORS = [("a.weight", [8, 2], F32_T, 0), ("b.weight", [8], F32_T, 64)]


def gguf(kvs=None, tensors=None, magic=b"GGUF", version=3, n_kv=None, n_tensors=None, data=None, align=32,
         raw_tinfo=None, no_pad=False):
    kvs = DEFAULT_KVS if kvs is None else kvs
    tensors = DEFAULT_TENSORS if tensors is None else tensors
    ti = raw_tinfo if raw_tinfo is not None else b"".join(tinfo(*t) for t in tensors)
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + ti
    if no_pad:
        return body
    body += pad(len(body), align)
    if data is None:
        data = bytes(range(96))
    return body + data


CASES = {}


def case(name, regex, blob):
    assert name not in CASES
    CASES[name] = (regex, blob)


valid = gguf()
case("empty", r"truncated header: file size 0", b"")
case("truncated-header", r"truncated header: file size 12", valid[:12])
case("bad-magic", r"bad magic 'GGML' \(expected 'GGUF'\)", gguf(magic=b"GGML"))
case("version-1", r"unsupported gguf version 1 ", gguf(version=1))
case("version-4", r"unsupported gguf version 4 ", gguf(version=4))
case("version-big-endian", r"byte-swapped: big-endian gguf is not supported", gguf(version=3 << 24))
case("huge-kv-count", r"kv count 1152921504606846976 is impossible", gguf(n_kv=1 << 60))
case("huge-tensor-count", r"tensor count 4294967296 is impossible", gguf(n_tensors=1 << 32))
case("counts-too-big-together", r"kv count 5 and tensor count 3 cannot fit",
     gguf(n_kv=5, n_tensors=3, kvs=[], tensors=[], data=b"\0" * 150))
case("truncated-kv", r"truncated file: kv 'general\.n': uint32 needs 4 bytes at offset [0-9]+ but file size is [0-9]+",
     gguf(kvs=[DEFAULT_KVS[0], kv("general.n", U32, struct.pack("<I", 5))], tensors=[], no_pad=True)[:-2])
case("truncated-string", r"kv 'general\.name': string length 3 at offset [0-9]+ exceeds file size [0-9]+",
     gguf(tensors=[], data=b"", no_pad=True)[:-1])
case("key-past-eof", r"kv 0: key length 4096 at offset 24 exceeds file size",
     gguf(kvs=[struct.pack("<Q", 4096) + b"general.x"], tensors=[], data=b""))
case("string-past-eof", r"kv 'general.name': string length 1000000 at offset [0-9]+ exceeds file size",
     gguf(kvs=[DEFAULT_KVS[0], kv("general.name", STR, struct.pack("<Q", 1000000) + b"bad")]))
case("empty-key", r"kv 1 has an empty key", gguf(kvs=[DEFAULT_KVS[0], kv("", U32, struct.pack("<I", 1))]))
case("key-with-nul", r"key of kv 1 contains a nul byte",
     gguf(kvs=[DEFAULT_KVS[0], kv(b"general.\0name", U32, struct.pack("<I", 1))]))
case("duplicate-key", r"duplicate key 'general.name'", gguf(kvs=DEFAULT_KVS + [kv("general.name", STR, s("again"))]))
case("bad-value-type", r"kv 'general.x': invalid value type 13 at offset",
     gguf(kvs=[DEFAULT_KVS[0], kv("general.x", 13, struct.pack("<I", 0))]))
case("bad-array-elem-type", r"kv 'general.x': invalid array element type 42",
     gguf(kvs=[DEFAULT_KVS[0], kv("general.x", ARR, struct.pack("<IQ", 42, 1) + b"\0" * 8)]))
case("array-count-overflow", r"kv 'general.x': array of 2305843009213693953 uint64 elements .* only [0-9]+ bytes remain",
     gguf(kvs=[DEFAULT_KVS[0], kv("general.x", ARR, struct.pack("<IQ", U64, (1 << 61) + 1) + b"\0" * 8)]))
case("string-array-count", r"kv 'tokenizer.ggml.tokens': array of 100000 string elements",
     gguf(kvs=[DEFAULT_KVS[0], kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 100000) + s("a") + s("b"))]))
case("string-array-elem-past-eof", r"kv 'tokenizer.ggml.tokens': array string length 65536 at offset [0-9]+ exceeds",
     gguf(kvs=[DEFAULT_KVS[0], kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 2) + s("a")
                                  + struct.pack("<Q", 65536) + b"b")]))
nest = b""
for _ in range(9):
    nest += struct.pack("<IQ", ARR, 1)
nest += struct.pack("<IQ", U8, 0)
case("array-nested-too-deep", r"kv 'general.x': arrays nested deeper than 8 levels",
     gguf(kvs=[DEFAULT_KVS[0], kv("general.x", ARR, nest)]))
case("alignment-0", r"general.alignment 0 is not a nonzero power of two",
     gguf(kvs=DEFAULT_KVS + [kv("general.alignment", U32, struct.pack("<I", 0))]))
case("alignment-3", r"general.alignment 3 is not a nonzero power of two",
     gguf(kvs=DEFAULT_KVS + [kv("general.alignment", U32, struct.pack("<I", 3))]))
case("alignment-1", r"general.alignment 1 is not a multiple of 8",
     gguf(kvs=DEFAULT_KVS + [kv("general.alignment", U32, struct.pack("<I", 1))]))
case("alignment-4", r"general.alignment 4 is not a multiple of 8",
     gguf(kvs=DEFAULT_KVS + [kv("general.alignment", U32, struct.pack("<I", 4))]))
case("alignment-not-u32", r"general.alignment has type uint64; it must be uint32",
     gguf(kvs=DEFAULT_KVS + [kv("general.alignment", U64, struct.pack("<Q", 32))]))
case("tensor-name-past-eof", r"tensor 0: name length 9999 at offset [0-9]+ exceeds file size",
     gguf(raw_tinfo=struct.pack("<Q", 9999) + b"a.weight" + b"\0" * 30, n_tensors=1, data=b""))
case("tensor-name-empty", r"tensor 1 has an empty name", gguf(tensors=[DEFAULT_TENSORS[0], ("", [8], F32_T, 64)]))
case("tensor-name-too-long", r"tensor 1 name 'blk\.0\.x{58}' is 64 bytes long; names must be shorter than 64",
     gguf(tensors=[DEFAULT_TENSORS[0], ("blk.0." + "x" * 58, [8], F32_T, 64)]))
case("duplicate-tensor", r"duplicate tensor name 'a\.weight'",
     gguf(tensors=[DEFAULT_TENSORS[0], ("a.weight", [8], F32_T, 64)]))
case("n-dims-5", r"tensor 'b\.weight' has 5 dimensions; must be 1\.\.4",
     gguf(tensors=[DEFAULT_TENSORS[0], ("b.weight", [8, 1, 1, 1, 1], F32_T, 64)]))
case("n-dims-0", r"tensor 'b\.weight' has 0 dimensions", gguf(tensors=[DEFAULT_TENSORS[0], ("b.weight", [], F32_T, 64)]))
case("dim-0", r"tensor 'a\.weight' dimension ne\[1\] is 0", gguf(tensors=[("a.weight", [8, 0], F32_T, 0)]))
case("dim-negative", r"tensor 'a\.weight' dimension ne\[0\] = 18446744073709551608 is negative as int64",
     gguf(tensors=[("a.weight", [(1 << 64) - 8, 2], F32_T, 0)]))
case("ne-overflow", r"tensor 'a\.weight' element count overflows int64",
     gguf(tensors=[("a.weight", [1 << 32, 1 << 31], F32_T, 0)]))
case("nbytes-overflow", r"tensor 'a\.weight' byte size overflows", gguf(tensors=[("a.weight", [1 << 62], F32_T, 0)]))
case("unknown-type", r"tensor 'a\.weight' has unknown ggml type 4", gguf(tensors=[("a.weight", [32], 4, 0)]))
case("type-out-of-range", r"tensor 'a\.weight' has unknown ggml type 4096", gguf(tensors=[("a.weight", [32], 4096, 0)]))
case("ne0-not-multiple-of-block", r"tensor 'a\.weight' row length ne\[0\] = 48 is not a multiple of the q4_0 block size 32",
     gguf(tensors=[("a.weight", [48, 2], Q4_0_T, 0)]))
case("truncated-tensor-info", r"truncated file: tensor 1: dimension needs 8 bytes",
     gguf(raw_tinfo=tinfo(*DEFAULT_TENSORS[0]) + s("b.weight") + struct.pack("<I", 2) + b"\x08\0\0\0",
          n_tensors=2, no_pad=True))
case("misaligned-offset", r"tensor 'b\.weight' offset 72 is not a multiple of the alignment 32",
     gguf(tensors=[DEFAULT_TENSORS[0], ("b.weight", [8], F32_T, 72)]))
case("offset-overflow", r"tensor 'b\.weight' offset 18446744073709551584 overflows",
     gguf(tensors=[DEFAULT_TENSORS[0], ("b.weight", [8], F32_T, (1 << 64) - 32)]))
case("data-past-eof", r"tensor 'b\.weight' data \[[0-9]+, [0-9]+\) exceeds file size [0-9]+",
     gguf(tensors=[DEFAULT_TENSORS[0], ("b.weight", [8], F32_T, 64)], data=bytes(80)))
case("data-section-past-eof", r"data section starts at [0-9]+, past the end of the file",
     gguf(no_pad=True, kvs=DEFAULT_KVS + [kv("general.pad", U8, b"\0")]))
assert len(CASES["data-section-past-eof"][1]) % 32 != 0
case("overlapping-tensors", r"tensors 'a\.weight' \[[0-9]+, [0-9]+\) and 'b\.weight' \[[0-9]+, [0-9]+\) overlap",
     gguf(tensors=[DEFAULT_TENSORS[0], ("b.weight", [8], F32_T, 32)]))
case("overlapping-same-offset", r"tensors 'a\.weight' .* and 'b\.weight' .* overlap",
     gguf(tensors=[DEFAULT_TENSORS[0], ("b.weight", [8], F32_T, 0)]))


CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "fuzz_gguf")


def seeds():
    """Small valid files for the fuzzer's seed corpus."""
    every = [kv("t.u8", U8, b"\xc8"), kv("t.i8", I8, b"\x9c"), kv("t.u16", U16, struct.pack("<H", 60000)),
             kv("t.i16", I16, struct.pack("<h", -3)), kv("t.u32", U32, struct.pack("<I", 7)),
             kv("t.i32", I32, struct.pack("<i", -7)), kv("t.f32", F32, struct.pack("<f", 1.5)),
             kv("t.bool", BOOL, b"\x01"), kv("t.str", STR, s(b"h\xc3\xa9llo")),
             kv("t.u64", U64, struct.pack("<Q", 1 << 40)), kv("t.i64", I64, struct.pack("<q", -(1 << 40))),
             kv("t.f64", F64, struct.pack("<d", -2.25)),
             kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 3) + s("<unk>") + s("<s>") + s("")),
             kv("tokenizer.ggml.scores", ARR, struct.pack("<IQ", F32, 3) + struct.pack("<3f", 0, -1, -2)),
             kv("t.nested", ARR, struct.pack("<IQ", ARR, 2) + struct.pack("<IQ", U32, 1) + struct.pack("<I", 9)
                + struct.pack("<IQ", STR, 1) + s("x"))]
    align64 = DEFAULT_KVS + [kv("general.alignment", U32, struct.pack("<I", 64))]
    return {
        "tensors.gguf": gguf(),
        "kv-types.gguf": gguf(kvs=every, tensors=[], data=b"", no_pad=True),
        "q4_0-align64.gguf": gguf(kvs=align64, tensors=[("blk.0.w", [32, 2], Q4_0_T, 0), ("n", [4], F32_T, 64)],
                                  align=64, data=bytes(64) + bytes(range(16))),
        "version-2.gguf": gguf(version=2),
    }


def main():
    os.makedirs(CORPUS, exist_ok=True)
    for name, blob in sorted(seeds().items()):
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(blob)
    os.makedirs(OUT, exist_ok=True)
    for name, (regex, blob) in sorted(CASES.items()):
        with open(os.path.join(OUT, name + ".gguf"), "wb") as f:
            f.write(blob)
        with open(os.path.join(OUT, name + ".gguf.expect"), "w") as f:
            f.write(regex + "\n")
    print("wrote %d cases to %s" % (len(CASES), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
