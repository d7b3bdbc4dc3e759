"""Refusals: every "no" the witness site says is one translated sentence and a fitting status.

Messages are gettext message ids marked with ``N_`` so Babel extracts them; they are
translated when the error page is rendered, in the language of the request.
"""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark a string for translation without translating it now."""
    return message


class Refusal(Exception):
    """A request Guwah will not carry out; ``message`` is an untranslated msgid."""

    def __init__(self, status: int, message: str, *, title: str | None = None,
                 keeps_form: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title
        # False when showing the form again would be wrong: a filled-in trap field (a robot),
        # or a form that was already received
        self.keeps_form = keeps_form
        # set by the JS-off form handler: the witness's text fields, held in memory only, to
        # show the form again (None: answer with the plain error page)
        self.form: dict[str, str] | None = None


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
}
