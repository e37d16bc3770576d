"""Deployment files in deploy/: the image, the Compose stack and the Kubernetes manifests.

No Docker engine or cluster is needed: these tests read the files. YAML is read with PyYAML
when it is installed, otherwise with the small block-YAML reader below, which covers the
subset the files in deploy/ are written in (and fails loudly on anything outside it). When
PyYAML is present, the two readers are also checked against each other.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCS = REPO / "docs" / "deploy.md"
APP_UID = 10001

try:
    import yaml as _pyyaml
except ImportError:  # not a dependency of the project: the mini reader takes over
    _pyyaml = None


# ---------------------------------------------------------------- a block-YAML subset reader


class MiniYamlError(ValueError):
    pass


_KEY = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|[^\s'"#\-\[\]{}][^#]*?|-[^\s#][^#]*?):(?:\s+|$)""")
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")


def _strip_comment(text: str) -> str:
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'" and (i == 0 or text[i - 1] in " [,{:"):
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _split_flow(inner: str) -> list[str]:
    items, buf, quote = [], "", ""
    for ch in inner:
        if quote:
            buf += ch
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            buf, quote = buf + ch, ch
        elif ch in "[]{}":
            raise MiniYamlError(f"nested flow collection in [{inner}]")
        elif ch == ",":
            items.append(buf.strip())
            buf = ""
        else:
            buf += ch
    if buf.strip():
        items.append(buf.strip())
    return items


def _scalar(raw: str) -> Any:
    text = _strip_comment(raw).strip()
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise MiniYamlError(f"unterminated string: {text}")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise MiniYamlError(f"unterminated string: {text}")
        return text[1:-1].replace("''", "'")
    if text.startswith("["):
        if not text.endswith("]"):
            raise MiniYamlError(f"flow sequence over several lines: {text}")
        return [_scalar(item) for item in _split_flow(text[1:-1])]
    if text == "{}":
        return {}
    if text.startswith(("{", "&", "*", "!", "%", "@", "`", ">", "|")):
        raise MiniYamlError(f"outside the supported YAML subset: {text}")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


class _Reader:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.i = 0

    def _significant(self) -> tuple[int, str] | None:
        """Skip blank and comment lines; (indent, text) of the next line, or None."""
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if "\t" in line[: len(line) - len(line.lstrip())]:
                raise MiniYamlError(f"line {self.i + 1}: tab in indentation")
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                return len(line) - len(line.lstrip(" ")), stripped
            self.i += 1
        return None

    def node(self, indent: int) -> Any:
        nxt = self._significant()
        if nxt is None or nxt[0] < indent:
            return None
        if nxt[1] == "-" or nxt[1].startswith("- "):
            return self.sequence(nxt[0])
        return self.mapping(nxt[0])

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while (nxt := self._significant()) is not None and nxt[0] == indent:
            text = nxt[1]
            m = _KEY.match(text)
            if m is None or text.startswith("- "):
                raise MiniYamlError(f"line {self.i + 1}: expected 'key: value', got {text!r}")
            key = _scalar(m.group("key"))
            if key in out:
                raise MiniYamlError(f"line {self.i + 1}: duplicate key {key!r}")
            rest = text[m.end() :]
            self.i += 1
            out[str(key)] = self.value(rest, indent)
        if nxt is not None and nxt[0] > indent:
            raise MiniYamlError(f"line {self.i + 1}: unexpected indentation")
        return out

    def value(self, rest: str, indent: int) -> Any:
        rest = rest.strip()
        if rest.startswith("|"):
            return self.block(rest, indent)
        if rest.startswith(">"):
            raise MiniYamlError(f"line {self.i}: folded scalars are outside the subset")
        rest = _strip_comment(rest)
        if rest:
            return _scalar(rest)
        nxt = self._significant()
        if nxt is None:
            return None
        if nxt[0] > indent:
            return self.node(nxt[0])
        if nxt[0] == indent and (nxt[1] == "-" or nxt[1].startswith("- ")):
            return self.sequence(indent)  # "key:" followed by an unindented sequence
        return None

    def sequence(self, indent: int) -> list[Any]:
        out: list[Any] = []
        while (nxt := self._significant()) is not None and nxt[0] == indent:
            text = nxt[1]
            if not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].lstrip(" ")
            if not rest or rest.startswith("#"):
                self.i += 1
                out.append(self.node(indent + 1))
            elif _KEY.match(rest):
                # "- key: value": a mapping whose keys sit where "key" starts.
                inner = indent + (len(text) - len(rest))
                self.lines[self.i] = " " * inner + rest
                out.append(self.mapping(inner))
            else:
                self.i += 1
                out.append(_scalar(rest))
        return out

    def block(self, header: str, indent: int) -> str:
        m = re.fullmatch(r"\|([-+]?)\s*(#.*)?", header.strip())
        if m is None:
            raise MiniYamlError(f"line {self.i}: unsupported block scalar header {header!r}")
        chomp = m.group(1)
        body: list[str] = []
        content_indent = None
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip():
                ind = len(line) - len(line.lstrip(" "))
                if content_indent is None:
                    content_indent = ind
                if ind < content_indent or ind <= indent:
                    break
                body.append(line[content_indent:])
            else:
                body.append("")
            self.i += 1
        trailing = 0
        while body and body[-1] == "":
            body.pop()
            trailing += 1
        text = "\n".join(body)
        if chomp == "-" or not body:
            return text
        if chomp == "+":
            return text + "\n" * (trailing + 1)
        return text + "\n"


def _mini_load_all(text: str) -> list[Any]:
    docs: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.rstrip() == "---":
            docs.append("\n".join(current))
            current = []
        elif line.startswith(("---", "...", "%")):
            raise MiniYamlError(f"outside the supported YAML subset: {line!r}")
        else:
            current.append(line)
    docs.append("\n".join(current))
    out = []
    for doc in docs:
        reader = _Reader(doc)
        if reader._significant() is None:
            continue
        out.append(reader.node(0))
        if reader._significant() is not None:
            raise MiniYamlError(f"line {reader.i + 1}: content after the document's end")
    return out


def load_all(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if _pyyaml is not None:
        return [d for d in _pyyaml.safe_load_all(text) if d is not None]
    return _mini_load_all(text)


def load_one(path: Path) -> dict[str, Any]:
    docs = load_all(path)
    assert len(docs) == 1, f"{path.name}: expected one YAML document, found {len(docs)}"
    assert isinstance(docs[0], dict), f"{path.name}: the document is not a mapping"
    return docs[0]


def _yaml_files() -> list[Path]:
    return sorted([COMPOSE, *K8S.glob("*.yaml"), *DEPLOY.glob(".*.yaml")])


def _make_configmap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_configmap", K8S / "make_configmap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- Dockerfile


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, args = buf.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def _args_defaults(instructions: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for word, args in instructions:
        if word == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            out[name.strip()] = value.strip().strip('"')
    return out


def _resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def test_dockerfile_is_multi_stage_on_python_3_11_slim_with_explicit_tags() -> None:
    instructions = _instructions()
    args = _args_defaults(instructions)
    stages = [_resolve(a, args).split()[0] for w, a in instructions if w == "FROM"]
    external = [s for s in stages if s not in {"build"}]
    assert len(stages) >= 2, "the image is built in (at least) a build and a runtime stage"
    for image in external:
        assert image.startswith("python:3.11-slim"), image
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag and tag != "latest", f"base image {image} needs an explicit tag"
    assert any(w == "COPY" and "--from=" in a for w, a in instructions), (
        "nothing copied out of the build stage"
    )


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    users = [a for w, a in _instructions() if w == "USER"]
    assert users, "no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == APP_UID, f"USER {users[-1]}: numeric, non-root {APP_UID}"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_dockerfile_exposes_both_listeners_and_checks_health_with_the_stdlib() -> None:
    instructions = dict(_instructions())  # last of each kind
    exposed = {p.split("/")[0] for w, a in _instructions() if w == "EXPOSE" for p in a.split()}
    assert {"2575", "8080"} <= exposed
    health = instructions.get("HEALTHCHECK", "")
    assert json.loads(health.split("CMD", 1)[1]) == ["charge-adapter", "health"], health
    assert "curl" not in health and "wget" not in health, "the slim image has neither"
    assert instructions.get("STOPSIGNAL") == "SIGTERM"
    assert json.loads(instructions["ENTRYPOINT"]) == ["charge-adapter"]
    assert json.loads(instructions["CMD"]) == ["serve"]


def test_dockerfile_environment_points_at_the_mappings_and_the_data_volume() -> None:
    instructions = _instructions()
    env: dict[str, str] = {}
    for word, args in instructions:
        if word == "ENV":
            for token in shlex.split(args):
                name, _, value = token.partition("=")
                env[name] = value
    assert env["ADAPTER_MAPPINGS_DIR"] == "/app/mappings"
    assert env["ADAPTER_DATABASE_URL"] == "sqlite:////var/lib/charge-adapter/adapter.db"
    assert env["ADAPTER_HOST"] == "0.0.0.0", "a container must listen beyond its loopback"
    assert any(
        w == "COPY" and a.split()[-1].rstrip("/") == "/app/mappings" for w, a in instructions
    )
    volumes = [a for w, a in instructions if w == "VOLUME"]
    assert any("/var/lib/charge-adapter" in v for v in volumes)


def test_dockerfile_build_context_is_allow_listed() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*", "exclude everything, then allow what the image needs"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for word, args in _instructions():
        if word == "COPY" and "--from=" not in args:
            copied |= {src.rstrip("/") for src in args.split()[:-1]}
    assert copied <= allowed, f"COPY sources not in the build context: {copied - allowed}"


# ---------------------------------------------------------------- YAML files


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.name)
def test_yaml_file_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs and all(isinstance(d, dict) for d in docs), path.name


@pytest.mark.skipif(
    _pyyaml is None,
    reason="PyYAML is not installed in this venv: the mini YAML reader is NOT cross-checked against it (add pyyaml to the test extras)",
)
@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.name)
def test_mini_reader_agrees_with_pyyaml(path: Path) -> None:
    assert _pyyaml is not None
    text = path.read_text(encoding="utf-8")
    assert _mini_load_all(text) == [d for d in _pyyaml.safe_load_all(text) if d is not None]


def test_no_image_uses_latest_or_no_tag() -> None:
    images = [s.get("image") for s in load_one(COMPOSE)["services"].values() if "image" in s]
    images += [
        c["image"]
        for c in load_one(K8S / "deployment.yaml")["spec"]["template"]["spec"]["containers"]
    ]
    assert images
    for image in images:
        ref = image.partition("@")[0]
        name, _, tag = ref.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), image


def test_compose_adapter_waits_for_a_healthy_postgres_15() -> None:
    services = load_one(COMPOSE)["services"]
    postgres, adapter = services["postgres"], services["adapter"]
    assert postgres["image"] == "postgres:15"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.split(":")[0] in load_one(COMPOSE)["volumes"] for v in postgres["volumes"])
    assert adapter["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert adapter["environment"]["ADAPTER_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in adapter["environment"]["ADAPTER_DATABASE_URL"]
    assert adapter["build"]["dockerfile"] == "deploy/Dockerfile"
    assert {p.rsplit(":", 1)[-1] for p in adapter["ports"]} == {"2575", "8080"}
    assert adapter["restart"] and postgres["restart"]


def test_kustomization_lists_every_manifest_except_the_secret_example() -> None:
    kustomization = load_one(K8S / "kustomization.yaml")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests - {"secret.example.yaml"}
    assert "secret.example.yaml" not in kustomization["resources"], (
        "placeholders would overwrite the real Secret"
    )


def _deployment() -> dict[str, Any]:
    return load_one(K8S / "deployment.yaml")


def _container() -> dict[str, Any]:
    containers = _deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_deployment_probes_point_at_healthz_and_readyz_on_the_http_port() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"mllp": 2575, "http": 8080}
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert live["path"] == "/healthz" and ports.get(live["port"], live["port"]) == 8080
    assert ready["path"] == "/readyz" and ports.get(ready["port"], ready["port"]) == 8080
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_deployment_is_hardened_and_sized_for_a_two_core_node() -> None:
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    container = _container()
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == APP_UID
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/app/mappings"]]["configMap"]["name"] == "charge-adapter-mappings"
    resources = container["resources"]
    assert resources["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert resources["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert pod["terminationGracePeriodSeconds"] == 30
    assert container["lifecycle"]["preStop"], "a preStop pause lets the Service stop routing first"


def test_deployment_environment_takes_the_database_from_the_secret() -> None:
    env = {e["name"]: e for e in _container()["env"]}
    secret_ref = env["ADAPTER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    secret = load_one(K8S / "secret.example.yaml")
    assert secret_ref["name"] == secret["metadata"]["name"]
    assert secret_ref["key"] in secret["stringData"]
    assert not secret_ref.get("optional", False), (
        "no database URL must stop the pod, not fall back to SQLite"
    )
    assert env["ADAPTER_MAPPINGS_DIR"]["value"] == "/app/mappings"
    assert env["ADAPTER_HOST"]["value"] == "0.0.0.0"
    assert env["ADAPTER_HTTP_PORT"]["value"] == "8080"
    assert env["ADAPTER_MLLP_PORT"]["value"] == "2575"


def test_service_exposes_mllp_and_http_on_the_pods_ports() -> None:
    service = load_one(K8S / "service.yaml")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {n: p["port"] for n, p in ports.items()} == {"mllp": 2575, "http": 8080}
    container_ports = {p["name"] for p in _container()["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_pod_disruption_budget_keeps_one_replica() -> None:
    pdb = load_one(K8S / "pdb.yaml")
    assert pdb["spec"]["minAvailable"] == 1
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_configmap_is_up_to_date_with_mappings() -> None:
    make = _make_configmap()
    configmap = K8S / "configmap-mappings.yaml"
    hint = "run: python3 deploy/k8s/make_configmap.py"
    assert configmap.read_text(encoding="utf-8") == make.render(), f"ConfigMap is stale: {hint}"
    deployment_text = (K8S / "deployment.yaml").read_text(encoding="utf-8")
    assert make.sync_deployment(deployment_text, make.digest()) == deployment_text, (
        f"the Deployment's mappings annotation is stale: {hint}"
    )
    data = load_one(configmap)["data"]
    tables = sorted((REPO / "mappings").glob("*.csv"))
    assert sorted(data) == [t.name for t in tables]
    for table in tables:
        assert data[table.name] == table.read_text(encoding="utf-8"), table.name


_REAL_LOOKING = re.compile(r"[A-Za-z0-9+/=_-]{24,}")


def test_secret_example_holds_placeholders_only() -> None:
    secret = load_one(K8S / "secret.example.yaml")
    assert "data" not in secret, "base64 `data:` would hide what the values are"
    text = (K8S / "secret.example.yaml").read_text(encoding="utf-8")
    assert "PLACEHOLDER" in text and "EXAMPLE" in text, "mark the file as an example"
    for key, value in secret["stringData"].items():
        host = re.search(r"://(?:[^@/]*@)?([^:/]+)", value)
        if host:
            assert host.group(1).endswith((".invalid", ".example", "example.com")), (key, value)
        password = re.search(r"://[^:/@]+:([^@]*)@", value)
        if password:
            assert password.group(1) == "REPLACE_ME", f"{key}: the password must be REPLACE_ME"
        if "Bearer" in value or "Basic" in value:
            assert value.rstrip().endswith("REPLACE_ME"), f"{key}: the token must be REPLACE_ME"
        assert not _REAL_LOOKING.search(value.replace("REPLACE_ME", "")), f"{key}: {value}"


def test_docs_cover_every_setting_and_the_build_command() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for name in (
        "ADAPTER_HOST",
        "ADAPTER_MLLP_PORT",
        "ADAPTER_HTTP_PORT",
        "ADAPTER_DATABASE_URL",
        "ADAPTER_MAPPINGS_DIR",
        "ADAPTER_SITE_TZ",
        "ADAPTER_FHIR_BASE_URL",
        "ADAPTER_FHIR_AUTH_HEADER",
        "ADAPTER_LOG_FORMAT",
        "ADAPTER_CONFIG_FILE",
    ):
        assert f"`{name}`" in docs, name
    assert re.search(r"docker build -f deploy/Dockerfile( -t \S+)? \.\n", docs), "build command"
    assert "SKIP LOCKED" in docs


# ---------------------------------------------------------------- the mini reader itself


def test_mini_reader_reads_the_subset_it_claims() -> None:
    text = """---
# comment
a: 1
b: "two"  # trailing comment
c: 'it''s'
d: [x, "y z", 3]
e: {}
f:
  - name: one
    value: "1"
  - plain
  -
    nested: true
g:
- unindented
h: |
  line one

  line three
i: |-
  no newline
j: ~
k: https://example.invalid/a#b
---
second: doc
"""
    assert _mini_load_all(text) == [
        {
            "a": 1,
            "b": "two",
            "c": "it's",
            "d": ["x", "y z", 3],
            "e": {},
            "f": [{"name": "one", "value": "1"}, "plain", {"nested": True}],
            "g": ["unindented"],
            "h": "line one\n\nline three\n",
            "i": "no newline",
            "j": None,
            "k": "https://example.invalid/a#b",
        },
        {"second": "doc"},
    ]


@pytest.mark.parametrize(
    "text", ["a: &anchor 1", "a: >\n  folded", "a: {b: 1}", "a:\n  b: 1\n c: 2"]
)
def test_mini_reader_refuses_what_it_does_not_support(text: str) -> None:
    with pytest.raises(MiniYamlError):
        _mini_load_all(text)
