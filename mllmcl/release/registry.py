"""The model registry: immutable versions plus aliases, on a local folder or S3.

    <model>/versions/<id>/<files...>        the candidate's experts, router, base (when built locally), metrics
    <model>/versions/<id>/manifest.json     written LAST: tasks, base, params, lineage, eval, gate, sha256s
    <model>/aliases/<alias>.json            {"version", "history": [...earlier versions], "updated_at", ...}

A version without a manifest is an interrupted upload: it is invisible to list/resolve and never promoted.
An alias changes in one conditional write, so a crash leaves it as it was and two concurrent promotes
cannot both win."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import StorageError
from mllmcl.release.audit import AuditLog, actor
from mllmcl.release.storage import Store, StoreError, open_store

MANIFEST = "manifest.json"
VERSION_ID = re.compile(r"v-[0-9a-f]{12}")  # what candidate_id makes: a content address, never a path
ALIAS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class RegistryError(StorageError):
    """A refused or impossible registry operation (unknown version, immutable version, bad alias)."""


class PromotionConflict(RegistryError):
    """Someone else changed the alias between our read and our write."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def candidate_id(files: dict[str, Path]) -> str:
    """Content address of a candidate's model files: equal models get equal ids."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{sha256_file(files[rel])}\n".encode())
    return "v-" + h.hexdigest()[:12]


def _now() -> str:
    """UTC with microseconds: versions are listed in creation order."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Registry:
    """Versions and aliases of one model in a store: a version is immutable once its manifest is written, an alias
    changes only by a conditional write."""

    store: Store
    model: str = "mllmcl"

    @classmethod
    def from_params(cls, params: Params, root: Path = Path(".")) -> Registry:
        """The registry `params.registry` names; a relative folder is relative to the project root."""
        s3 = params.storage.s3
        store = open_store(params.registry.uri, root=root, endpoint_url=s3.endpoint_url, region=s3.region)
        return cls(store, params.registry.model)

    # --- keys ---------------------------------------------------------------------------------------------
    def _vkey(self, version: str, rel: str = "") -> str:
        if not VERSION_ID.fullmatch(version):
            raise RegistryError(f"{version!r} is not a version id (v- and 12 hex digits, as `registry list` shows)")
        return f"{self.model}/versions/{version}/{rel}".rstrip("/")

    def _akey(self, alias: str) -> str:
        if not ALIAS_NAME.fullmatch(alias):
            raise RegistryError(f"{alias!r} is not an alias name (1-32 lowercase letters, digits, '_' or '-')")
        return f"{self.model}/aliases/{alias}.json"

    @property
    def audit(self) -> AuditLog:
        """The append-only log of alias moves (mllmcl.release.audit)."""
        return AuditLog(self.store, self.model)

    # --- versions ----------------------------------------------------------------------------------------
    def publish(self, version: str, files: dict[str, Path], manifest: dict) -> dict:
        """Upload every file, then the manifest (with checksums) last, then verify what the store holds."""
        if self.store.exists(self._vkey(version, MANIFEST)):
            raise RegistryError(f"version {version} already exists in {self.store.uri} (versions are immutable)")
        checksums = {}
        for rel, path in sorted(files.items()):
            data = Path(path).read_bytes()
            self.store.put_bytes(self._vkey(version, rel), data)
            checksums[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        manifest = {**manifest, "version": version, "model": self.model, "created_at": _now(), "files": checksums}
        for rel, meta in checksums.items():  # verify the uploads before the version becomes visible
            if hashlib.sha256(self.store.get_bytes(self._vkey(version, rel))).hexdigest() != meta["sha256"]:
                raise RegistryError(f"{self.store.uri}/{self._vkey(version, rel)}: checksum mismatch after upload")
        if not self.store.write_if(self._vkey(version, MANIFEST), json.dumps(manifest, indent=2).encode(), None):
            raise RegistryError(f"version {version} was published concurrently by someone else")
        return manifest

    def manifest(self, version: str) -> dict:
        """A complete version's manifest; an unknown, incomplete or unreadable one is a RegistryError naming it."""
        key = self._vkey(version, MANIFEST)
        try:
            data = self.store.get_bytes(key)
        except StoreError:
            raise RegistryError(f"no complete version '{version}' in {self.store.uri}") from None
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RegistryError(f"{self.store.uri}/{key}: manifest is not valid JSON ({e})") from None

    def read_file(self, version: str, rel: str) -> bytes | None:
        """One file of a version as stored (None when the version has no such file)."""
        try:
            return self.store.get_bytes(self._vkey(version, rel))
        except StoreError:
            return None

    def list_versions(self) -> list[dict]:
        """Complete versions (manifest present), oldest first."""
        keys = self.store.list(f"{self.model}/versions/")
        versions = sorted({k.split("/")[2] for k in keys if k.endswith("/" + MANIFEST)})
        versions = [v for v in versions if VERSION_ID.fullmatch(v)]
        out = [self.manifest(v) for v in versions]
        return sorted(out, key=lambda m: (m.get("created_at", ""), m["version"]))

    # --- aliases -----------------------------------------------------------------------------------------
    def alias(self, alias: str = "production") -> dict | None:
        """The alias document, or None when the alias was never set."""
        key = self._akey(alias)
        data, _ = self.store.read_with_tag(key)
        try:
            return json.loads(data) if data else None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RegistryError(f"{self.store.uri}/{key}: alias is not valid JSON ({e})") from None

    def resolve(self, ref: str) -> str:
        """An alias name or a version id -> a complete version id."""
        doc = self.alias(ref) if ALIAS_NAME.fullmatch(ref) else None
        version = doc["version"] if doc else ref
        self.manifest(version)  # raises when incomplete or unknown
        return version

    def _flip(self, alias: str, make_doc) -> dict:
        data, tag = self.store.read_with_tag(self._akey(alias))
        current = json.loads(data) if data else None
        doc = make_doc(current)
        if not self.store.write_if(self._akey(alias), json.dumps(doc, indent=2).encode(), tag):
            raise PromotionConflict(f"alias '{alias}' changed while promoting (another promotion won); nothing changed")
        return doc

    def promote(
        self, version: str, alias: str = "production", *, reason: str = "", by: str | None = None, forced: bool = False
    ) -> dict:
        """Point `alias` at a complete version (one conditional write), then record the move in the audit log."""
        manifest = self.manifest(version)  # only complete versions
        before = self.alias(alias)

        def make(current):
            history = (current.get("history", []) + [current["version"]]) if current else []
            return {
                "alias": alias,
                "version": version,
                "history": history,
                "updated_at": _now(),
                "reason": reason,
                "by": by or actor(),
                "action": "promote",
            }

        doc = self._flip(alias, make)
        self.audit.append(
            "force-promote" if forced else "promote",
            alias,
            from_version=(before or {}).get("version"),
            to_version=version,
            reason=reason,
            forced=forced,
            by=by,
            gate_decision=(manifest.get("gate") or {}).get("decision"),
        )
        return doc

    def rollback(self, alias: str = "production", *, reason: str = "", by: str | None = None) -> dict:
        """Point `alias` back at the version it held before, and record the move in the audit log."""

        def make(current):
            if not current or not current.get("history"):
                raise RegistryError(f"alias '{alias}' has no earlier version to roll back to")
            return {
                "alias": alias,
                "version": current["history"][-1],
                "history": current["history"][:-1],
                "updated_at": _now(),
                "reason": reason,
                "by": by or actor(),
                "action": "rollback",
                "rolled_back_from": current["version"],
            }

        doc = self._flip(alias, make)
        self.audit.append(
            "rollback", alias, from_version=doc["rolled_back_from"], to_version=doc["version"], reason=reason, by=by
        )
        return doc

    # --- loading -----------------------------------------------------------------------------------------
    def materialize(self, ref: str, dest: Path) -> Path:
        """Download a version into dest/<version>/ and verify every file against the manifest."""
        version = self.resolve(ref)
        manifest = self.manifest(version)
        out = Path(dest) / version
        for rel, meta in manifest["files"].items():
            target = out / rel
            if not (target.exists() and sha256_file(target) == meta["sha256"]):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.store.get_bytes(self._vkey(version, rel)))
            if sha256_file(target) != meta["sha256"]:
                target.unlink()
                raise RegistryError(
                    f"{self.store.uri}/{self._vkey(version, rel)}: checksum mismatch "
                    f"(corrupted object; expected sha256 {meta['sha256'][:12]}...)"
                )
        return out
