#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (committed; rerun
after a format change). Seeds are small valid inputs of each format, plus a
few real lines from ../shared/data (a handful per format, fuzz seeds only).
Binary formats are encoded here from their documented layouts
(exporter/snapshot_format.h, server/table_io.h, worker/dense_file.h,
common/transport.h, common/ps_wire.h), so a seed that stops parsing flags a
format change.

    python3 tests/fuzz/make_corpus.py
"""
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(ROOT, "..", "..", "..", "shared", "data")
OUT = os.path.join(ROOT, "corpus")


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def head(path, n, skip=0):
    with open(os.path.join(DATA, path), "rb") as f:
        lines = f.read(1 << 16).split(b"\n")
    return b"\n".join(lines[skip:skip + n]) + b"\n"


# ---- protobuf wire encoding (just what the seeds need) ----------------------
def varint(v):
    v &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


def f_fixed64(num, v):
    return varint(num << 3 | 1) + struct.pack("<Q", v)


# ---- example_fuzz: mode byte (even: line with (b/2)%8 columns; odd: file) ---
HEADER = "#freshet-examples v1\tuser\tquery\tprice\tclicks\n"
put("example_fuzz", "line4", b"\x08" + b"1\t1511658000\tu17\t0.25\tu17\tred shoe\t12.5\t3")
put("example_fuzz", "line4_empty", b"\x08" + b"0\t-5\t\t\t\t\t\t")
put("example_fuzz", "line1", b"\x02" + b"1\t1511658000\tu1\t\titem9")
put("example_fuzz", "file", b"\x01" + (HEADER +
    "1\t1511658000\tu1\t0.5\tu1\ta b\t3.5\t1\n"
    "0\t1511658001\tu2\t\tu2\t\t\t\n"
    "2\tbad\tu3\t\tu3\tq\t1\t1\n"
    "0\t1511658002\tu4\t\tu4\tq\tnot-a-number\t7\r\n").encode())

# ---- raw_readers_fuzz: bits 0-1 format, bit 2 file mode -----------------------
for fmt, path, n in ((0, "taobao/UserBehavior_time_slice.csv", 5),
                     (1, "online_retail/online_retail_to_2011-11-25.csv", 6),
                     (2, "talkingdata/train_sample.csv", 5),
                     (3, "criteo/criteo_train_head_999.txt", 3)):
    body = head(path, n)
    put("raw_readers_fuzz", "fmt%d_lines" % fmt, bytes([fmt]) + body)
    put("raw_readers_fuzz", "fmt%d_file" % fmt, bytes([fmt | 4]) + body)
put("raw_readers_fuzz", "fmt3_kaggle_csv", b"\x07" + head("criteo/criteo_kaggle_train_1599rows_with_id.csv", 3))
put("raw_readers_fuzz", "fmt3_hillview", b"\x03" + head("criteo/criteo_hillview_1000.tsv", 3))
put("raw_readers_fuzz", "fmt1_quoted", b"\x01" + (
    "\ufeffInvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,\"WHITE HANGING HEART, T-LIGHT \"\"HOLDER\"\"\",6,12/1/2010 8:26,2.55,17850.0,United Kingdom\n"
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.50,,United Kingdom\n").encode())
with open(os.path.join(DATA, "criteo/criteo_hillview.schema"), "rb") as f:
    put("raw_readers_fuzz", "criteo_schema", b"\x08" + f.read())
put("raw_readers_fuzz", "datetime", b"\x00" + b"2011-02-28 23:59:59")


# ---- PS message bodies (common/ps_wire.h; wire version 1) ---------------------
PS_WIRE_VERSION = 1


def pad8(b):
    return b + b"\0" * (-len(b) % 8)


keys = struct.pack("<3Q", 1, 2, 0xFFFFFFFFFFFFFFFF)
pull_body = struct.pack("<iIIIqq", 1, 4, 3, 0, 5, 2) + keys          # table dim n 0 step staleness
push_body = pad8(struct.pack("<iIIiq", 1, 4, 3, 1, 1511658000) + keys +
                 struct.pack("<12f", *([0.5] * 12)))                # table dim n worker event_s
push_wide_body = pad8(struct.pack("<iIIiq", 0, 1, 3, 0, 0) + keys + struct.pack("<3f", 1, -1, 2))
pull_resp_body = pad8(struct.pack("<II", 3, 1) + struct.pack("<3f", 0.1, 0.2, 0.3))
export_rows = (struct.pack("<II", 9, 2) +                            # version, tables
               struct.pack("<IIQ", 0, 1, 2) + struct.pack("<2Q", 5, 6) +
               pad8(struct.pack("<2f", 0.1, 0.2)) + struct.pack("<Q", 1) + struct.pack("<Q", 7) +
               struct.pack("<IIQ", 1, 4, 0) + struct.pack("<Q", 0))
clock_body = struct.pack("<iIqq", 1, 0, 10, 4)                       # worker 0 step pushes_sent
dense_body = pad8(struct.pack("<qqqqQ", 8, 1511658000, 1511658000123, 1511658000456, 3) +
                  struct.pack("<3f", 1, 2, 3))
save_body = pad8(struct.pack("<II", 1, 9) + b"/ckpt/7/x")
ps_seeds = {  # name: (type, body)
    "pull": (1, pull_body), "pull_response": (2, pull_resp_body), "push": (3, push_body),
    "push_wide": (3, push_wide_body), "push_response": (4, b""), "clock": (5, clock_body),
    "stats": (6, b""), "stats_response": (7, struct.pack("<8q", 1, 2, 3, 4, 5, 6, 7, 8)),
    "shutdown": (8, struct.pack("<iI", 2, 0)), "save": (9, save_body),
    "save_response": (10, struct.pack("<qq", 1 << 20, 30)),
    "export": (11, struct.pack("<II", 4, 0)), "export_response": (12, export_rows),
    "dense_update": (13, dense_body), "export_final": (14, dense_body),
    "export_final_response": (15, b""), "watermark": (16, struct.pack("<4q", 8, 9, 10, 11)),
    "save_status": (17, pad8(struct.pack("<II", 9, 0) + b"/ckpt/7/x")),
    "save_status_response": (18, struct.pack("<IIq", 1, 0, 250)),
}


# ---- ps_wire_fuzz: byte 0 type, byte 1 header flags (0: this version, OK) ------
for name, (t, body) in ps_seeds.items():
    put("ps_wire_fuzz", name, bytes([t, 0]) + body)
put("ps_wire_fuzz", "old_version", bytes([1, 0x01]) + pull_body)  # version 0
put("ps_wire_fuzz", "error_response", bytes([2, 0x02]))


# ---- wire_fuzz: one frame [body][WireHeader][u32 len] -------------------------
def frame(body, **h):
    nums = dict(type=1, request_id=2, status_code=9, version=15)
    h.setdefault("version", PS_WIRE_VERSION)
    hdr = b""
    for k, v in h.items():
        if k == "error":
            hdr += f_bytes(10, v)
        else:
            hdr += f_varint(nums[k], v)
    return body + hdr + struct.pack("<I", len(hdr))


put("wire_fuzz", "pull", frame(pull_body, type=1, request_id=7))
put("wire_fuzz", "push", frame(push_body, type=3, request_id=8))
put("wire_fuzz", "push_wide", frame(push_wide_body, type=3))
put("wire_fuzz", "export_response", frame(export_rows, type=12, request_id=3))
put("wire_fuzz", "error_response", frame(b"", type=2, request_id=1, status_code=3,
                                         error="server 1 (rank 1): deadline"))
put("wire_fuzz", "clock", frame(clock_body, type=5))


# ---- snapshot_fuzz: .snap files, manifests, export directories ----------------
def snap(kind, version, dense, tables, watermark=1511658000):
    b = b"FRSHSNAP" + struct.pack("<IIQqB", 1, kind, version, watermark, 1 if dense is not None else 0)
    if dense is not None:
        b += struct.pack("<Q", len(dense)) + struct.pack("<%df" % len(dense), *dense)
    b += struct.pack("<I", len(tables))
    for name, dim, rows, deleted in tables:
        b += struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", dim)
        b += struct.pack("<Q", len(rows))
        for key, vals in rows:
            b += struct.pack("<Q", key) + struct.pack("<%df" % dim, *vals)
        b += struct.pack("<Q", len(deleted)) + b"".join(struct.pack("<Q", k) for k in deleted)
    return b + struct.pack("<Q", fnv1a64(b))


full = snap(0, 1, [0.5, -0.25, 1.0], [("wide", 1, [(1, [0.1]), (2, [0.2])], []),
                                       ("emb", 4, [(1, [1, 2, 3, 4])], [])])
delta = snap(1, 2, None, [("wide", 1, [(3, [0.3])], [1]), ("emb", 4, [], [1])])
put("snapshot_fuzz", "full", b"\x00" + full)
put("snapshot_fuzz", "delta_repair", b"\x01" + delta)


def export_file(name, content, version):
    return (f_bytes(1, name) + f_varint(2, len(content)) + f_fixed64(3, fnv1a64(content)) +
            f_varint(4, version) + f_varint(5, 1511658000))


job = (f_bytes(1, "fuzz") +
       f_bytes(6, f_bytes(1, f_bytes(1, "wide") + f_varint(2, 1)) +
               f_bytes(1, f_bytes(1, "emb") + f_varint(2, 4))))
manifest = (f_varint(1, 2) + f_varint(2, 1511658000) + f_varint(3, 1700000000000) +
            f_bytes(4, job) + f_bytes(5, export_file("full-000000000001.snap", full, 1)) +
            f_bytes(6, export_file("delta-000000000002.snap", delta, 2)))


def manifest_file(m):
    """A manifest file: the proto, then "FRSHMSUM" and the FNV-1a 64 of every byte before it."""
    b = m + b"FRSHMSUM"
    return b + struct.pack("<Q", fnv1a64(b))


put("snapshot_fuzz", "manifest", b"\x02" + manifest_file(manifest))
put("snapshot_fuzz", "manifest_no_trailer", b"\x02" + manifest)  # written before the trailer
put("snapshot_fuzz", "export_dir", b"\x03\x00" + manifest_file(manifest) + b"FRSHSPLT" + full +
    b"FRSHSPLT" + delta)
put("snapshot_fuzz", "export_dir_repair", b"\x03\x01" + manifest_file(manifest) + b"FRSHSPLT" +
    full[:-3] + b"FRSHSPLT" + delta)


# ---- model_files_fuzz: .rows (modes 0/1) and dense.bin (modes 2/3) ------------
def rows_file(tables, kind=0, version=2, slots=(0, 65536)):
    """server/table_io.h: version 2 (kind, slot range, tombstones) or 1."""
    b = b"FRSHROWS" + struct.pack("<I", version)
    if version >= 2:
        b += struct.pack("<III", kind, *slots)
    b += struct.pack("<I", len(tables))
    for name, dim, state_dim, rows, *dead in tables:
        b += struct.pack("<I", len(name)) + name.encode() + struct.pack("<IIQ", dim, state_dim, len(rows))
        for key, count, version_, w, s in rows:
            b += struct.pack("<QII", key, count, version_) + struct.pack("<%df" % dim, *w)
            b += struct.pack("<%df" % state_dim, *s)
        if version >= 2:
            dead = dead[0] if dead else []
            b += struct.pack("<Q", len(dead)) + b"".join(struct.pack("<Q", k) for k in dead)
    return b + struct.pack("<Q", fnv1a64(b))


row_tables = [("wide", 1, 0, [(7, 1, 1, [0.5], [])]),
              ("emb", 4, 4, [(7, 2, 3, [1, 2, 3, 4], [0.1, 0.1, 0.1, 0.1])])]
put("model_files_fuzz", "rows", b"\x00" + rows_file(row_tables))
put("model_files_fuzz", "rows_v1", b"\x00" + rows_file(row_tables, version=1))
put("model_files_fuzz", "rows_incremental", b"\x00" + rows_file(
    [("wide", 1, 0, [(9, 1, 5, [0.5], [])], [7, 8]), ("emb", 4, 4, [], [7])], kind=1,
    slots=(0, 32768)))
put("model_files_fuzz", "rows_rebase", b"\x01" + rows_file(row_tables, kind=2, slots=(32768, 65536)))
put("model_files_fuzz", "rows_wrong_dim", b"\x01" + rows_file([("emb", 8, 8, [])]))
# DeepFM of model_files_fuzz.cc's job; the count is what the model reports
# (a wrong one is a seed too: the loader must refuse it).
dense = struct.pack("<Q", 3) + struct.pack("<3f", 1, 2, 3)
put("model_files_fuzz", "dense", b"\x02" + b"FRSHDENS" + dense + struct.pack("<Q", fnv1a64(b"FRSHDENS" + dense)))

# ---- config_fuzz: cluster (0), tables (1), job (2), host list (3) ------------
def text(path):
    with open(os.path.join(ROOT, "..", "..", path), "rb") as f:
        return f.read()


put("config_fuzz", "cluster_local", b"\x00" + text("cluster-configs/local.pbtxt"))
put("config_fuzz", "cluster_slurm4", b"\x00" + text("cluster-configs/slurm-4node.pbtxt"))
put("config_fuzz", "tables", b"\x01" + b'tables { name: "emb" dim: 8 initializer { kind: NORMAL scale: 0.01 } '
    b'optimizer { ftrl { alpha: 0.05 beta: 1 l1: 0.1 } } clip_norm: 5 }')
put("config_fuzz", "job_synthetic", b"\x02" + text("cluster-configs/jobs/synthetic.pbtxt"))
put("config_fuzz", "job_retail", b"\x02" + text("cluster-configs/jobs/retail-purchase.pbtxt"))
put("config_fuzz", "hosts", b"\x03" + b"node[01-03,07],gpu-a[1-2]x,r[1-2]n[1-2],login")

# ---- serving_request_fuzz: byte 0 % 3: 0 /score, 1 /rank, 2 KServe v2 infer --
put("serving_request_fuzz", "score", b"\x00" + b'{"examples": [{"user": "u1", "item": 42, "query": ["red", "shoe"], '
    b'"tags": "a b", "price": "12.5", "age": 31}, {"user": null}]}')
put("serving_request_fuzz", "rank", b"\x01" + b'{"context": {"user": "u1", "age": 20}, "candidates": '
    b'[{"item": "i1", "price": 3}, {"item": "i2", "price": 300, "tags": ["x", 1]}], "k": 1}')
put("serving_request_fuzz", "bad", b"\x00" + b'{"examples": [{"age": "abc"}], "extra": true}')
put("serving_request_fuzz", "infer", b"\x02" + b'{"id": "r1", "inputs": ['
    b'{"name": "user", "datatype": "BYTES", "shape": [2], "data": ["u1", null]}, '
    b'{"name": "query", "datatype": "BYTES", "shape": [2, 2], "data": ["red", "shoe", "", ""]}, '
    b'{"name": "tags", "datatype": "BYTES", "shape": [2], "data": [["a", 1], "b c"]}, '
    b'{"name": "age", "datatype": "BYTES", "shape": [2, 1], "data": [[31], ["7"]]}], '
    b'"outputs": [{"name": "probability"}], "parameters": {}}')
# ---- event_fuzz: 0 reaction line, 1 impression line (5 columns), 2 header ---
put("event_fuzz", "click", b"\x00" + b"click\t1511658000123\tr17\tu3\ti42\r")
put("event_fuzz", "imp", b"\x01" + b"imp\t1511658000000\tr17\t\ti42\t0.125\tu3\ti42\tred shoe\t12.5\t")
put("event_fuzz", "header", b"\x02" + b"#freshet-events v1\tuser\titem\tquery\tprice\tcategory")
# issue 18: parsed by the old parser, changed by a format/parse round trip
put("event_fuzz", "issue18_cr_item", b"\x00" + b"click\t1\t1\t\t\x89" + b"\r" * 85)

# ---- stream_position_fuzz: TailPosition text --------------------------------
put("stream_position_fuzz", "two_files", b"freshet-tail-position v1\n"
    b"part-0.events\t2049\t131077\t4096\t37\npart-0.events.1\t2049\t131070\t88123\t900\n")

# ---- checkpoint_files_fuzz: even MANIFEST (bit 1: add the checksum line), --
# ---- odd input cut (bit 1: fix the FNV trailer) ------------------------------
put("checkpoint_files_fuzz", "manifest", b"\x02" + b"freshet-checkpoint 2\nid 1\nstep 100\nparent 0\n"
    b"servers 2\nworkers 2\nunix_ms 1700000000000\nfile dense.bin 24 %x\nfile job.pbtxt 18 0\nend\n"
    % fnv1a64(b"0123456789abcdef"))  # the target's dense.bin
put("checkpoint_files_fuzz", "manifest_v1", b"\x00" + b"freshet-checkpoint 1\nid 3\nstep 7\n"
    b"servers 1\nworkers 1\nunix_ms 5\nend\n")
cut = (b"freshet-input 1\nworker 0\nworkers 2\nstep 40\nepoch 1\nfiles 2\n"
       b"file 0 1000 out/a/train.examples\nfile 1 50 out/a/more examples\n"
       b"consumed 0 0 120\nconsumed 0 300 1000\nconsumed 1 10 50\nend\n")
put("checkpoint_files_fuzz", "input_cut", b"\x03" + cut + struct.pack("<Q", fnv1a64(cut)))

# ---- ledger_fuzz: ledger lines ----------------------------------------------
put("ledger_fuzz", "two_attempts", b"attempt 1700000000000 restored_from 0 workers 2\n"
    b"b 0 0 0 4096 31\nb 0 1 8192 9000 7\nc 1 50\nattempt 1700000005000 restored_from 1 workers 3\n"
    b"b 1 0 4096 5000 2\nb 0 0 0 1")
print("wrote", OUT)
