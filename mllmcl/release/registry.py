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
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import StorageError
from mllmcl.release.audit import AuditLog, AuditReport, actor
from mllmcl.release.storage import Store, StoreError, open_store

MANIFEST = "manifest.json"
VERSION_ID = re.compile(r"v-[0-9a-f]{12}")  # what candidate_id makes: a content address, never a path
ALIAS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class RegistryError(StorageError):
    """A refused or impossible registry operation (unknown version, immutable version, bad alias)."""


class PromotionConflict(RegistryError):
    """Someone else changed the alias between our read and our write."""


ANY = object()  # `expected` when any current alias state will do (a rollback, a test)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_id(shas: dict[str, str]) -> str:
    """Content address of model files given their sha256s (keyed by path inside a version): equal models, equal ids."""
    h = hashlib.sha256()
    for rel in sorted(shas):
        h.update(f"{rel}\0{shas[rel]}\n".encode())
    return "v-" + h.hexdigest()[:12]


def candidate_id(files: dict[str, Path]) -> str:
    """Content address of a candidate's model files: equal models get equal ids."""
    return content_id({rel: sha256_file(path) for rel, path in files.items()})


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
    def publish(
        self, version: str, files: dict[str, Path], manifest: dict, *, expected: dict[str, str] | None = None
    ) -> dict:
        """Upload every file, then the manifest (with checksums) last, then verify what the store holds. `expected`:
        sha256s some files must have (what an evaluation judged): a file that changed since is refused before the
        version becomes visible."""
        if self.store.exists(self._vkey(version, MANIFEST)):
            raise RegistryError(f"version {version} already exists in {self.store.uri} (versions are immutable)")
        checksums = {}
        for rel, path in sorted(files.items()):
            data = Path(path).read_bytes()
            if expected and rel in expected and hashlib.sha256(data).hexdigest() != expected[rel]:
                raise RegistryError(
                    f"{path}: changed since it was evaluated (as {rel} of {version}); nothing was published: re-run "
                    "the evaluation and the gate"
                )
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

    def _move(self, alias: str, action: str, make_doc, *, expected=ANY, **audit) -> dict:
        """Move an alias in one compare-and-swap against ONE read of it: refused when it no longer points at
        `expected` (the version a gate judged against), and recorded first in the audit log, whose entry the new alias
        document names (its anchor, kept with every earlier one). A lost race or a failed write voids that entry; a
        crash between the two writes leaves an entry that `verify_audit` names as a move that never landed."""
        key = self._akey(alias)
        data, tag = self.store.read_with_tag(key)
        try:
            current = json.loads(data) if data else None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RegistryError(f"{self.store.uri}/{key}: alias is not valid JSON ({e})") from None
        in_force = current["version"] if current else None
        if expected is not ANY and in_force != expected:
            raise PromotionConflict(
                f"alias '{alias}' is {in_force or 'unset'}, not {expected or 'unset'} as judged: another promotion "
                "landed in between; nothing changed (re-run the gate against the new production)"
            )
        doc = make_doc(current)
        entry = self.audit.append(action, alias, from_version=in_force, to_version=doc["version"], **audit)
        anchor = [entry["seq"], entry["sha256"]]
        doc["audit"] = {"seq": entry["seq"], "sha256": entry["sha256"]}
        doc["anchors"] = [*((current or {}).get("anchors") or []), anchor]  # every move that landed here
        try:
            landed = self.store.write_if(key, json.dumps(doc, indent=2).encode(), tag)
        except Exception:
            landed = ((self.alias(alias) or {}).get("audit") or {}).get("seq") == entry["seq"]  # e.g. a lost reply
            if not landed:
                self._void(alias, entry["seq"], "the alias write failed")
                raise
        if not landed:
            self._void(alias, entry["seq"], "alias changed meanwhile")
            raise PromotionConflict(f"alias '{alias}' changed while promoting (another promotion won); nothing changed")
        return doc

    def _void(self, alias: str, seq: int, why: str) -> None:
        """Record that audit entry `seq`'s move did not land (best effort: a crash leaves it to verify to name)."""
        self.audit.append("void", alias, from_version=None, to_version=None, voids=seq, reason=why)

    def promote(
        self,
        version: str,
        alias: str = "production",
        *,
        reason: str = "",
        by: str | None = None,
        forced: bool = False,
        expected=ANY,
    ) -> dict:
        """Point `alias` at a complete version. `expected`: the version the alias must still hold (the production a
        gate judged against; None = unset); any other state is a PromotionConflict and nothing changes."""
        manifest = self.manifest(version)  # only complete versions

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

        return self._move(
            alias,
            "force-promote" if forced else "promote",
            make,
            expected=expected,
            reason=reason,
            forced=forced,
            by=by,
            gate_decision=(manifest.get("gate") or {}).get("decision"),
        )

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

        return self._move(alias, "rollback", make, reason=reason, by=by)

    def aliases(self) -> dict[str, dict]:
        """Every alias document, by name."""
        prefix = f"{self.model}/aliases/"
        names = [k[len(prefix) : -5] for k in self.store.list(prefix) if k.endswith(".json")]
        return {name: doc for name in names if ALIAS_NAME.fullmatch(name) and (doc := self.alias(name))}

    def verify_audit(self) -> AuditReport:
        """The audit log's entries, verified as a chain AND against the anchors each alias holds, so that deleting the
        newest entries or rewriting the whole log is detected as well as an edit (AuditError naming what); moves that
        were logged but never landed are listed in the report."""
        return self.audit.verify(self.aliases())

    # --- loading -----------------------------------------------------------------------------------------
    def verify(self, version: str) -> dict:
        """Read every file of a version back from the store and check it against the manifest (a RegistryError names
        the first object that differs); returns the manifest. Promotion calls this: production never points at a
        version that cannot be loaded."""
        manifest = self.manifest(version)
        for rel, meta in (manifest.get("files") or {}).items():
            try:
                data = self.store.get_bytes(self._vkey(version, rel))
            except StoreError as e:
                raise RegistryError(f"version {version} cannot be promoted: {e}") from None
            if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                raise RegistryError(
                    f"{self.store.uri}/{self._vkey(version, rel)}: checksum mismatch (corrupted object): version "
                    f"{version} cannot be promoted"
                )
        return manifest

    def materialize(self, ref: str, dest: Path) -> Path:
        """Download a version into dest/<version>/ and verify every file against the manifest. Every path stays inside
        that folder (a manifest naming `../x` is refused before anything is written), and every file lands by an
        atomic rename from a unique temporary name, so several processes can share one cache."""
        version = self.resolve(ref)
        manifest = self.manifest(version)
        out = (Path(dest) / version).resolve()
        targets = {}
        for rel in manifest.get("files") or {}:
            target = (out / rel).resolve()
            if not isinstance(rel, str) or not rel or not target.is_relative_to(out) or target == out:
                raise RegistryError(
                    f"{self.store.uri}/{self._vkey(version, MANIFEST)}: file {rel!r} escapes the version"
                )
            targets[rel] = target
        for rel, meta in manifest["files"].items():
            target = targets[rel]
            if target.is_file() and sha256_file(target) == meta["sha256"]:
                continue
            data = self.store.get_bytes(self._vkey(version, rel))
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise RegistryError(
                    f"{self.store.uri}/{self._vkey(version, rel)}: checksum mismatch "
                    f"(corrupted object; expected sha256 {meta['sha256'][:12]}...)"
                )
            atomic_write(target, data)
        return out


def atomic_write(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a unique temporary file beside it, then a rename (readers and other writers
    never see a partial file, and never delete one another's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
