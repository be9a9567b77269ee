"""Configuration is parsed once, at the edge, into frozen settings: every variable is read and
checked by ``load_settings``; a bad one stops the process at start-up with one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dicomweb_core.config import load_settings
from dicomweb_core.errors import ConfigError
from tests.servers import DICOMWEB, free_port


def test_qido_max_limit_has_a_default_and_is_parsed() -> None:
    assert load_settings({}).qido_max_limit == 10000
    assert load_settings({"QIDO_MAX_LIMIT": "50"}).qido_max_limit == 50


@pytest.mark.parametrize(
    ("raw", "message"), [("0", "QIDO_MAX_LIMIT=0 must be >= 1"), ("many", "QIDO_MAX_LIMIT='many' is not")]
)
def test_a_bad_qido_max_limit_is_a_configuration_error(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"QIDO_MAX_LIMIT": raw})


def test_a_bad_wado_setting_stops_the_service_at_start_up_with_one_line(tmp_path: Path) -> None:
    # The wado app itself loads after readiness (off the start-up path): its settings must not.
    env = {**os.environ, "QIDO_MAX_LIMIT": "0"}
    argv = [DICOMWEB, "wado-svc", "--host", "127.0.0.1", "--port", str(free_port())]
    argv += ["--data-dir", str(tmp_path / "data")]
    done = subprocess.run(argv, env=env, capture_output=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert lines == ["dicomweb: configuration error: QIDO_MAX_LIMIT=0 must be >= 1"]


def test_bucket_configuration_is_parsed_with_the_settings() -> None:
    env = {
        "BUCKET_HOST": "s3.example.org",
        "BUCKET_NAME": "dicom",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "HTTPS_PROXY": "http://proxy.example.org:3128",
    }
    bucket = load_settings(env).bucket
    assert bucket is not None
    assert (bucket.endpoint_url, bucket.name, bucket.via_proxy) == (
        "https://s3.example.org:443",
        "dicom",
        True,
    )
    assert load_settings({}).bucket is None  # no BUCKET_*: the file store
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is not set"):
        load_settings({**env, "AWS_SECRET_ACCESS_KEY": ""})


def test_a_bad_port_variable_stops_the_command_with_one_line() -> None:
    done = subprocess.run(
        [DICOMWEB, "serve"], env={**os.environ, "PORT": "eighty"}, capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        "dicomweb: configuration error: PORT='eighty' is not a port number"
    ]
