"""The registry's audit trail: an append-only log of every promote, rollback and forced promotion, stored beside
the versions (local folder or S3). Each entry is written once with create-if-absent, carries who (user@host from
the environment), when, which alias moved from which version to which, why and the gate's decision, and is chained
to the previous entry by its SHA-256, so that editing or deleting an entry is detected by `verify`."""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from mllmcl.errors import StorageError
from mllmcl.release.storage import Store

GENESIS = "0" * 64
_MAX_RACES = 50


class AuditError(StorageError):
    """The audit log does not verify: an entry was edited, removed or inserted."""


def actor() -> str:
    """user@host of whoever runs the command (never credentials)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _digest(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class AuditLog:
    """`<model>/audit/<seq>.json`, numbered from 1; a sequence number is claimed by a conditional create."""

    def __init__(self, store: Store, model: str):
        self.store, self.prefix = store, f"{model}/audit/"

    def _key(self, seq: int) -> str:
        return f"{self.prefix}{seq:08d}.json"

    def _keys(self) -> list[str]:
        return sorted(k for k in self.store.list(self.prefix) if k.endswith(".json"))

    def append(
        self,
        action: str,
        alias: str,
        *,
        from_version: str | None,
        to_version: str | None,
        reason: str = "",
        forced: bool = False,
        gate_decision: str | None = None,
        by: str | None = None,
        voids: int | None = None,
    ) -> dict:
        """Record one alias move (or, with `voids`, that an earlier entry's move did not land); retried on a lost race
        for the next sequence number."""
        for _ in range(_MAX_RACES):
            keys = self._keys()
            last = json.loads(self.store.get_bytes(keys[-1])) if keys else None
            entry = {
                "seq": (last["seq"] + 1) if last else 1,
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "by": by or actor(),
                "action": action,
                "alias": alias,
                "from": from_version,
                "to": to_version,
                "reason": reason,
                "forced": forced,
                "gate_decision": gate_decision,
                "prev_sha256": last["sha256"] if last else GENESIS,
            }
            if voids is not None:
                entry["voids"] = voids
            entry["sha256"] = _digest(entry)
            if self.store.write_if(self._key(entry["seq"]), json.dumps(entry, indent=2).encode(), None):
                return entry
        raise AuditError(f"{self.store.uri}/{self.prefix}: could not claim a sequence number (too many writers)")

    def entries(self) -> list[dict]:
        """Every entry, oldest first, each verified against its hash and its predecessor."""
        out, prev = [], GENESIS
        for i, key in enumerate(self._keys(), start=1):
            where = f"{self.store.uri}/{key}"
            try:
                entry = json.loads(self.store.get_bytes(key))
            except json.JSONDecodeError as e:
                raise AuditError(
                    f"{where}: audit entry is not valid JSON ({e.msg}): the log was tampered with"
                ) from None
            if entry.get("seq") != i or key != self._key(i):
                raise AuditError(f"{where}: expected audit entry {i}: an entry was removed or inserted")
            if entry.get("sha256") != _digest(entry):
                raise AuditError(f"{where}: checksum mismatch: audit entry {i} was edited after it was written")
            if entry.get("prev_sha256") != prev:
                raise AuditError(f"{where}: does not chain to entry {i - 1}: the log was rewritten")
            prev = entry["sha256"]
            out.append(entry)
        return out

    def verify(self, aliases: dict[str, dict]) -> AuditReport:
        """`entries()`, then each alias against its anchors (every entry that moved it, named with its hash in the
        alias document): a truncated or rewritten log and an edited alias are each an AuditError naming the entry.
        The moves an alias landed must chain (each starts where the one before left it). A move that was logged but
        landed on no alias (a crash between the log and the alias flip) is listed in `unlanded`, not an error: the
        alias is where the last landed move left it."""
        entries = self.entries()
        by_seq = {e["seq"]: e for e in entries}
        voided = {e.get("voids") for e in entries if e["action"] == "void"}
        landed: set[int] = set()
        for alias, doc in sorted(aliases.items()):
            anchors = doc.get("anchors") or []
            latest = (doc.get("audit") or {}).get("seq")
            if latest is None or not anchors or anchors[-1][0] != latest:
                raise AuditError(f"alias '{alias}' names no audit entry: it was written outside mllmcl's promote")
            moves = []
            for seq, sha in anchors:
                entry = by_seq.get(seq)
                if entry is None:
                    raise AuditError(
                        f"alias '{alias}' is anchored at audit entry {seq}, which is missing: the log was cut"
                    )
                if entry["sha256"] != sha:
                    raise AuditError(f"audit entry {seq} is not the one alias '{alias}' names: the log was rewritten")
                if entry["alias"] != alias:
                    raise AuditError(f"alias '{alias}' names audit entry {seq}, which moved '{entry['alias']}'")
                moves.append(entry)
            if moves[-1]["to"] != doc.get("version"):
                raise AuditError(
                    f"alias '{alias}' points at {doc.get('version')} but its audit entry {latest} moved it to "
                    f"{moves[-1]['to']}: the alias was edited"
                )
            for before, after in zip(moves, moves[1:]):
                if after["from"] != before["to"]:
                    raise AuditError(
                        f"audit entry {after['seq']} moves '{alias}' from {after['from']}, but entry {before['seq']} "
                        f"left it at {before['to']}: a move is missing from the alias's anchors"
                    )
            landed.update(e["seq"] for e in moves)
        unlanded = [
            e
            for e in entries
            if e["action"] != "void" and e["seq"] not in landed and e["seq"] not in voided and e["alias"] in aliases
        ]
        return AuditReport(entries, unlanded)


@dataclass
class AuditReport:
    """A verified audit log: its entries, and the moves that were logged but never landed (crash between the log
    and the alias flip), which `registry history` names."""

    entries: list[dict]
    unlanded: list[dict]
