"""The web inspector: ``clew ui`` over any clew store (needs ``pip install 'clew[ui]'``).

``create_app(store)`` gives an ASGI application with server-rendered pages and a JSON
API under ``/api/v1``; ``serve(...)`` runs it with uvicorn, safely by default.
"""

from clew.web._app import create_app
from clew.web._serve import load_agent, serve

__all__ = ["create_app", "load_agent", "serve"]
