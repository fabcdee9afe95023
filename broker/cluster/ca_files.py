"""Where the cluster CA lives: ``<data dir>/cluster-ca/`` (docs/cluster.md §6, "node credentials").

The cluster CA (:class:`~.link.ClusterCA`) signs only node-to-node link certificates; it is never the
agents' CA. Every broker process of a cluster shares the data directory (the agents' CA, the audit
key and the data keys are already the cluster's), so the cluster CA sits beside them:

- ``cluster-ca/ca.pem`` (0644) and ``cluster-ca/ca-key.pem`` (0600, PKCS#8 encrypted), written by
  :meth:`certs.authority.CertificateAuthority.save`: exclusive creation, so two processes starting at
  once never both mint a CA (the loser loads the winner's);
- the key's passphrase: ``BROKER_CLUSTER_CA_PASSPHRASE`` if set, else ``cluster-ca/ca-passphrase``
  (0600, created with 32 random bytes on first start, exclusive), as for the agents' CA.

Each process issues itself fresh credentials at every start (:meth:`~.link.ClusterCA.issue`, kept in
memory only): a server certificate for its link address and a client certificate naming its node id.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from certs import CAFilesExist, CertificateAuthority, read_or_create_passphrase

from .link import ClusterCA, NodeCredentials

__all__ = ["CLUSTER_CA_DIR", "load_cluster_ca", "node_credentials"]

CLUSTER_CA_DIR = "cluster-ca"
NAME = "ISP Remote Support cluster CA"


def load_cluster_ca(data_dir: Path, *, now: datetime | None = None) -> ClusterCA:
    directory = data_dir / CLUSTER_CA_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    passphrase = read_or_create_passphrase(
        env=os.environ,
        env_var="BROKER_CLUSTER_CA_PASSPHRASE",
        passphrase_file=None,
        default_file=directory / "ca-passphrase",
    )
    when = now or datetime.now(UTC)
    try:
        authority = CertificateAuthority.load_or_create(
            directory, passphrase=passphrase, common_name=NAME, now=when
        )
    except CAFilesExist:  # another process created it between our check and our write
        authority = CertificateAuthority.load_or_create(
            directory, passphrase=passphrase, common_name=NAME, now=when
        )
    return ClusterCA(authority)


def node_credentials(data_dir: Path, node: str, *, host: str) -> NodeCredentials:
    """This process's link credentials for ``host`` (its ``--cluster-listen`` address)."""
    return load_cluster_ca(data_dir).issue(node, host=host, now=datetime.now(UTC))
