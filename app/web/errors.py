"""Refusals: every "no" the witness site says is one translated sentence and a fitting status.

Messages are gettext message ids marked with ``N_`` so Babel extracts them; they are
translated when the error page is rendered, in the language of the request.

One error family for the web layer (:class:`Refusal` and its typed subclasses) and one table,
:data:`ERRORS`, from an error's type to its HTTP status and message key, for web errors and
the store's typed errors alike (:func:`refusal_for`). Why a table: a caller decides by type,
never by message text or class name, and the whole set of answers can be read in one place.
"""

from __future__ import annotations

from app.store import errors as store
from app.store.diskfull import is_disk_full


def N_(message: str) -> str:
    """Mark a string for translation without translating it now."""
    return message


# One place for every sentence, so tests and translators see the whole set.
MSG = {
    "not_found": N_("There is no page at this address."),
    "method": N_("This page cannot be used that way. Go back and use the links or the form."),
    "server": N_(
        "Something went wrong on our side. Nothing you sent was kept. Please try again later."
    ),
    "bad_form": N_(
        "The form arrived damaged or incomplete. Nothing was kept. Please send it again."
    ),
    "order": N_(
        "The form arrived in the wrong order: the desk must come before the files. "
        "Nothing was kept. Please use the form on this site."
    ),
    "content_type": N_("This address only accepts the submission form of this site."),
    "csrf": N_(
        "This form has expired or did not come from this site. Nothing was kept. "
        "Open the form again and send it from there."
    ),
    "cross_site": N_("This form was sent from another site. Nothing was kept."),
    "used": N_(
        "This form has already been sent once. Your earlier testimony was received. "
        "To add something, open a new form."
    ),
    "honeypot": N_(
        "The field marked “leave this empty” was filled in. Nothing was kept. "
        "Please empty it and send the form again."
    ),
    "no_desk": N_("Please choose who should read your testimony."),
    "unknown_desk": N_("That desk does not exist any more. Please choose another one."),
    "no_desks": N_("This service is not ready to receive testimony yet. Please try again later."),
    "empty": N_("Please write your testimony or attach at least one file."),
    "text_long": N_("The text is too long. Please shorten it or attach it as a file."),
    "field_long": N_("One of the short answers is too long. Please shorten it."),
    "bad_text": N_("The text arrived damaged. Please type it again."),
    "bad_choice": N_("Please choose one of the offered answers."),
    "file_big": N_("One of the files is too large. Nothing was kept. Please send smaller files."),
    "too_many_files": N_("Too many files at once. Nothing was kept. Please send fewer files."),
    "pending": N_(
        "Too many uploads are in progress right now. Nothing was kept. "
        "Please try again in a few minutes."
    ),
    "disk": N_(
        "The service is short of storage space. Nothing was kept. Please try again later."
    ),
    "busy": N_("The service is busy. Please try again in a minute."),
    "not_ciphertext": N_(
        "A part of your submission did not arrive in the encrypted form that the keys of "
        "this desk's editors can open. Nothing was kept. Please reload the page and send again."
    ),
    "stalled": N_(
        "The connection stopped sending for too long, so the server gave up. Nothing of this "
        "request was kept. Please send it again."
    ),
    "token_uploads": N_(
        "This form already has as many uploads as it may hold. Nothing more was kept. "
        "Open the form again to send more."
    ),
    "codename_words": N_("A codename has eight words. Please check what you typed."),
    "codename_word": N_("One of the words is not a codename word. Please check the spelling."),
    "codename_check": N_(
        "One of the words is wrong: the codename does not add up. Please compare each word "
        "(or number) with what you kept."
    ),
    "codename_number": N_(
        "A codename in numbers has eight groups of four digits, each below 7776. Please check "
        "what you typed."
    ),
    "reply_key": N_(
        "The reply key does not match this codename's mailbox. Please reload the page."
    ),
}


class Refusal(Exception):
    """A request Guwah will not carry out; ``message`` is an untranslated msgid.

    A subclass names one kind of refusal and takes its status and message from
    :data:`ERRORS`; ``Refusal(status, message)`` states both (the sealing parser's many
    field-level answers).
    """

    def __init__(self, status: int | None = None, message: str | None = None, *,
                 title: str | None = None, keeps_form: bool = True) -> None:
        default_status, key = _entry(type(self))
        self.status = default_status if status is None else status
        self.message = MSG[key] if message is None else message
        super().__init__(self.message)
        self.title = title
        # False when showing the form again would be wrong: a filled-in trap field (a robot),
        # or a form that was already received
        self.keeps_form = keeps_form
        # set by the JS-off form handler: the witness's text fields, held in memory only, to
        # show the form again (None: answer with the plain error page)
        self.form: dict[str, str] | None = None


class BadForm(Refusal):
    """The request body is damaged, incomplete or of the wrong shape."""


class WrongContentType(Refusal):
    """The body is not of the type this address accepts."""


class CrossSite(Refusal):
    """The form was posted from another site."""


class FormExpired(Refusal):
    """The form token is expired or forged."""


class AlreadySent(Refusal):
    """The form token was already spent on a stored submission.

    ``nonce`` is set for a JavaScript-off form whose codename came from its token
    (app/web/codename_ahead.py): the route answers with that submission's receipt again
    instead of this refusal. The form is never shown again: it was received.
    """

    def __init__(self, nonce: bytes | None = None) -> None:
        super().__init__(keeps_form=False)
        self.nonce = nonce


class FieldTooLong(Refusal):
    """A small form or JSON body grew beyond its bound."""


class FileTooBig(Refusal):
    """A file, or the declared body, is beyond what the site accepts."""


class Stalled(Refusal):
    """The client stopped sending for too long."""


class Busy(Refusal):
    """No KDF slot came free in time."""


class NoDesks(Refusal):
    """No desk has a key yet: nothing can be received."""


class UnknownDesk(Refusal):
    """The named desk does not exist or has no key."""


class DiskFull(Refusal):
    """The server is short of storage space."""


class ServerFault(Refusal):
    """Something failed on the server's side; nothing was kept."""


# error type -> (HTTP status, key in MSG); the most specific type in an error's MRO wins.
ERRORS: dict[type[Exception], tuple[int, str]] = {
    Refusal: (400, "bad_form"),
    BadForm: (400, "bad_form"),
    WrongContentType: (415, "content_type"),
    CrossSite: (403, "cross_site"),
    FormExpired: (403, "csrf"),
    AlreadySent: (409, "used"),
    FieldTooLong: (413, "field_long"),
    FileTooBig: (413, "file_big"),
    Stalled: (408, "stalled"),
    Busy: (503, "busy"),
    NoDesks: (503, "no_desks"),
    UnknownDesk: (422, "unknown_desk"),
    DiskFull: (507, "disk"),
    ServerFault: (500, "server"),
    # the store's typed errors, as the web answers them
    store.StoreError: (500, "server"),
    store.NotFound: (404, "not_found"),
    store.Invalid: (400, "bad_form"),
    store.BadTokenHash: (400, "bad_form"),
    store.BadReplyRecipient: (422, "reply_key"),
    # the only conflict a witness can meet is an upload or form already used; any other
    # (desk or key names) comes from an operator's command, never from this site
    store.Conflict: (500, "server"),
    store.AlreadyUsed: (409, "used"),
    store.NotStored: (500, "server"),
}


def _entry(kind: type[BaseException]) -> tuple[int, str]:
    for base in kind.__mro__:
        if base in ERRORS:
            return ERRORS[base]
    return ERRORS[ServerFault]


def refusal_for(exc: Exception) -> Refusal:
    """The refusal that answers ``exc``: a disk-full failure (of any type) is 507, else the
    table's entry for the most specific type of ``exc``."""
    if isinstance(exc, Refusal):
        return exc
    if is_disk_full(exc):
        return DiskFull()
    status, key = _entry(type(exc))
    return Refusal(status, MSG[key])
