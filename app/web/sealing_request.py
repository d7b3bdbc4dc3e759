"""The request side of JavaScript-off sealing: stream a multipart body into a :class:`Sealer`.

app/web/sealing.py parses and seals; this module brings it the body. Nothing is reserved from
``Content-Length``: each received piece is charged to the budget (app/web/budget.py) before it
is sealed, and a sealing thread is taken only once 1 MiB has arrived, or the body ended (why:
a connection that sends headers and then nothing must hold no thread and no budget); after a
refusal or a stall, what waits is only read for its text, on a thread taken for that. A body
that stalls is cut off (app/web/pacing.py). A refusal after the form's own checks carries
``form``: the witness's text fields, from memory, so the route can answer with the form again
(never written, never logged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

import anyio
import anyio.to_thread
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.settings import Settings

from .budget import Ticket, disk_path
from .errors import BadForm, CrossSite, FileTooBig, Refusal, Stalled, WrongContentType
from .forms import cross_site
from .pacing import BodyStalled, paced_body
from .sealing import MAX_BOUNDARY_BYTES, Limits, Receipt, Sealer
from .state import Web
from .write_behind import WriteAbandoned, WriteBehind

# received bytes not yet sealed, at most, per request: as much as when each MiB was handed over
# and awaited (a queue of 8 MiB, as a tus PATCH has, sealed only 2-5 % faster, and sealing is
# the slower of the two jobs: under load every fast sender's queue would be full)
SEAL_AHEAD_MAX = 2 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024  # after a refusal, read at most this much more so the page shows
SALVAGE_BYTES = 256 * 1024  # after a budget refusal, text read beyond the testimony's cap
SALVAGE_SECONDS = 30


async def seal_request(web: Web, request: Request, *,
                       follow_up: Callable[[str], str] | None = None,
                       ahead: Callable[[bytes], str] | None = None) -> Receipt:
    """Seal the multipart body of ``request`` into a stored submission; its receipt.

    ``follow_up`` (a follow-up into a mailbox) and ``ahead`` (the codename a form token
    stands for, app/web/codename_ahead.py) go to the Sealer. Refusal on bad input, with
    ``form`` set when the form can be shown again; AlreadySent for a form already stored.
    """
    boundary = multipart_boundary(request)
    # more than any acceptable form: its text is still read (to show the form again with
    # it), its first file is refused before a byte of it is sealed
    oversize = declared_length(request) > largest_form(web.settings)
    feeder = _Feeder(web, boundary, follow_up=follow_up, ahead=ahead, oversize=oversize)
    body = paced_body(_received(request, feeder), web.pacing)
    ticket = web.budget.open()
    complete = False
    try:
        await feeder.feed(body, ticket)
        complete = True
        return await feeder.finish()
    except BodyStalled:  # the client went quiet: no drain, nothing kept, 408
        raise await _stalled(feeder) from None
    except BaseException as exc:
        refusal = await _refused(feeder, exc, oversize=oversize)
        if refusal is None:
            raise
        if not complete and not feeder.body_ended:
            await _drain(body)
        raise refusal from None
    finally:
        web.budget.close(ticket)


def largest_form(settings: Settings) -> int:
    """The largest body an acceptable form can have (every file full, every field full)."""
    return (settings.max_files * settings.max_file_bytes
            + 4 * (settings.max_text_chars + 20_000) + 1024 * 1024)


async def _stalled(feeder: _Feeder) -> Refusal:
    """The 408 for a stalled body, with the text that did arrive; the sealer rolled back."""
    await feeder.salvage(None)
    stalled = Stalled()
    stalled.form = feeder.kept()
    await feeder.abort(stalled)
    return stalled


async def _refused(feeder: _Feeder, exc: BaseException, *, oversize: bool) -> Refusal | None:
    """Roll back after ``exc``; the refusal to raise (None: re-raise ``exc`` as it is)."""
    kept = feeder.kept()
    await feeder.abort(exc)
    if not isinstance(exc, Refusal):
        return None
    if oversize and exc.keeps_form:  # whatever else went wrong, the size is the reason
        exc = FileTooBig()
    if exc.keeps_form:
        exc.form = kept
    return exc


def multipart_boundary(request: Request) -> bytes:
    """The multipart boundary of a same-site form post; Refusal (plain page) otherwise."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise WrongContentType()
    if len(boundary) > MAX_BOUNDARY_BYTES:  # the parser would raise: refuse it as bad input
        raise BadForm()
    if cross_site(dict(request.headers), request.headers.get("host")):
        raise CrossSite()
    return bytes(boundary)


def declared_length(request: Request) -> int:
    length_header = request.headers.get("content-length")
    try:
        declared = int(length_header) if length_header is not None else 0
    except ValueError:
        raise BadForm() from None
    if declared < 0:
        raise BadForm()
    return declared


class _Feeder:
    """Hands each received piece, charged to the budget, to the Sealer through a
    :class:`WriteBehind`: one sealing thread parses and seals every piece that arrives while it
    works, with no thread hop per piece, and the event loop goes on reading meanwhile."""

    def __init__(self, web: Web, boundary: bytes, *,
                 follow_up: Callable[[str], str] | None,
                 ahead: Callable[[bytes], str] | None, oversize: bool) -> None:
        self.web, self.boundary = web, boundary
        self.follow_up, self.ahead, self.oversize = follow_up, ahead, oversize
        self.sealer: Sealer | None = None
        self.unsealed: list[bytes] = []  # received, never sealed: read only for their text
        self.body_ended = False

    async def _sealer(self) -> Sealer:
        if self.sealer is None:
            web, settings = self.web, self.web.settings
            available = await anyio.to_thread.run_sync(web.desks)
            self.sealer = Sealer(
                boundary=self.boundary,
                store=web.store,
                desks=available,
                limits=Limits(settings.max_file_bytes, settings.max_files,
                              settings.max_text_chars, settings.min_free_bytes,
                              disk_path(settings)),
                tokens=web.tokens,
                kdf_slots=web.kdf_slots,
                follow_up=self.follow_up,
                oversize=self.oversize,
                ahead=self.ahead,
            )
        return self.sealer

    async def feed(self, body: AsyncIterator[bytes], ticket: Ticket) -> None:
        """Seal the whole body; raise the first refusal. After the budget refused a piece or
        the body stalled, what was received and not yet sealed is only read for its text
        (``salvage``), as are the text fields that follow a budget refusal."""
        async with anyio.create_task_group() as tg:  # ends only once no piece is being sealed
            writer = WriteBehind(tg, self._seal, partial(self.web.budget.landed, ticket),
                                 self.web.seal_limiter, ahead_max=SEAL_AHEAD_MAX)
            failure, refused = await self._pump(body, writer, ticket)
        if failure is not None:
            raise failure
        if refused is not None:
            await self.salvage(body)
            raise refused

    def _seal(self, piece: bytes) -> None:
        assert self.sealer is not None  # made before the first piece is queued
        self.sealer.feed(piece)

    async def _pump(self, body: AsyncIterator[bytes], writer: WriteBehind, ticket: Ticket,
                    ) -> tuple[Exception | None, Refusal | None]:
        """Charge and queue each piece: (the failure, the budget's refusal), returned and not
        raised, so that the task group does not wrap them."""
        try:
            refused = await self._queue(body, writer, ticket)
            if refused is None:
                await writer.drain()
                return None, None
            cut_short: tuple[Exception | None, Refusal | None] = (None, refused)
        except BodyStalled as exc:
            cut_short = (exc, None)
        except Exception as exc:
            writer.abandon()  # refused: nothing more of the body is sealed
            return exc, None
        except BaseException:  # cancelled: nothing more is sealed either
            writer.abandon()
            raise
        # the budget refused a piece, or the client went quiet: what waits is not sealed,
        # because sealing it could run the form's checks, the KDF and staging writes first,
        # and end in a refusal of its own, where the witness must get the 429 or 408 at once
        self.unsealed = writer.abandon() + self.unsealed
        try:
            await writer.drain()  # the piece being sealed is finished first
        except WriteAbandoned:
            return cut_short
        except Exception as exc:  # sealing failed, before or on the piece in hand: that wins
            self.unsealed = []
            return exc, None
        return cut_short

    async def _queue(self, body: AsyncIterator[bytes], writer: WriteBehind,
                     ticket: Ticket) -> Refusal | None:
        """Charge each piece and queue it for sealing; the budget's refusal, if any (the
        refused piece, never charged, is kept in ``unsealed``)."""
        async for chunk in body:
            await self._sealer()
            try:
                await self.web.budget.take(ticket, len(chunk),
                                           self.web.settings.budget_wait_seconds)
            except Refusal as exc:
                self.unsealed = [chunk]
                return exc
            await writer.put(chunk)
        return None

    async def finish(self) -> Receipt:
        sealer = await self._sealer()
        return await anyio.to_thread.run_sync(sealer.finish, limiter=self.web.seal_limiter)

    async def salvage(self, rest: AsyncIterator[bytes] | None) -> None:
        """After a refusal from outside the Sealer (budget, stall): read the text fields still
        to come, at most ``SALVAGE_BYTES`` more, uncharged and never sealed, so the form can
        be shown again with the witness's words.  Files are skipped; nothing is stored."""
        sealer = await self._sealer()
        pending, self.unsealed = b"".join(self.unsealed), []
        more = await anyio.to_thread.run_sync(sealer.salvage, pending)
        if rest is None or not more:
            return
        limit = SALVAGE_BYTES + 4 * self.web.settings.max_text_chars
        read = 0
        with anyio.move_on_after(SALVAGE_SECONDS):
            try:
                async for chunk in rest:
                    read += len(chunk)
                    more = await anyio.to_thread.run_sync(sealer.salvage, chunk)
                    if not more or read > limit:
                        return
            except BodyStalled:
                return

    def kept(self) -> dict[str, str]:
        return self.sealer.kept_form() if self.sealer is not None else {}

    async def abort(self, exc: BaseException) -> None:
        """Roll the sealer back, even when the request is being cancelled (no piece is being
        sealed any more: ``feed``'s task group has ended)."""
        self.unsealed = []
        if self.sealer is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.sealer.abort, exc)


async def _received(request: Request, feeder: _Feeder) -> AsyncIterator[bytes]:
    """The request body as it arrives, noting on ``feeder`` when it ended (why not
    ``request.stream()``: after a refusal, ``_drain`` must know whether anything is left,
    or it would wait for a disconnect that a waiting browser never sends)."""
    while not feeder.body_ended:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        if not message.get("more_body", False):
            feeder.body_ended = True
        if message.get("body"):
            yield message["body"]


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read (and drop) the rest of a refused upload, up to a bound, so the browser shows the
    error page instead of a reset connection. Through the same pacing as the body: a client
    that has gone quiet is not waited for again (a body that already stalled ends at once)."""
    drained = 0
    with anyio.move_on_after(30):
        try:
            async for chunk in body:
                drained += len(chunk)
                if drained >= DRAIN_LIMIT:
                    return
        except (BodyStalled, ClientDisconnect):
            return
