"""What the server, the editor tool and the browser must agree on, with one owner each.

- ``ids``: the shapes of ids and names (patterns, always ``fullmatch``);
- ``utcday``: the one time Guwah keeps, the UTC day;
- ``testimony``: the testimony document (docs/formats.md §5), one validator to build and read;
- ``editorkey``: the editor public key file (``editor.pub``);
- ``followup``: which submission of a mailbox a follow-up links to.

Only the standard library and ``app.crypto`` (the offline editor imports this package too,
and nothing here may pull in the server). The browser code is checked against the same rules
through JSON vectors generated from here (tests/make_protocol_vectors.py).
"""
