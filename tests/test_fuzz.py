"""Fuzzing every file type Alpha reads: valid files mutated a few hundred ways (seeded), each
handed to the code that reads it. A mutation may load correctly or raise a typed AlphaError (one
clear line for the user); any other exception is a bug. Kinds of mutation: byte flips,
truncation, junk and invalid UTF-8, and — where a checksum would catch the bytes first — structural
JSON edits (a field of the wrong type, removed, or unknown) written back as a valid file.

    config JSON      alpha.core.config.resolve (what `train --config` does)
    tokenizer JSON   alpha.tokenizers.load, then encode/decode
    checkpoint       alpha.train.checkpoint.load / read_header, inference and trainer restore
    token cache      alpha.train.data.open_token_cache (a bad cache is rebuilt, never used)
    jsonl logs       run-folder repair and rewind, `runs`, `db sync`
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import struct

import pytest

from alpha.core.config import resolve
from alpha.core.errors import AlphaError
from alpha.train import checkpoint as ckpt_format
from alpha.train.trainer import Trainer

TEXT = ("ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet "
        "is the sun. caf\u00e9 \u2014 \U0001f600\n\n") * 12
JUNK = [None, True, False, 0, -1, 1, 3, 2 ** 64, -(2 ** 63), 1e308, -0.0, 0.5, "", "x",
        "\u00e9\U0001f600", [], {}, [1, 2], {"a": 1}, [[]], "step-1.ckpt", "../../etc"]


# ---- mutation engine --------------------------------------------------------------------------


def paths_of(value, prefix=()):
    """Every (path) into a nested JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:20]):
            out += paths_of(v, prefix + (i,))
    return out


def mutate_json(value, rng: random.Random):
    """One structural edit at a random place: a value of another type, a removed key or item, an
    unknown key, a wrapped or emptied container."""
    value = copy.deepcopy(value)
    path = rng.choice(paths_of(value))
    if not path:
        return rng.choice([[value], JUNK[rng.randrange(len(JUNK))], {}, {"x": value}])
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = rng.randrange(5)
    if op == 0 and isinstance(parent, dict):
        del parent[key]
    elif op == 0 and isinstance(parent, list):
        del parent[key]
    elif op == 1 and isinstance(parent, dict):
        parent[f"unknown_{rng.randrange(99)}"] = rng.choice(JUNK)
    elif op == 2:
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"v": parent[key]}
    elif op == 3 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = rng.choice([-parent[key], parent[key] * 1000 + 7, 0, -1])
    else:
        parent[key] = copy.deepcopy(rng.choice(JUNK))
    return value


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One raw edit: flip bits, truncate, insert junk or invalid UTF-8, duplicate, empty."""
    b = bytearray(data)
    op = rng.randrange(7)
    if not b or op == 6:
        return rng.choice([b"", b"\xff\xfe", b"\xef\xbb\xbf" + bytes(b), b"\0" * 8])
    i = rng.randrange(len(b))
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 1:
        del b[i:]
    elif op == 2:
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif op == 3:
        b[i:i] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\0", b"\n", b'"', b"}"])
    elif op == 4:
        j = min(len(b), i + rng.randint(1, 64))
        b[j:j] = b[i:j]
    else:
        del b[i:i + rng.randint(1, 16)]
    return bytes(b)


def expect_typed(fn, *args):
    """Run a reader: it returns, or raises an AlphaError with a one-line message."""
    try:
        return fn(*args)
    except AlphaError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg, msg
        return None


# ---- fixtures: one tiny trained run shared by the file types --------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzzrun")
    data = base / "data.txt"
    data.write_text(TEXT, encoding="utf-8")
    cfg = resolve("text", "", {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 8, "block_size": 8},
        "train": {"data": str(data), "batch_size": 2, "iters": 4, "eval_interval": 2,
                  "eval_iters": 1, "sample_interval": 2, "checkpoint_interval": 2,
                  "warmup_iters": 1, "run_dir": str(base / "run"), "keep_checkpoints": 0},
        "sample": {"max_tokens": 4}})
    result = Trainer(cfg, out=None).train()
    return {"dir": base / "run", "data": str(data), "config": cfg,
            "checkpoint": result.checkpoint}


# ---- config JSON --------------------------------------------------------------------------------


def test_fuzz_config_json(tmp_path, run):
    rng = random.Random(1)
    valid = {"domain": "text", "model": {"n_layer": 2, "n_head": 2, "n_embd": 16},
             "train": {"lr": 3e-4, "iters": 10, "data": run["data"]},
             "sample": {"temperature": 0.5, "stop": ["\n\n"]}}
    raw = json.dumps(valid).encode()
    path = tmp_path / "run.json"
    loaded = 0
    for i in range(300):
        if i % 3 == 0:
            path.write_bytes(mutate_bytes(raw, rng))
        else:
            path.write_text(json.dumps(mutate_json(valid, rng)), encoding="utf-8")
        config = expect_typed(resolve, "", str(path), {})
        if config is not None:
            loaded += 1
            config.hash  # a loaded config is whole: it hashes and serialises
            json.dumps(config.to_dict())
    assert loaded > 20  # harmless edits (an extra stop string, a bigger iters) still load
    for bad in (tmp_path, "/dev/null", "/dev/zero"):
        expect_typed(resolve, "", str(bad), {})
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(AlphaError, match="pipe"):
        resolve("", str(tmp_path / "pipe.json"), {})  # refused, never opened (it would hang)


# ---- tokenizer JSON -----------------------------------------------------------------------------


def test_fuzz_tokenizer_json(tmp_path):
    from alpha import tokenizers

    rng = random.Random(2)
    sample = TEXT[:200]
    path = tmp_path / "tok.json"
    loaded = 0
    for kind, vocab in (("char", 0), ("bpe", 300), ("word", 60)):
        tok = tokenizers.train_tokenizer(kind, TEXT, vocab, ["<|end_of_text|>"])
        valid = json.loads(tok.to_json_str())
        raw = tok.to_json_str().encode()
        for i in range(120):
            if i % 3 == 0:
                path.write_bytes(mutate_bytes(raw, rng))
            else:
                path.write_text(json.dumps(mutate_json(valid, rng)), encoding="utf-8")
            got = expect_typed(tokenizers.load, str(path))
            if got is not None:
                loaded += 1
                ids = got.encode(sample + "<|end_of_text|>")
                assert all(isinstance(t, int) and 0 <= t < got.vocab_size for t in ids)
                assert isinstance(got.decode(ids), str)
    assert loaded > 10
    with pytest.raises(AlphaError, match="folder"):
        tokenizers.load(str(tmp_path))


# ---- checkpoints --------------------------------------------------------------------------------


def _resign(path, header: dict, body: bytes) -> None:
    """Write a checkpoint with this header and body and a correct checksum (a file another tool
    could have made): the header's fields are what is under test, not the checksum."""
    head = json.dumps(header).encode()
    prefix = struct.pack("<8sIQ", ckpt_format.MAGIC, ckpt_format.FORMAT_VERSION, len(head))
    pad = b"\0" * ((-(len(prefix) + len(head))) % ckpt_format.ALIGN)
    blob = prefix + head + pad + body
    with open(path, "wb") as f:
        f.write(blob + hashlib.sha256(blob).digest())


def test_fuzz_checkpoint(tmp_path, run):
    from alpha.train.restore import load_for_inference

    rng = random.Random(3)
    src = run["checkpoint"]
    raw = open(src, "rb").read()
    ck = ckpt_format.load(src)
    header = ck.header
    body_at = len(raw) - 32 - header["body_size"]
    body = raw[body_at:-32]
    path = str(tmp_path / "step-4.ckpt")
    restored = 0
    for i in range(240):
        if i % 4 == 0:
            with open(path, "wb") as f:
                f.write(mutate_bytes(raw, rng))
        else:
            _resign(path, mutate_json(header, rng), body)
        expect_typed(ckpt_format.read_header, path)
        got = expect_typed(ckpt_format.load, path)
        if got is None:
            continue
        expect_typed(load_for_inference, path)
        if i % 4 == 1:  # the trainer's restore reads every field
            trainer = expect_typed(lambda: Trainer(run["config"], resume=got,
                                                   run_dir=str(tmp_path / f"r{i}"), out=None))
            if trainer is not None:
                restored += 1
                trainer.folder.close()
    assert restored > 3
    with pytest.raises(AlphaError, match="folder"):
        ckpt_format.load(str(tmp_path))


# ---- token caches -------------------------------------------------------------------------------


def test_fuzz_token_cache(tmp_path, run):
    from alpha import tokenizers
    from alpha.train import data as D

    rng = random.Random(4)
    tok = tokenizers.load(str(run["dir"] / "tokenizer.json"))
    cache_dir = str(tmp_path / "cache")
    first = D.open_token_cache(run["data"], tok, cache_dir, progress=False)
    want = list(first.tokens)
    path = first.path
    first.close()
    raw = open(path, "rb").read()
    rebuilt = 0
    for _ in range(200):
        b = bytearray(raw)
        if rng.random() < 0.5:  # the body, under a header that still matches the text
            i = D.HEADER_SIZE + rng.randrange(len(raw) - D.HEADER_SIZE)
            b[i] ^= 1 << rng.randrange(8)
        else:
            b = bytearray(mutate_bytes(raw, rng))
        with open(path, "wb") as f:
            f.write(b)
        cache = expect_typed(D.open_token_cache, run["data"], tok, cache_dir, False)
        if cache is not None:
            assert list(cache.tokens) == want  # a bad cache is rebuilt, never used
            rebuilt += cache.built
            cache.close()
    assert rebuilt > 100


# ---- metrics / events / samples jsonl -----------------------------------------------------------


def test_fuzz_run_logs(tmp_path, run):
    import shutil

    from alpha.cli.runs import summarize
    from alpha.db.sqlite_store import SqliteStore
    from alpha.db.sync import sync_run
    from alpha.train.runfolder import RunFolder, read_jsonl

    rng = random.Random(5)
    names = ("metrics.jsonl", "events.jsonl", "samples.jsonl")
    originals = {n: (run["dir"] / n).read_bytes() for n in names}
    store = SqliteStore(str(tmp_path / "fuzz.db"))
    store.migrate()
    for i in range(150):
        folder = tmp_path / f"run-{i}"
        shutil.copytree(run["dir"], folder)
        for name, raw in originals.items():
            lines = raw.splitlines(keepends=True)
            j = rng.randrange(len(lines))
            if rng.random() < 0.5:
                row = json.loads(lines[j])
                lines[j] = (json.dumps(mutate_json(row, rng)) + "\n").encode()
            else:
                lines[j] = mutate_bytes(lines[j], rng)
            (folder / name).write_bytes(b"".join(lines))
        for name in names:
            read_jsonl(str(folder / name))
        expect_typed(summarize, str(folder))
        expect_typed(sync_run, store, str(folder))
        rf = RunFolder(str(folder))
        rf.lock()
        rf.repair()
        rf.rewind(2)
        rf.close()
        for name in ("metrics.jsonl", "events.jsonl"):
            data = (folder / name).read_bytes()
            assert not data or data.endswith(b"\n")  # nothing left to glue a new line to
        shutil.rmtree(folder)
    store.close()
