"""Model management as service functions the HTTP handlers call: create, list, show, copy, delete, resolve.

``create`` builds models (``library/create.py``), ``models`` reads them back (``library/models.py``)
and ``show`` presents them (list, show, copy, delete);
the create request's two shapes are parsed in ``library/request.py``. Everything here works on a
``Store`` and raises ``ollamalike.errors`` subclasses; nothing knows about HTTP.
"""

from __future__ import annotations

from ollamalike.library.create import create_model
from ollamalike.library.models import ResolvedModel, capabilities, resolve_model
from ollamalike.library.request import LOCAL, REMOTE, Access, CreateRequest
from ollamalike.library.show import copy_model, delete_model, list_models, show_model

__all__ = [
    "LOCAL",
    "REMOTE",
    "Access",
    "CreateRequest",
    "ResolvedModel",
    "capabilities",
    "copy_model",
    "create_model",
    "delete_model",
    "list_models",
    "resolve_model",
    "show_model",
]
