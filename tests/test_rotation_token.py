"""RotationToken: sent with PutSecretValue when Secrets Manager gives one and the runtime's botocore
knows it, left out (with a warning) by an older botocore (the artifact uses the runtime's boto3).

The older botocore is real botocore reading a service model without ``RotationToken``, as botocore
before 1.34.125 shipped it: through ``AWS_DATA_PATH``, which botocore reads before its own data.
"""

from __future__ import annotations

import gzip
import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import botocore
import pytest

from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from tests.support import create_secret, current, invoke, on_aws_event, secrets_client

pytestmark = pytest.mark.usefixtures("smtp_ca")

MODEL = Path(botocore.__file__).parent / "data" / "secretsmanager" / "2017-10-17" / "service-2.json.gz"


@contextmanager
def put_secret_value_params() -> Iterator[list[dict[str, Any]]]:
    """The parameters of every PutSecretValue request made inside the block."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))

    with on_aws_event("before-parameter-build.secrets-manager.PutSecretValue", record):
        yield seen


@pytest.fixture
def botocore_without_rotation_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    model = json.loads(gzip.decompress(MODEL.read_bytes()))
    shape = model["operations"]["PutSecretValue"]["input"]["shape"]
    del model["shapes"][shape]["members"]["RotationToken"]
    folder = tmp_path / "secretsmanager" / "2017-10-17"
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(model))
    shutil.copy(MODEL.with_name("endpoint-rule-set-1.json.gz"), folder)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    yield


def test_the_rotation_token_is_sent_with_the_new_version(iam_user: str, ses_smtp: SesSmtpStandIn) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotation_token = str(uuid.uuid4())
    token = begin_rotation(secrets_client(), arn)
    with put_secret_value_params() as puts:
        run_steps(invoke, arn, token, rotation_token=rotation_token)
    assert [p.get("RotationToken") for p in puts] == [rotation_token]
    assert "password" in current(arn)


def test_a_botocore_without_rotation_token_rotates_without_it_and_says_so(
    iam_user: str, ses_smtp: SesSmtpStandIn, botocore_without_rotation_token: None, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(secrets_client(), arn)
    with put_secret_value_params() as puts:
        run_steps(invoke, arn, token, rotation_token=str(uuid.uuid4()))
    assert len(puts) == 1 and "RotationToken" not in puts[0]
    assert "password" in current(arn)
    assert any("does not know PutSecretValue's RotationToken" in r.getMessage() for r in caplog.records)
