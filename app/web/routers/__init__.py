"""The witness site's routes, one APIRouter per area; ``create_app`` includes them all.

Every route takes the shared state through the ``WebDep`` dependency (app/web/state.py).
"""
