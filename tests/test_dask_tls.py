"""The service on a Dask cluster over TLS, with certificates this test makes (``openssl`` CLI).

A CA, a certificate for the scheduler and workers, one for the API (a client), and a CA and certificate
that the cluster does not trust. The scheduler and two workers run with ``--tls-ca-file/--tls-cert/--tls-key``
on ``tls://127.0.0.1:PORT``; the service gets ``CNNRELAX_DASK_SCHEDULER=tls://...`` and
``CNNRELAX_DASK_TLS_CA_FILE/_CERT/_KEY``. Checked: the service is ready and a job equals the core's answer;
the scheduler refuses plain TCP and a client whose certificate another CA signed; a service without the
TLS settings cannot reach the scheduler and says so on ``/readyz``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dask_cluster import SMALL_JOB, DaskCluster, assert_equals_the_core

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command line is not installed")]



def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: ``(certificate, key)``."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_certificate(directory: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost, for servers and clients, signed by ``ca``: ``(certificate, key)``."""
    extensions = directory / f"{name}.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-days", "2", "-out", f"{name}.pem", "-extfile", extensions.name, cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    ca = make_ca(directory, "cluster-ca")
    node = make_certificate(directory, "node", ca)
    api = make_certificate(directory, "api", ca)
    stranger_ca = make_ca(directory, "stranger-ca")
    stranger = make_certificate(directory, "stranger", stranger_ca)
    return {"ca": ca[0], "node": node[0], "node_key": node[1], "api": api[0], "api_key": api[1],
            "stranger": stranger[0], "stranger_key": stranger[1]}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, certificates: dict[str, Path]) -> Iterator[DaskCluster]:
    cluster = DaskCluster(tmp_path_factory.mktemp("dask-tls"), workers=2,
                          tls=(certificates["ca"], certificates["node"], certificates["node_key"]))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_the_service_runs_jobs_on_a_tls_cluster(tls_cluster: DaskCluster, certificates: dict[str, Path],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_dask import DaskService

    assert tls_cluster.address.startswith("tls://")
    monkeypatch.setenv("CNNRELAX_DASK_TLS_CA_FILE", str(certificates["ca"]))
    monkeypatch.setenv("CNNRELAX_DASK_TLS_CERT", str(certificates["api"]))
    monkeypatch.setenv("CNNRELAX_DASK_TLS_KEY", str(certificates["api_key"]))
    service = DaskService(tmp_path, tls_cluster.address)
    try:
        ready = service.wait_until("/readyz", 200, 60).json()
        assert ready["checks"]["workers"] is True
        assert_equals_the_core(service.wait_job(service.submit(SMALL_JOB), 60))
    finally:
        service.stop()
    # The service's connection was TLS: the scheduler lists a client, and it speaks only TLS.
    from distributed import Client

    with Client(tls_cluster.address, timeout=10, set_as_default=False, security=tls_cluster.security()) as client:
        assert client.scheduler_info(n_workers=0)["address"].startswith("tls://")


def test_the_scheduler_refuses_plain_tcp_and_strangers(tls_cluster: DaskCluster,
                                                       certificates: dict[str, Path]) -> None:
    from distributed import Client
    from distributed.security import Security

    plain = tls_cluster.address.replace("tls://", "tcp://")
    with pytest.raises((OSError, TimeoutError)):
        Client(plain, timeout=3, set_as_default=False)
    stranger = Security(tls_ca_file=str(certificates["ca"]), tls_client_cert=str(certificates["stranger"]),
                        tls_client_key=str(certificates["stranger_key"]), require_encryption=True)
    with pytest.raises((OSError, TimeoutError)):
        Client(tls_cluster.address, timeout=3, set_as_default=False, security=stranger)


def test_a_service_without_the_tls_settings_is_not_ready(tls_cluster: DaskCluster, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from test_dask import DaskService

    for name in ("CNNRELAX_DASK_TLS_CA_FILE", "CNNRELAX_DASK_TLS_CERT", "CNNRELAX_DASK_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    service = DaskService(tmp_path, tls_cluster.address)
    try:
        problem = service.wait_until("/readyz", 503, 30).json()
        assert tls_cluster.address in problem["detail"], problem
    finally:
        service.stop()
