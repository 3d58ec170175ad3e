"""The settings source hurt while pods keep coming (tests/sourcefaults.py tells each scenario):
a refused watch, a stalled path, the API server restarted, etcd stopped. A setting created at
the fault's onset is unknown to the webhook until it lists again; meanwhile it must not tell a
pod of that group "no setting" (admitted bare for its whole life, or a model refused by us):
such pods get an error that failurePolicy handles. Real kube-apiserver and etcd of their own (the
faults must not reach the other tests' cluster), a real TCP relay, the real webhook."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import control_plane, install
from tests.sourcefaults import SourceFaults
from tests.webhookproc import serving_certs

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SourceFaults]:
    tmp = tmp_path_factory.mktemp("source-faults")
    for folder in ("cluster", "install"):
        (tmp / folder).mkdir()
    with control_plane(tmp / "cluster") as cp, install(cp, tmp / "install") as inst:
        inst.webhook.stop()  # the install's own replica: each scenario runs one of its own
        cp.kubectl("delete", "mutatingwebhookconfiguration", "mlflow-webhook")
        yield SourceFaults(
            cp,
            tmp,
            serving_certs(tmp / "certs"),
            extra=["--shutdown-delay=0", "--status-namespace="],
            pods=100,
            stall=100,  # every worker notices within SILENCE (80 s) of its last bookmark
            settle=8,
            etcd_down=20,
            rbac=40,
        )


@pytest.mark.parametrize("scenario", ["rbac", "stall", "restart", "etcd"])
def test_no_pod_is_told_no_setting_while_the_settings_source_fails(
    faults: SourceFaults, scenario: str
) -> None:
    tally, figures = getattr(faults, scenario)()
    assert tally.counts["wrong"] == 0, tally.examples
    assert figures.recover is not None, "the change never reached pods"
    assert figures.new_group.counts["correct"] > 0, "the new group's pods never got its setting"
