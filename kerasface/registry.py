"""One registry type, one instance per kind: backbones, heads, losses and tasks are chosen by name.

The losses are kept by calling contract: ``MARGIN_HEADS`` (layers ``head(num_classes, **kw)``
called ``head(embeddings, labels) -> logits``), ``METRIC_LOSSES`` (``loss(labels, embeddings)``)
and ``LOGIT_LOSSES`` (``loss(labels, logits)`` over a margin head's logits); ``LOSSES`` reads
all three.

    @BACKBONES.register("densenet121")
    def densenet121(input_shape, **kw): ...

    BACKBONES.create("densenet121", input_shape=(64, 64, 3))
"""

from __future__ import annotations

import importlib
from typing import Callable


class Registry:
    """Named builders of one kind (timm's ``create_model`` over a dict of small functions).
    ``modules``: where a name not registered yet is looked for, such as ``"kerasface.train.{}"``
    (the module ``kerasface.train.<name>``, whose import registers it)."""

    modules: str | None = None

    def __init__(self, kind: str, modules: str | None = None):
        self.kind = kind
        self.modules = modules
        self._builders: dict[str, Callable] = {}

    def register(self, name: str | None = None):
        def decorator(builder: Callable) -> Callable:
            key = (name or builder.__name__).lower()
            if key in self._builders and self._builders[key] is not builder:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._builders[key] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable:
        key = name.lower()
        if key not in self._builders and self.modules:
            self._import(key)
        if key not in self._builders:
            raise KeyError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._builders[key]

    def _import(self, key: str) -> None:
        module = self.modules.format(key.replace("-", "_"))
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name is None or not module.startswith(error.name):
                raise

    def create(self, name: str, /, *args, **kwargs):
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name.lower() in self._builders


class Registries(Registry):
    """Several registries read as one; a name is registered in one of its parts."""

    def __init__(self, kind: str, *parts: Registry):
        self.kind = kind
        self.parts = parts

    @property
    def _builders(self) -> dict[str, Callable]:
        return {name: builder for part in self.parts for name, builder in part._builders.items()}

    def register(self, name: str | None = None):
        raise TypeError(f"register a {self.kind} in one of: {', '.join(part.kind for part in self.parts)}")


BACKBONES = Registry("backbone")
HEADS = Registry("head")
MARGIN_HEADS = Registry("margin head")
METRIC_LOSSES = Registry("metric loss")
LOGIT_LOSSES = Registry("logit loss")
LOSSES = Registries("loss", MARGIN_HEADS, METRIC_LOSSES, LOGIT_LOSSES)
TASKS = Registry("task", modules="kerasface.train.{}")
