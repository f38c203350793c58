"""Which model answers: the workspace's models/ or a registry version (an alias such as `production`, or a version
id), downloaded with every file's checksum verified. `mllmcl predict` and `mllmcl serve` load through here, so both
refuse a corrupted version the same way; the holder is what makes a hot reload one atomic swap."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mllmcl.config import Params
from mllmcl.paths import ProjectPaths

WORKSPACE = "workspace"


@dataclass(frozen=True)
class Served:
    """A loaded model and what it is: the registry version id ("workspace" for models/), its tasks and base."""

    model: object  # a RoutedModel, or anything with its predict()
    version: str
    tasks: list[str]
    base: dict
    ref: str = WORKSPACE  # what was asked for: "workspace", an alias or a version id
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def info(self) -> dict:
        """What GET /version shows."""
        return {
            "version": self.version,
            "ref": self.ref,
            "tasks": self.tasks,
            "base": self.base,
            "loaded_at": self.loaded_at,
        }


def resolve_ref(params: Params, root: Path, ref: str, registry=None) -> str | None:
    """The registry version id `ref` names now (None for the workspace); an alias never set, or an unknown version,
    is a RegistryError that says what to do. Pass `registry` to reuse one (a watcher polls it)."""
    if ref == WORKSPACE:
        return None
    from mllmcl.release.registry import ALIAS_NAME, VERSION_ID, Registry, RegistryError

    registry = registry or Registry.from_params(params, root=root)
    if ALIAS_NAME.fullmatch(ref) and not VERSION_ID.fullmatch(ref) and registry.alias(ref) is None:
        raise RegistryError(
            f"registry alias '{ref}' is not set in {registry.store.uri}: promote a version first "
            "(`mllmcl registry promote`), or use --model workspace"
        )
    return registry.resolve(ref)


def load_served(params: Params, root: Path, ref: str = WORKSPACE, *, version: str | None = None) -> Served:
    """Load the workspace model or a registry version (`version` pins the id `ref` was resolved to, so a reload loads
    exactly what it saw). Registry files are checked against the manifest's sha256s before loading."""
    from mllmcl.continual.inference import RoutedModel
    from mllmcl.model.loading import resolve_base

    paths = ProjectPaths(Path(root))
    trust = params.base.trust_remote_code
    base_info = {"build": params.base.build, "name_or_path": params.base.name_or_path}
    if ref == WORKSPACE:
        model = RoutedModel(
            resolve_base(params.base, paths.base),
            paths.experts,
            paths.router,
            trust_remote_code=trust,
            routing=params.routing,
        )
        return Served(model, WORKSPACE, list(model.experts), base_info, ref)
    from mllmcl.release.registry import Registry

    registry = Registry.from_params(params, root=paths.root)
    version = version or resolve_ref(params, paths.root, ref, registry)
    model_dir = registry.materialize(version, paths.registry_cache)
    manifest = registry.manifest(version)
    if (model_dir / "base").is_dir():  # the version carries its base: checked with its other files
        base = str(model_dir / "base")
    else:  # a base from params: it must be the one the version was gated on
        from mllmcl.model.loading import base_identity
        from mllmcl.release.evidence import require_same_base

        base = resolve_base(params.base, paths.base)
        current = {**base_identity(params.base, paths.base), "name_or_path": base}
        require_same_base(manifest.get("base"), current, what=f"version {version}")
    model = RoutedModel.from_dir(model_dir, base_path=base, trust_remote_code=trust, routing=gated_routing(manifest))
    tasks = list(manifest.get("tasks") or model.experts)
    return Served(model, version, tasks, manifest.get("base") or base_info, ref)


def gated_routing(manifest: dict):
    """The routing thresholds a version was evaluated and gated with (its evaluation's `judged` record), so it answers
    as it was judged; None for a version published before `routing:` existed (its router folder keeps them)."""
    from pydantic import ValidationError

    from mllmcl.config import RoutingConfig
    from mllmcl.errors import ModelLoadError
    from mllmcl.release.evidence import recorded as judged_record

    judged = judged_record(manifest.get("eval")) if isinstance(manifest, dict) else None
    recorded = (judged or {}).get("routing")
    if recorded is None:
        return None
    try:
        return RoutingConfig(**recorded)
    except (TypeError, ValidationError) as e:
        where = f"version {manifest.get('version')}"
        raise ModelLoadError(f"{where}: unreadable routing settings in its manifest ({e})") from None


class ModelHolder:
    """The model being served now. `current` is read once per batch, so a batch finishes on the model it started
    with; `swap` replaces it in one assignment (the old one is freed when its last batch ends)."""

    def __init__(self, served: Served):
        self._served = served
        self._lock = threading.Lock()

    @property
    def current(self) -> Served:
        return self._served

    def swap(self, served: Served) -> Served:
        """Serve `served` from the next batch on; returns the one it replaces."""
        with self._lock:
            old, self._served = self._served, served
        return old
