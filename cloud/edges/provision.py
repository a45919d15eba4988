"""Edge provisioning and revocation (`telemed-cloud edge add|revoke|list`).

Adding an edge creates its site if missing, its Ed25519 key pair (the cloud keeps only the public key),
its broker login and its config bundle, all or nothing: the database transaction commits last, and a
failure after the broker login was created removes it again (and the half-written bundle).
Revoking marks the edge revoked first (ingest refuses its signatures from the next transaction on, even
for messages already queued), then removes its broker login, so the broker refuses its next CONNECT.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from cloud.edges import store
from cloud.edges.broker import BrokerAdmin, BrokerAdminError
from cloud.edges.bundle import BundleError, BundleSpec, write_bundle
from cloud.edges.registry import EdgeRecord
from proto import keys, topics

log = logging.getLogger(__name__)


class ProvisioningError(Exception):
    """The edge could not be added or revoked; nothing was left half done unless the message says so."""


@dataclass(frozen=True)
class BrokerAddress:
    """How the edge reaches the broker (written into its bundle)."""

    host: str
    port: int
    tls: bool = False
    cafile: str = ""


@dataclass(frozen=True)
class ProvisionedEdge:
    record: EdgeRecord
    bundle: Path


def new_edge_id(site: str) -> str:
    """A fresh edge id under a site: `<site>-<6 hex>` (a valid topic segment and broker username)."""
    return f"{site[:57]}-{secrets.token_hex(3)}"


def add_edge(
    conn: psycopg.Connection[Any],
    broker: BrokerAdmin,
    *,
    site: str,
    name: str,
    out_dir: Path,
    cloud_public_key: str,
    address: BrokerAddress,
    edge_id: str | None = None,
    site_name: str | None = None,
    reserved_ids: frozenset[str] = frozenset(),
) -> ProvisionedEdge:
    """Register a new edge and write its bundle to `out_dir`; `conn` must not be inside a transaction."""
    try:
        topics.check_id(site, "site")
        edge_id = topics.check_id(edge_id or new_edge_id(site), "edge")
    except topics.TopicError as exc:
        raise ProvisioningError(str(exc)) from exc
    if edge_id in reserved_ids:
        raise ProvisioningError(f"{edge_id!r} is reserved (the cloud's own broker login)")
    key = keys.generate()
    password = secrets.token_urlsafe(32)
    spec = BundleSpec(edge_id=edge_id, site=site, name=name, mqtt_host=address.host, mqtt_port=address.port,
                      password=password, cloud_public_key=cloud_public_key, tls=address.tls, cafile=address.cafile)
    broker_user_created = False
    bundle_written = False
    try:
        with conn.transaction():
            if store.ensure_site(conn, site, site_name):
                log.info("edges.site_created site=%s", site)
            record = store.insert_edge(conn, edge_id=edge_id, site_id=site, name=name,
                                       public_key=keys.public_to_text(key.public_key()))
            broker.add_user(edge_id, password)
            broker_user_created = True
            bundle = write_bundle(out_dir, spec, key)
            bundle_written = True
    except (store.EdgeStoreError, BrokerAdminError, BundleError, psycopg.Error) as exc:
        _undo(broker, edge_id, out_dir, broker_user_created, bundle_written)
        raise ProvisioningError(f"edge {edge_id!r} was not added: {exc}") from exc
    log.info("edges.added edge=%s site=%s fingerprint=%s bundle=%s", edge_id, site,
             keys.fingerprint(key.public_key()), out_dir)
    return ProvisionedEdge(record, bundle)


def _undo(broker: BrokerAdmin, edge_id: str, out_dir: Path, broker_user: bool, bundle: bool) -> None:
    if bundle:
        shutil.rmtree(out_dir, ignore_errors=True)
    if broker_user:
        try:
            broker.remove_user(edge_id)
        except BrokerAdminError as exc:
            log.error("edges.undo_failed edge=%s step=broker_login error=%s", edge_id, exc)


def revoke_edge(conn: psycopg.Connection[Any], broker: BrokerAdmin, edge_id: str) -> EdgeRecord:
    """Revoke an edge (idempotent: re-running retries a broker step that failed)."""
    try:
        with conn.transaction():
            record = store.revoke_edge(conn, edge_id)
    except (store.EdgeStoreError, psycopg.Error) as exc:
        raise ProvisioningError(f"edge {edge_id!r} was not revoked: {exc}") from exc
    log.info("edges.revoked edge=%s site=%s", edge_id, record.site_id)
    try:
        broker.remove_user(edge_id)
    except BrokerAdminError as exc:
        raise ProvisioningError(
            f"edge {edge_id!r} is revoked (ingest refuses it) but its broker login could not be removed: {exc}; "
            "run the revoke again"
        ) from exc
    return record


def list_edges(conn: psycopg.Connection[Any], *, site: str | None = None) -> list[EdgeRecord]:
    return store.list_edges(conn, site_id=site)
