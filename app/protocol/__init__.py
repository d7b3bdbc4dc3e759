"""What the server, the editor tool and the browser must agree on, with one owner each.

Standard library only (the offline editor imports it): the shapes of ids and names
(``ids``), the one time Guwah keeps, the UTC day (``utcday``). The browser code is checked
against the same rules through JSON vectors generated from here.
"""
