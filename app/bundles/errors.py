"""The one error of the bundle layer: ``str()`` is a sentence an editor or operator can act on."""


class BundleError(Exception):
    """The bundle is invalid, damaged, replayed or signed by a key we do not trust."""
