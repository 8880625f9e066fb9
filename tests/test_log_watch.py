"""The log watch (tests/conftest.py `no_secrets_in_logs`) fails a test whose code logs or prints a secret."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, Sensitive

pytest_plugins = ["pytester"]

LEAKY_TESTS = """
import logging
import sys

from aws_lambda_powertools import Logger

from bridge_dev.events import DEMO_API_KEY

logger = Logger()


def test_powertools_line_with_a_key():
    logger.info("delivery", extra={"credential": DEMO_API_KEY})


def test_printed_email(sensitive):
    sensitive.scan('{"traits": {"email": "ada@example.com"}}')
    print("hello ada@example.com")


def test_basic_header_in_a_warning(sensitive):
    sensitive.add("sbk_issued_in_the_test_0001")
    logging.getLogger("botocore").warning("sent Basic c2JrX2lzc3VlZF9pbl90aGVfdGVzdF8wMDAxOg==")


def test_exception_text(sensitive):
    sensitive.add("+14155550100")
    try:
        raise ValueError("bad phone +14155550100")
    except ValueError:
        logger.exception("failed")


def test_clean_logs(sensitive):
    sensitive.add("ada@example.com")
    logger.info("delivery queued", extra={"accepted": 1})
    print("accepted 1")


def test_library_debug_output_is_not_what_lambda_writes(sensitive):
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    logging.getLogger("botocore").debug("body: %s", DEMO_API_KEY)
"""


def test_every_leak_fails_its_test_and_clean_tests_pass(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    capsys.readouterr()  # the inner session's report quotes the leaks: it is what we check, not a leak
    caplog.clear()
    result.assert_outcomes(passed=6, errors=4)
    errors = {m.group(1) for line in result.outlines if (m := re.match(r"ERROR test_leaky.py::(\w+)", line))}
    assert errors == {
        "test_powertools_line_with_a_key",
        "test_printed_email",
        "test_basic_header_in_a_warning",
        "test_exception_text",
    }


def test_values_too_short_to_look_for_are_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        Sensitive().add("en")
