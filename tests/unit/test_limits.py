"""The resource limits are parsed once from the environment; bad values stop start-up."""

from __future__ import annotations

import subprocess

import pytest

from dicomweb_core.errors import ConfigError
from dicomweb_core.limits import Limits, load_limits
from tests.servers import DICOMWEB


def test_defaults_when_nothing_is_set() -> None:
    assert load_limits({}) == Limits()


def test_each_setting_is_read() -> None:
    limits = load_limits(
        {
            "MAX_REQUEST_HEADER_SIZE": "4096",
            "HEADER_TIMEOUT": "2.5",
            "MAX_FRAMES": "10",
            "DECODE_CONCURRENCY": "4",
        }
    )
    assert (
        limits.max_request_header_size,
        limits.header_timeout,
        limits.max_frames,
        limits.decode_concurrency,
    ) == (
        4096,
        2.5,
        10,
        4,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEADER_TIMEOUT", "abc"),
        ("HEADER_TIMEOUT", "nan"),
        ("SEND_IDLE_TIMEOUT", "inf"),
        ("MAX_FRAMES", "0"),
        ("MAX_REQUEST_HEADER_SIZE", "10"),
        ("DECODE_CONCURRENCY", "1.5"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_limits({name: value})


def test_serve_with_a_bad_limit_exits_2_with_one_line(tmp_path: object) -> None:
    proc = subprocess.run(
        [DICOMWEB, "serve", "--port", "1", "--data-dir", str(tmp_path)],
        env={"HEADER_TIMEOUT": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "dicomweb: configuration error: HEADER_TIMEOUT='soon' is not a number"
    ]
