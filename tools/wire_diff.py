#!/usr/bin/env python3
"""Compare HTTP exchanges recorded against berthd with dockerd's in ../shared/reference/wire.

    python3 ../shared/reference/wire/tools/trace_proxy.py unix:/tmp/t.sock unix:/run/berth/berth.sock out.jsonl &
    DOCKER_HOST=unix:///tmp/t.sock DOCKER_API_VERSION=1.41 docker ps -a    # any commands
    python3 tools/wire_diff.py out.jsonl

For each request (IDs and the /v1.xx prefix folded) that the reference captures also hold: the
status, headers (Content-Type, Api-Version, Docker-Experimental, Ostype, ...) and the JSON shape
(keys, types, ``null`` against ``[]``). Reference bodies cut short in the .log files are
reported as "body" differences; read the .md capture for those.
"""
import base64, glob, json, os, re, sys
from collections import defaultdict

REF = os.environ.get("WIRE_REF", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "wire"))

def unesc(s):
    out = bytearray(); i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "r": out += b"\r"; i += 2; continue
            if n == "n": out += b"\n"; i += 2; continue
            if n == "t": out += b"\t"; i += 2; continue
            if n == "\\": out += b"\\"; i += 2; continue
            if n == "x": out.append(int(s[i + 2:i + 4], 16)); i += 4; continue
        out += c.encode(); i += 1
    return bytes(out)

LINE = re.compile(r"^\s*[\d.]+ C(\d+)\s+([<>])\s+\d+ bytes \| (.*)$")

def streams_from_log(path):
    st = defaultdict(lambda: {">": bytearray(), "<": bytearray()})
    for line in open(path, encoding="utf-8", errors="replace"):
        m = LINE.match(line.rstrip("\n"))
        if m:
            st[int(m.group(1))][m.group(2)] += unesc(m.group(3).split("...[")[0])
    return st

def streams_from_jsonl(path):
    st = defaultdict(lambda: {">": bytearray(), "<": bytearray()})
    for line in open(path):
        ev = json.loads(line)
        if "b" in ev:
            st[ev["c"]][ev["d"]] += base64.b64decode(ev["b"])
    return st

def parse_msgs(buf, is_resp, methods=None):
    msgs = []; pos = 0; i = 0
    while pos < len(buf):
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0: break
        head = buf[pos:end].decode("latin-1").split("\r\n"); pos = end + 4
        first = head[0]
        hdrs = {}
        for h in head[1:]:
            k, _, v = h.partition(":"); hdrs[k.strip().lower()] = v.strip()
        body = b""
        status = None
        if is_resp:
            parts = first.split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit(): break
            status = int(parts[1])
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            if is_resp and methods and i < len(methods) and methods[i] == "HEAD": n = 0
            body = buf[pos:pos + n]; pos += n
        elif hdrs.get("transfer-encoding") == "chunked":
            b = bytearray()
            while True:
                e = buf.find(b"\r\n", pos)
                if e < 0: pos = len(buf); break
                try: n = int(buf[pos:e].split(b";")[0], 16)
                except ValueError: pos = len(buf); break
                pos = e + 2
                if n == 0: pos += 2; break
                b += buf[pos:pos + n]; pos += n + 2
            body = bytes(b)
        elif is_resp and status in (101,) or (is_resp and status == 200 and "raw-stream" in hdrs.get("content-type", "")):
            body = bytes(buf[pos:]); msgs.append((first, hdrs, body, status)); break
        msgs.append((first, hdrs, bytes(body), status)); i += 1
        if is_resp and status == 101: break
        if not is_resp and hdrs.get("upgrade"): break
    return msgs

def exchanges(st):
    out = []
    for c, d in sorted(st.items()):
        reqs = parse_msgs(d[">"], False)
        methods = [r[0].split(" ")[0] for r in reqs]
        resps = parse_msgs(d["<"], True, methods)
        for rq, rs in zip(reqs, resps):
            out.append((rq, rs))
    return out

def norm(first):
    m, p = first.split(" ")[:2]
    p = re.sub(r"^/v1\.\d+", "", p)
    p = re.sub(r"[0-9a-f]{12,64}", "ID", p)
    return m + " " + p

def shape(v, path, out):
    if isinstance(v, dict):
        out[path] = "object"
        for k, x in v.items(): shape(x, f"{path}.{k}", out)
    elif isinstance(v, list):
        out[path] = "array" if v else "array(empty)"
        for x in v[:1]: shape(x, f"{path}[]", out)
    else:
        out[path] = {type(None): "null", bool: "bool", int: "number", float: "number", str: "string"}[type(v)]
    return out

def decode(body):
    try: return json.loads(body)
    except Exception:
        try: return [json.loads(l) for l in body.splitlines() if l.strip()]
        except Exception: return None

SKIP_H = {"date", "content-length", "transfer-encoding"}

def compare(ref, ours):
    (rq, (rf, rh, rb, rs)), (oq, (of, oh, ob, os_)) = ref, ours
    notes = []
    if rs != os_: notes.append(f"status ref={rs} ours={os_}")
    for k in sorted((set(rh) | set(oh)) - SKIP_H):
        rv, ov = rh.get(k), oh.get(k)
        if k in ("server", "api-version") and rv and ov: continue
        if rv != ov: notes.append(f"header {k}: ref={rv!r} ours={ov!r}")
    rj, oj = decode(rb), decode(ob)
    if rj is not None and oj is not None:
        a, b = shape(rj, "$", {}), shape(oj, "$", {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                if a.get(k, "").startswith("array") and b.get(k, "").startswith("array"): continue
                notes.append(f"json {k}: ref={a.get(k)} ours={b.get(k)}")
    elif (rj is None) != (oj is None) and (rb or ob):
        notes.append(f"body ref={rb[:80]!r} ours={ob[:80]!r}")
    return notes

def main():
    refs = {}
    for f in sorted(glob.glob(os.path.join(REF, "[0-6]*.log"))):
        for ex in exchanges(streams_from_log(f)):
            refs.setdefault(norm(ex[0][0]), (f, ex))
    ours = exchanges(streams_from_jsonl(sys.argv[1]))
    seen = set()
    for ex in ours:
        k = norm(ex[0][0])
        if k in seen: continue
        seen.add(k)
        if k not in refs:
            print(f"-- {k}: no reference (status {ex[1][3]}, ct={ex[1][1].get('content-type')})")
            continue
        notes = compare(refs[k][1], ex)
        print(f"== {k} [{refs[k][0].split('/')[-1]}]" + ("" if notes else " OK"))
        for n in notes: print("   ", n)

if __name__ == "__main__":
    main()
