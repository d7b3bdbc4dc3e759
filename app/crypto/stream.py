"""The age STREAM payload: ChaCha20-Poly1305 over 64 KiB chunks (age spec, "Payload").

Decryption releases a chunk only after its tag verifies, and reports truncation (no final
chunk), a final chunk that is not last (trailing data) and an empty non-first final chunk as
:class:`PayloadError`.  Encryption holds back one chunk until it knows whether more data
follows, because the last chunk carries the "final" flag in its nonce.
"""

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .byteio import Buffer, Source
from .encoding import hkdf_sha256
from .errors import PayloadError

CHUNK = 64 * 1024
TAG = 16
ENC_CHUNK = CHUNK + TAG
NONCE_SIZE = 16
SMALL_WRITE = 16 * 1024  # StreamWriter copies writes smaller than this instead of holding them

Writer = Callable[[bytes], object]  # gets plaintext (decryption)
SealedWriter = Callable[[Buffer], object]  # gets ciphertext: bytes, or a bytearray no one changes
_Out = TypeVar("_Out", bytes, bytearray)  # what a batch of the pipeline comes out as
Progress = Callable[[int], object]  # told how many bytes were just read


def payload_size(plaintext: int) -> int:
    """Bytes of the STREAM payload (nonce, chunks, tags) for ``plaintext`` bytes.

    Every chunk but the last is full; an empty plaintext still has one (empty) final chunk.
    The browser computes the same sizes (tests/vectors/age-sizes.json).
    """
    chunks = max(1, -(-plaintext // CHUNK))
    return NONCE_SIZE + plaintext + TAG * chunks


def plaintext_length(payload: int) -> int | None:
    """The plaintext length of a STREAM payload of ``payload`` bytes, or None if none fits.

    Only the last chunk may be shorter than 64 KiB, and it may be empty only when the whole
    plaintext is (the inverse of :func:`payload_size`).
    """
    body = payload - NONCE_SIZE
    if body < TAG:
        return None
    full, last = divmod(body, ENC_CHUNK)
    if last == 0:
        return full * CHUNK if full >= 1 else None
    if last < TAG or (last == TAG and full > 0):
        return None
    return full * CHUNK + last - TAG


# Why ``cryptography`` and not PyNaCl for the AEAD: measured here (bench/README.md), its
# ChaCha20-Poly1305 runs at about 4.3 GiB/s of CPU against libsodium-through-PyNaCl's 1.3 GiB/s
# on the same 64 KiB chunks.  PyNaCl stays the tool for X25519, Ed25519 and scrypt.
Aead = ChaCha20Poly1305


def payload_key(file_key: bytes, nonce: bytes) -> bytes:
    return hkdf_sha256(file_key, nonce, b"payload")


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class StreamWriter:
    """Incrementally encrypts plaintext into age STREAM chunks passed to ``emit``.

    With ``background=True`` sealing runs on one helper thread and ``emit`` on a second, fed
    1 MiB batches in order through a short queue: the caller (the web server's multipart
    parser, which also hashes the plaintext), the AEAD and the sink (which hashes the
    ciphertext and writes it) then overlap on the cores there are. Why two threads and not
    one: sealing, hashing and writing every MiB on one thread made it the slowest stage of a
    JavaScript-off upload (bench/README.md). ``emit`` is always called in chunk order, one
    buffer per batch (so a sink hashes and writes 1 MiB per call), from one thread at a time;
    its errors surface on the next ``write``/``close``.

    Written data is held, not copied, when it is a view of ``bytes`` (immutable, so the
    sealing thread can read it later) of at least ``SMALL_WRITE`` bytes: a batch is then
    slices of what the caller gave, and only a chunk that spans two writes is joined. Why: two
    copies of every byte on the caller's thread (into a buffer, then out of it) were a quarter
    of the time the web server's parsing thread held the GIL during a JavaScript-off upload
    (bench/README.md). A mutable buffer (its owner may reuse it) and small writes (held one by
    one, each would cost far more than its bytes) are copied into a buffer of the writer's own.
    """

    def __init__(self, key: bytes, emit: SealedWriter, *, background: bool = False) -> None:
        self._aead = Aead(key)
        self._emit = emit
        self._held: deque[memoryview] = deque()  # written, not yet sealed; in order
        self._small = bytearray()  # copied writes after those in _held (see _keep_small)
        self._held_bytes = 0  # in _held and _small
        self._counter = 0
        self._closed = False
        self._pool = ThreadPoolExecutor(1, "age-seal") if background else None
        self._emitter = ThreadPoolExecutor(1, "age-emit") if background else None
        self._pending: deque[Future[None]] = deque()
        self._batch = BATCH * CHUNK if background else CHUNK

    @property
    def started(self) -> bool:
        return self._counter > 0 or self._held_bytes > 0 or self._closed

    def close_unused(self) -> None:
        """Hand the stream over to :func:`seal_stream` (which does its own chunking)."""
        self._closed = True
        self._shutdown()

    def write(self, data: Buffer) -> None:
        if self._closed:
            raise ValueError("write to a closed age encryptor")
        view = memoryview(data).cast("B")
        if not view:
            return
        if type(view.obj) is bytes and len(view) >= SMALL_WRITE:
            self._keep_small()
            self._held.append(view)
        else:
            self._small += view
        self._held_bytes += len(view)
        if self._held_bytes <= self._batch:
            return
        self._keep_small()
        # keep at least one byte back: the chunk holding it may be the last one
        chunks = self._cut((self._held_bytes - 1) // self._batch * self._batch)
        per_batch = self._batch // CHUNK
        for i in range(0, len(chunks), per_batch):
            self._submit(chunks[i : i + per_batch], last=False)

    def _keep_small(self) -> None:
        """Hold what the copied writes gathered; that buffer is never changed again."""
        if self._small:
            self._held.append(memoryview(self._small))
            self._small = bytearray()

    def _cut(self, take: int) -> list[Buffer]:
        """The first ``take`` held bytes (whole chunks) as chunks: slices of the held views,
        and a joined copy only for a chunk that spans two of them."""
        chunks: list[Buffer] = []
        partial: list[memoryview] = []  # the start of a chunk that spans two views
        short = 0  # bytes in ``partial``
        self._held_bytes -= take
        while take:
            piece = self._held.popleft()
            if len(piece) > take:
                self._held.appendleft(piece[take:])
                piece = piece[:take]
            take -= len(piece)
            if short:
                fill = piece[: CHUNK - short]
                partial.append(fill)
                short += len(fill)
                piece = piece[len(fill) :]
                if short < CHUNK:
                    continue
                chunks.append(b"".join(partial))
                partial, short = [], 0
            whole = len(piece) - len(piece) % CHUNK
            chunks.extend(piece[i : i + CHUNK] for i in range(0, whole, CHUNK))
            if whole < len(piece):
                partial, short = [piece[whole:]], len(piece) - whole
        return chunks

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._keep_small()
            tail = memoryview(b"".join(self._held))
            self._submit([tail[i : i + CHUNK] for i in range(0, len(tail), CHUNK)] or [b""], True)
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._shutdown()

    def abort(self) -> None:
        """Stop without writing a final chunk (the output is to be discarded)."""
        self._closed = True
        self._shutdown()

    def _shutdown(self) -> None:
        self._held.clear()  # what was never sealed is dropped with the stream
        self._small = bytearray()
        self._held_bytes = 0
        for future in self._pending:
            future.cancel()
        for pool in (self._pool, self._emitter):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._emitter = None

    def _submit(self, chunks: Sequence[Buffer], last: bool) -> None:
        first = self._counter
        self._counter += len(chunks)
        if self._pool is None or self._emitter is None:
            for sealed in _seal_batch(self._aead, first, chunks, last):
                self._emit(sealed)
            return
        batch = self._pool.submit(_seal_batch, self._aead, first, chunks, last)
        self._pending.append(self._emitter.submit(self._emit_sealed, batch))
        while len(self._pending) > 2 or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()  # re-raises a failed seal or emit

    def _emit_sealed(self, batch: Future[list[bytearray]]) -> None:
        for sealed in batch.result():
            self._emit(sealed)


class StreamReader:
    """Reads and authenticates age STREAM chunks from ``src`` one at a time."""

    def __init__(self, key: bytes, src: Source, pending: bytes = b"") -> None:
        self._aead = Aead(key)
        self._src = src
        self._pending = bytearray(pending)
        self._counter = 0
        self._done = False

    def _fill(self, want: int) -> None:
        while len(self._pending) < want:
            more = self._src.read(want - len(self._pending))
            if not more:
                return
            self._pending += more

    def next_chunk(self) -> bytes | None:
        """Return the next authenticated plaintext chunk, or None after the final one."""
        if self._done:
            return None
        # one byte of look-ahead tells a full final chunk from a full non-final one
        self._fill(ENC_CHUNK + 1)
        if len(self._pending) > ENC_CHUNK:
            enc, last = bytes(self._pending[:ENC_CHUNK]), False
        else:
            enc, last = bytes(self._pending), True
        del self._pending[: len(enc)]
        plain = open_chunk(self._aead, enc, self._counter, last)
        self._counter += 1
        if last:
            self._done = True
        return plain

    def drain(self, write: Writer, progress: Progress | None = None) -> None:
        """Decrypt every remaining chunk into ``write`` using the parallel path."""
        if self._done:
            return
        self._done = True
        _open_all(self._aead, self._src, bytes(self._pending), write, progress, self._counter)


def open_chunk(aead: Aead, enc: bytes, counter: int, last: bool) -> bytes:
    """Authenticate and decrypt one chunk, with the spec's checks on the final one."""
    _check_length(enc, counter)
    try:
        plain = aead.decrypt(_nonce(counter, last), enc, None)
    except InvalidTag:
        raise _tag_error(aead, enc, counter, last) from None
    _check_final(len(plain), counter, last)
    return plain


def _open_into(aead: Aead, enc: Buffer, counter: int, last: bool, out: memoryview) -> None:
    """:func:`open_chunk` into ``out`` (its exact plaintext length); on an error ``out`` holds
    unauthenticated bytes and must be dropped, which the batch paths do by raising."""
    _check_length(enc, counter)
    try:
        aead.decrypt_into(_nonce(counter, last), enc, None, out)
    except InvalidTag:
        raise _tag_error(aead, enc, counter, last) from None
    _check_final(len(out), counter, last)


def _check_length(enc: Buffer, counter: int) -> None:
    if len(memoryview(enc)) < TAG + (1 if counter > 0 else 0):
        raise PayloadError(
            "the encrypted file is truncated: its last chunk is missing or too short"
        )


def _check_final(size: int, counter: int, last: bool) -> None:
    if last and not size and counter > 0:
        raise PayloadError("the encrypted file ends with an empty final chunk")


def _tag_error(aead: Aead, enc: Buffer, counter: int, last: bool) -> PayloadError:
    """Which failure a chunk that did not authenticate is: trailing data, or damage."""
    if not last:
        try:
            aead.decrypt(_nonce(counter, True), enc, None)
        except InvalidTag:
            pass
        else:
            return PayloadError("the encrypted file has data after its final chunk")
    return PayloadError(
        "the encrypted file is damaged or truncated: a chunk failed authentication"
    )


# --- parallel whole-stream paths -------------------------------------------------------------
# A small pool overlaps reading and writing (which release the GIL) with the AEAD.  Work is
# handed out in batches (1 MiB) to amortise scheduling, and results are consumed strictly in
# order: a batch that fails authentication raises before any of its plaintext is written.

BATCH = 16
WORKERS = 2
_IN_FLIGHT = 2 * WORKERS


def _seal_batch(aead: Aead, first: int, chunks: Sequence[Buffer], last: bool) -> list[bytearray]:
    """Seal a batch into one buffer: the sink then hashes and writes it in one call each."""
    n = len(chunks)
    sizes = [len(memoryview(c)) + TAG for c in chunks]
    out = bytearray(sum(sizes))
    pos = 0
    with memoryview(out) as view:
        for i, (c, size) in enumerate(zip(chunks, sizes, strict=True)):
            aead.encrypt_into(_nonce(first + i, last and i == n - 1), c, None,
                              view[pos : pos + size])
            pos += size
    # the buffer itself, not a copy: nothing writes to it once it is returned
    return [out]


def _open_batch(aead: Aead, first: int, chunks: Sequence[Buffer], last: bool) -> list[bytes]:
    """Open a batch into one buffer (it is returned only when every chunk authenticated)."""
    n = len(chunks)
    sizes = [max(0, len(memoryview(c)) - TAG) for c in chunks]
    out = bytearray(sum(sizes))
    pos = 0
    with memoryview(out) as view:
        for i, (c, size) in enumerate(zip(chunks, sizes, strict=True)):
            _open_into(aead, c, first + i, last and i == n - 1, view[pos : pos + size])
            pos += size
    return [bytes(out)]  # one copy of the batch: sinks take immutable bytes


def _pipeline(
    work: Callable[[Aead, int, Sequence[Buffer], bool], list[_Out]],
    aead: Aead,
    batches: Iterator[tuple[list[Buffer], bool]],
    write: Callable[[_Out], object],
    counter: int = 0,
) -> None:
    pending: deque[Future[list[_Out]]] = deque()
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="age-stream") as pool:
        try:
            for chunks, last in batches:
                pending.append(pool.submit(work, aead, counter, chunks, last))
                counter += len(chunks)
                if len(pending) >= _IN_FLIGHT:
                    for out in pending.popleft().result():
                        write(out)
            while pending:
                for out in pending.popleft().result():
                    write(out)
        finally:
            for future in pending:
                future.cancel()


def _chunked(read: Callable[[int], bytes], size: int) -> Iterator[tuple[list[Buffer], bool]]:
    """Batches of ``size``-byte chunks, each batch read in one call and sliced without a copy
    (a read per 64 KiB chunk was a tenth of a decrypt's time); one batch of look-ahead marks
    the last chunk. An empty input is one empty (final) chunk, as age requires."""
    whole = size * BATCH
    cur = read(whole)
    while True:
        ahead = read(whole) if len(cur) == whole else b""
        view = memoryview(cur)
        yield [view[i : i + size] for i in range(0, len(cur), size)] or [view], not ahead
        if not ahead:
            return
        cur = ahead


def _reader(src: Source, pending: bytes, progress: Progress | None) -> Callable[[int], bytes]:
    """read(n): exactly n bytes unless at end of input, ``pending`` first."""
    left = bytearray(pending)

    def read(n: int) -> bytes:
        if left:
            data = bytes(left[:n])
            del left[:n]
        else:
            data = b""
        while len(data) < n:
            more = src.read(n - len(data))
            if not more:
                break
            data = more if not data else data + more
        if progress:
            progress(len(data))
        return data

    return read


def seal_stream(key: bytes, src: Source, write: SealedWriter,
                progress: Progress | None = None) -> int:
    """Encrypt all of ``src`` into STREAM chunks; return the plaintext length."""
    total = 0

    def counted(n: int) -> None:
        nonlocal total
        total += n
        if progress:
            progress(n)

    _pipeline(_seal_batch, Aead(key), _chunked(_reader(src, b"", counted), CHUNK), write)
    return total


def open_stream(
    key: bytes,
    src: Source,
    pending: bytes,
    write: Writer,
    progress: Progress | None = None,
    first_counter: int = 0,
) -> None:
    """Decrypt a whole STREAM payload from ``src`` (after ``pending``) in order."""
    _open_all(Aead(key), src, pending, write, progress, first_counter)


def _open_all(
    aead: Aead,
    src: Source,
    pending: bytes,
    write: Writer,
    progress: Progress | None,
    first_counter: int,
) -> None:
    batches = _chunked(_reader(src, pending, progress), ENC_CHUNK)
    _pipeline(_open_batch, aead, batches, write, first_counter)
