"""The editor tool's own error: one line for a person, then a non-zero exit."""


class EditorError(Exception):
    """A problem the editor can fix (missing keyring, file exists, …); str() says how."""
