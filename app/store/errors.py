"""The store's error family: one base, typed subclasses, one readable sentence each.

Callers decide what to do from the type, never from the message text: the web layer maps each
type to an HTTP status and a translatable message in one table, the CLIs print the sentence.
"""


class StoreError(Exception):
    """Something the caller asked for cannot be done; the message is one readable sentence."""


class NotFound(StoreError):
    """No such desk, key, submission, reply or upload."""


class Invalid(StoreError):
    """The request is malformed: a bad token hash, key, name or role."""


class BadTokenHash(Invalid):
    """A mailbox token hash that is not 64 lowercase hex characters."""


class BadReplyRecipient(Invalid):
    """The witness's reply key does not parse, or is of another kind than the desk's keys."""


class Conflict(StoreError):
    """The request collides with what is stored (a name taken, an upload already used, a
    concurrent export): nothing was changed."""


class AlreadyUsed(Conflict):
    """A form token or an upload was already used by another submission."""


class NotStored(StoreError):
    """The write failed part-way (disk, database); everything it staged was discarded."""
