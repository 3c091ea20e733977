"""The Prometheus alert rules: valid (promtool check rules), behaving as their unit tests say
(promtool test rules), and naming only metrics the product exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from photobooth import metrics

RULES_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts_test.yml"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian/Ubuntu: apt-get install -y prometheus)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )


@needs_promtool
def test_the_rules_are_valid() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_the_spec_asks_for_is_there() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "PhotoboothIngestTimeouts",
        "PhotoboothQueueBacklog",
        "PhotoboothQueueBacklogGrowing",
        "PhotoboothNoLiveWorker",
        "PhotoboothProviderErrors",
        "PhotoboothMediaDiskFull",
    } <= names


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert {rule["alert"] for rule in alert_rules()} <= tested


# Our metric names in a PromQL expression (not label names such as `photobooth_media="yes"`).
OUR_METRIC = re.compile(r"\b((?:photobooth|django)_[a-z0-9_]+)\b(?!\s*(?:=|!=|=~|!~))")


def metric_names_in(expression: str) -> set[str]:
    return set(OUR_METRIC.findall(expression))


def test_metric_names_are_told_from_label_names() -> None:
    expression = 'rate(photobooth_jobs_finalized_total{photobooth_media = "yes"}[5m])'
    assert metric_names_in(expression) == {"photobooth_jobs_finalized_total"}


@pytest.mark.django_db
def test_the_rules_name_only_metrics_we_export() -> None:
    exported = metrics.exported_metric_names()
    for rule in alert_rules():
        # (node_exporter's and Prometheus's own `up` are not ours to check.)
        assert metric_names_in(str(rule["expr"])) - exported == set(), rule["alert"]
