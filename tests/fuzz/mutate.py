"""A small seeded mutation engine: the suite's short runs (deterministic, no atheris) and the
fallback of run.py. Inputs are the corpus files, then mutants of them (bit flips, random and
"interesting" bytes, tokens of the target's syntax, deletions, duplications, splices)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

TOKENS = [
    b"\r\n", b"\n", b"\r\n\r\n", b"\x00", b"\xff", b"\xc3\x28", b"\\", b"`", b"$", b"${", b"}", b"{{", b"}}",
    b"{{end}}", b"{{range .}}", b"{{if", b"(", b")", b"|", b"\"", b"'", b"[", b"]", b":", b"@", b"/", b"..",
    b"sha256:", b".wh.", b".wh..wh..opq", b"Transfer-Encoding: chunked\r\n", b"Content-Length: ",
    b"-1", b"0x10", b"1_0", b"18446744073709551616", b"9" * 30, b"\t", b" ", b"#", b"<<EOF\n", b"=",
    b'{"', b'":', b"null", b"[]", b"{}", b"-", b"*", b"**", b"?", b"!", b"%", b"\xc0\x0c",
]


def load(target: str) -> list[bytes]:
    d = CORPUS / target
    return [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()] if d.is_dir() else []


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x20, rng.randrange(256)))
        elif op == 2:
            b[pos:pos] = rng.choice(TOKENS)
        elif op == 3 and b:
            del b[pos:pos + rng.randrange(1, 16)]
        elif op == 4 and b:
            n = rng.randrange(1, 64)
            b[pos:pos] = b[pos:pos + n] * rng.randrange(1, 4)
        elif op == 5 and corpus:
            other = rng.choice(corpus)
            j = rng.randrange(len(other) + 1)
            b[pos:] = other[j:]
        elif op == 6:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif op == 7 and b:
            del b[pos:]
    return bytes(b)


def inputs(target: str, runs: int, seed: int = 0) -> Iterator[bytes]:
    """The corpus, then ``runs`` mutants of it, the same ones for the same seed."""
    corpus = load(target) or [b""]
    yield from corpus
    rng = random.Random(f"{target}:{seed}")
    for _ in range(runs):
        yield mutate(rng.choice(corpus), rng, corpus)
