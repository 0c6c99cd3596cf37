"""Training data: text file -> token cache on disk (memory-mapped) -> train/val split -> batches.

The token cache is one binary file next to the text (or in `cache_dir`), named
`<text file name>.<kind>-<tokenizer fingerprint[:12]>.tokens`:

    offset 0    magic  b"ALPHATOK"
    offset 8    u32    format version (1)
    offset 12   u32    bytes per token: 2 (uint16, vocab_size <= 65536) or 4 (uint32)
    offset 16   u64    token count
    offset 24   u64    source text size in bytes
    offset 32   i64    source text mtime (ns)
    offset 40   32 B   sha256 of the source text
    offset 72   32 B   sha256 of the tokenizer's canonical JSON (`Tokenizer.fingerprint`)
    offset 104  u32    crc32 of the tokens (version 2)
    offset 108  zero padding to 128
    offset 128  tokens, little-endian

It is reused when the tokenizer fingerprint and the text's size match, either the mtime matches
or (mtime changed) the text's sha256 still matches, and the tokens' crc32 matches (a cache damaged
on disk is never used: ~2 GB/s to check); otherwise it is rebuilt. Building streams the
text in chunks cut at safe boundaries (`Tokenizer.safe_cut`), so a 1 GB file is never held whole,
and the tokens equal those of encoding the whole text at once. The file is written to a temporary
name, fsynced and renamed. Reading maps it with `mmap` and `memoryview.cast`: nothing is copied.

The batches are drawn by `BatchSampler` (alpha.train.sampler, re-exported here).
"""

from __future__ import annotations

import codecs
import hashlib
import mmap
import os
import struct
import sys
import time
import zlib
from array import array
from dataclasses import dataclass

from alpha.core.atomic import atomic_open
from alpha.core.errors import DataError
from alpha.core.files import check_text_file, file_sha256
from alpha.train.progress import format_duration, format_rate
from alpha.train.sampler import MODES, BatchSampler  # noqa: F401  (re-exported)

MAGIC = b"ALPHATOK"
VERSION = 2  # 2: the tokens' crc32 (a version-1 cache is rebuilt)
HEADER_SIZE = 128
_HEADER = struct.Struct("<8sIIQQq32s32sI")
READ_BYTES = 1 << 22  # text read per chunk while building a cache
MAX_CARRY_CHARS = 1 << 26  # with no safe cut in this much text, cut anyway (see _cut)
VAL_FRACTION = 0.1


def _fail_big_endian():  # pragma: no cover - every platform Alpha runs on is little-endian
    raise DataError("token caches need a little-endian machine")


# --------------------------------------------------------------------------------------------
# the token cache


@dataclass
class CacheHeader:
    itemsize: int
    count: int
    source_size: int
    source_mtime_ns: int
    source_sha256: bytes
    tokenizer_sha256: bytes
    tokens_crc32: int = 0

    def pack(self) -> bytes:
        head = _HEADER.pack(MAGIC, VERSION, self.itemsize, self.count, self.source_size,
                            self.source_mtime_ns, self.source_sha256, self.tokenizer_sha256,
                            self.tokens_crc32)
        return head + bytes(HEADER_SIZE - len(head))

    @classmethod
    def read(cls, path: str) -> "CacheHeader | None":
        """The header of a token cache, or None when the file is missing, foreign or truncated."""
        try:
            with open(path, "rb") as f:
                raw = f.read(HEADER_SIZE)
                size = os.fstat(f.fileno()).st_size
        except OSError:
            return None
        if len(raw) < HEADER_SIZE:
            return None
        magic, version, itemsize, count, src_size, mtime, src_sha, tok_sha, crc = \
            _HEADER.unpack(raw[: _HEADER.size])
        if magic != MAGIC or version != VERSION or itemsize not in (2, 4):
            return None
        if size != HEADER_SIZE + count * itemsize:
            return None
        return cls(itemsize, count, src_size, mtime, src_sha, tok_sha, crc)

    def body_intact(self, path: str) -> bool:
        """The tokens on disk still have the crc32 recorded when they were written."""
        crc = 0
        try:
            with open(path, "rb") as f:
                f.seek(HEADER_SIZE)
                while True:
                    block = f.read(1 << 22)
                    if not block:
                        break
                    crc = zlib.crc32(block, crc)
        except OSError:
            return False
        return crc == self.tokens_crc32


class TokenFile:
    """A token cache opened read-only: `tokens` is a memoryview of ints ('H' or 'I') over the
    mapped file. `built` says whether this call had to (re)build it."""

    def __init__(self, path: str, built: bool = False, source: str = ""):
        if sys.byteorder != "little":  # pragma: no cover
            _fail_big_endian()
        header = CacheHeader.read(path)
        if header is None:
            raise DataError(f"token cache {path} is missing or corrupt; delete it to rebuild")
        self.path = path
        self.source = source
        self.built = built
        self.header = header
        self.count = header.count
        self.itemsize = header.itemsize
        self.dtype = "u16" if header.itemsize == 2 else "u32"
        self._file = open(path, "rb")
        if header.count:
            self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            body = memoryview(self._mmap)[HEADER_SIZE:]
            self.tokens = body.cast("H" if header.itemsize == 2 else "I")
        else:
            self._mmap = None
            self.tokens = memoryview(array("H" if header.itemsize == 2 else "I"))

    def __len__(self) -> int:
        return self.count

    def close(self) -> None:
        """Release the mapping. Views taken from `tokens` must be released first."""
        try:
            self.tokens.release()
        except (ValueError, BufferError):
            pass
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                return  # a slice of the memoryview is still alive; the OS frees it at exit
        self._file.close()

    def __repr__(self) -> str:
        return f"TokenFile({self.path!r}, {self.count} tokens, {self.dtype})"


def cache_path_for(text_path: str, tokenizer, cache_dir: str | None = None) -> str:
    """Where the token cache of `text_path` under `tokenizer` lives."""
    directory = cache_dir or os.path.dirname(os.path.abspath(text_path))
    name = f"{os.path.basename(text_path)}.{tokenizer.kind}-{tokenizer.fingerprint()[:12]}.tokens"
    return os.path.join(directory, name)


def open_token_cache(text_path: str, tokenizer, cache_dir: str | None = None,
                     progress=True) -> TokenFile:
    """The token cache of `text_path`: reused when still valid, else (re)built first.

    `progress`: True shows a progress line on stderr for builds that take more than a second,
    False shows nothing, a callable gets (bytes done, bytes total, seconds elapsed)."""
    check_text_file(text_path)
    path = cache_path_for(text_path, tokenizer, cache_dir)
    tok_sha = bytes.fromhex(tokenizer.fingerprint())
    header = CacheHeader.read(path)
    st = os.stat(text_path)
    if header is not None and header.tokenizer_sha256 == tok_sha and \
            header.source_size == st.st_size and header.body_intact(path):
        if header.source_mtime_ns == st.st_mtime_ns:
            return TokenFile(path, built=False, source=text_path)
        if file_sha256(text_path) == header.source_sha256:
            header.source_mtime_ns = st.st_mtime_ns  # same text, touched: remember the new mtime
            with open(path, "r+b") as f:
                f.write(header.pack())
            return TokenFile(path, built=False, source=text_path)
    build_token_cache(text_path, tokenizer, path, progress=progress)
    return TokenFile(path, built=True, source=text_path)


def build_token_cache(text_path: str, tokenizer, out_path: str, progress=True) -> int:
    """Tokenize `text_path` in streaming chunks into a cache file at `out_path`; returns the
    token count. Atomic: a reader sees the old cache or the complete new one."""
    size = check_text_file(text_path)
    itemsize = 2 if tokenizer.vocab_size <= 65536 else 4
    code = "H" if itemsize == 2 else "I"
    st = os.stat(text_path)
    directory = os.path.dirname(os.path.abspath(out_path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the token cache folder {directory}: "
                        f"{e.strerror or e}") from None
    report = _Reporter(text_path, size, progress)
    hasher = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    count = 0
    crc = 0
    done = 0
    carry = ""
    try:
        with open(text_path, "rb") as src, \
                atomic_open(out_path) as out:
            out.write(bytes(HEADER_SIZE))
            while True:
                block = src.read(READ_BYTES)
                eof = not block
                hasher.update(block)
                try:
                    text = carry + decoder.decode(block, final=eof)
                except UnicodeDecodeError as e:
                    raise DataError(f"data file {text_path} is not UTF-8 text (bad byte near "
                                    f"offset {done + max(0, e.start)})") from None
                done += len(block)
                if eof:
                    piece, carry = text, ""
                else:
                    cut = _cut(tokenizer, text)
                    piece, carry = text[:cut], text[cut:]
                if piece:
                    ids = array(code, tokenizer.encode(piece)).tobytes()
                    out.write(ids)
                    crc = zlib.crc32(ids, crc)
                    count += len(ids) // itemsize
                report(done)
                if eof:
                    break
            if os.stat(text_path).st_mtime_ns != st.st_mtime_ns:
                raise DataError(f"data file {text_path} changed while it was being tokenized")
            header = CacheHeader(itemsize, count, size, st.st_mtime_ns, hasher.digest(),
                                 bytes.fromhex(tokenizer.fingerprint()), crc)
            out.seek(0)
            out.write(header.pack())
    except OSError as e:  # reading the text (writing the cache raises WriteError)
        raise DataError(f"cannot tokenize {text_path} into the token cache {out_path}: "
                        f"{e.strerror or e}") from None
    finally:
        report.close()
    return count


def _cut(tokenizer, text: str) -> int:
    """Where to cut a chunk: a safe boundary, else 0 (read more), else (an enormous chunk with no
    safe boundary at all, e.g. 64M characters of one letter) the end of the text."""
    cut = tokenizer.safe_cut(text)
    if cut == 0 and len(text) > MAX_CARRY_CHARS:
        return len(text)
    return cut


class _Reporter:
    """A progress line on stderr (rate and ETA) for builds that last more than a second."""

    def __init__(self, path: str, total: int, progress):
        self.path = path
        self.total = total
        self.fn = progress if callable(progress) else None
        self.enabled = bool(progress)
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.last_done = -1
        self.shown = False

    def __call__(self, done: int) -> None:
        now = time.perf_counter() - self.t0
        if self.fn is not None:
            self.fn(done, self.total, now)
            return
        tty = sys.stderr.isatty()
        every = 0.5 if tty else 10.0  # a log file gets a line every 10 s, a terminal redraws
        if not self.enabled or now < 1.0 or done == self.last_done:
            return
        if now - self.last < every and done < self.total:
            return
        self.last = now
        self.last_done = done
        rate = done / now
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        line = (f"tokenizing {os.path.basename(self.path)}: {done / 1e6:.1f}/"
                f"{self.total / 1e6:.1f} MB, {format_rate(rate)}B/s, ETA {format_duration(eta)}")
        sys.stderr.write(("\r" + line + "   ") if tty else (line + "\n"))
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown and self.fn is None and sys.stderr.isatty():
            sys.stderr.write("\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# train / val split


@dataclass
class DataSplits:
    """Token ids for training and validation (memoryviews over the caches) and where they came
    from. `describe()` is one line for the log."""

    train: memoryview
    val: memoryview
    train_file: TokenFile
    val_file: TokenFile | None
    val_source: str  # "file" (--val-data) or "tail" (the last val_fraction of the tokens)
    val_fraction: float = VAL_FRACTION

    def describe(self) -> str:
        cached = "rebuilt" if self.train_file.built else "cached"
        val = (f"{len(self.val):,} val tokens from {self.val_file.source}"
               if self.val_file is not None else
               f"{len(self.val):,} val tokens (the last {self.val_fraction:.0%})")
        return (f"data: {len(self.train):,} train tokens from {self.train_file.source} "
                f"({cached}: {self.train_file.path}), {val}")

    def close(self) -> None:
        for view in (self.train, self.val):
            try:
                view.release()
            except (ValueError, BufferError):
                pass
        self.train_file.close()
        if self.val_file is not None:
            self.val_file.close()


def load_data(data_path: str, tokenizer, block_size: int, val_path: str = "",
              cache_dir: str | None = None, val_fraction: float = VAL_FRACTION,
              progress=True) -> DataSplits:
    """Token caches for `data_path` (and `val_path`), split into train and val.

    Without `val_path` the last `val_fraction` of the tokens is validation (at least
    block_size + 1 tokens). Each side must hold at least block_size + 1 tokens."""
    need = block_size + 1
    train_file = open_token_cache(data_path, tokenizer, cache_dir, progress)
    n = train_file.count
    if val_path:
        val_file = open_token_cache(val_path, tokenizer, cache_dir, progress)
        if val_file.count < need:
            raise DataError(f"validation file {val_path} has {val_file.count} tokens; "
                            f"block_size={block_size} needs at least {need}")
        if n < need:
            raise DataError(f"data file {data_path} has {n} tokens; block_size={block_size} "
                            f"needs at least {need}")
        return DataSplits(train_file.tokens, val_file.tokens, train_file, val_file, "file")
    n_val = max(int(n * val_fraction), need)
    if n - n_val < need:
        raise DataError(f"data file {data_path} has {n} tokens: too short to split into train "
                        f"and val windows of block_size+1={need} tokens each (needs at least "
                        f"{2 * need}); give more text, a smaller block_size, or --val-data")
    tokens = train_file.tokens
    return DataSplits(tokens[: n - n_val], tokens[n - n_val:], train_file, None, "tail",
                      val_fraction)


# --------------------------------------------------------------------------------------------
# a run's data: the tokenizer and the token splits a TrainConfig asks for


@dataclass
class RunData:
    """What a run trains on: token ids for training and validation and, for the log, where
    they came from."""

    train: memoryview
    val: memoryview
    description: str


def tokens_of(tokenizer, text: str) -> memoryview:
    """Token ids of a text held in memory ('H' when the vocabulary fits 16 bits)."""
    ids = tokenizer.encode(text)
    return memoryview(array("H" if tokenizer.vocab_size <= 65536 else "I", ids))


def token_cache_dir() -> str:
    """Token caches live in Alpha's cache folder, not next to the user's text (which may be
    read-only, and should stay clean)."""
    from alpha.tensor.build import cache_dir

    return str(cache_dir() / "tokens")


def run_tokenizer(config, log=None):
    """A new tokenizer for a run: the run's kind (or its domain's), trained on its data file
    (a bounded sample for BPE and word) or on the default corpus."""
    from alpha.core.domains import get_domain
    from alpha import tokenizers

    tc = config.train
    kind = tc.tokenizer or get_domain(config.domain).tokenizer
    specials = get_domain(config.domain).special_tokens
    vocab = 0 if kind == "char" else config.model.vocab_size
    if tc.data:
        check_text_file(tc.data)
        return tokenizers.train_from_file(kind, tc.data, vocab, specials, log=log)
    from alpha.train import default_data

    return tokenizers.train_tokenizer(kind, default_data.default_corpus(), vocab, specials)


def run_data(config, tokenizer, log=None) -> RunData:
    """The train/val tokens of a run: its data file through the token cache (validation from
    --val-data, else the last VAL_FRACTION), or the default corpus. DataError when a side holds
    fewer than block_size + 1 tokens."""
    from alpha.core.files import read_text

    tc = config.train
    block = config.model.block_size
    if tc.val_data:
        check_text_file(tc.val_data, "validation file")
    if tc.data:
        splits = load_data(tc.data, tokenizer, block, tc.val_data, token_cache_dir(),
                           progress=log is not None)
        return RunData(splits.train, splits.val, tc.data)
    from alpha.train import default_data

    tokens = tokens_of(tokenizer, default_data.default_corpus())
    if tc.val_data:
        train, val = tokens, tokens_of(tokenizer, read_text(tc.val_data, "validation file"))
    else:
        cut = int(len(tokens) * (1.0 - VAL_FRACTION))
        train, val = tokens[:cut], tokens[cut:]
    for what, toks in (("training", train), ("validation", val)):
        if len(toks) < block + 1:
            raise DataError(f"the default corpus gives {len(toks)} {what} tokens, fewer than "
                            f"block_size + 1 = {block + 1}; use a smaller --block")
    return RunData(train, val, default_data.describe())
