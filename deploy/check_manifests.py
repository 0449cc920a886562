#!/usr/bin/env python3
"""Cross-checks the deployment files against each other and against brisk.

Schema validation is kubernetes-validate's job and Dockerfile style is
hadolint's (scripts/check-deploy runs both); this checks what neither can
see: that probes hit brisk's real health endpoints, the names and ports the
files share agree, the HPA's metric is one brisk emits, and the shutdown
timings nest.

Usage: check_manifests.py REPO_ROOT   (needs PyYAML: the tools venv has it)
"""
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(sys.argv[1])
K8S = ROOT / "deploy" / "k8s"
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


docs = []
for f in sorted(K8S.glob("*.yaml")):
    docs += [(f.name, d) for d in yaml.safe_load_all(f.read_text()) if d]
by_kind = {}
for name, d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

dep = by_kind["Deployment"]["brisk"]
pod = dep["spec"]["template"]
container = next(c for c in pod["spec"]["containers"] if c["name"] == "brisk")
ports = {p["name"]: p["containerPort"] for p in container["ports"]}

# Probes: the v2 endpoints, on a declared port.
for probe, path in [("startupProbe", "/v2/health/live"),
                    ("readinessProbe", "/v2/health/ready"),
                    ("livenessProbe", "/v2/health/live")]:
    p = container.get(probe, {}).get("httpGet", {})
    check(p.get("path") == path, f"{probe} must GET {path}, has {p.get('path')}")
    check(p.get("port") in ports or p.get("port") in ports.values(),
          f"{probe} port {p.get('port')} is not a container port")

# Non-root, matching the image's user.
dockerfile = (ROOT / "Dockerfile").read_text()
final_stage = dockerfile.split("\nFROM ")[-1]
user = re.search(r"^USER\s+(\S+)", final_stage, re.M)
check(user is not None, "Dockerfile's final stage has no USER")
uid = user.group(1).split(":")[0] if user else ""
check(uid not in ("", "0", "root"), f"Dockerfile runs as {uid!r}")
sc = pod["spec"].get("securityContext", {})
check(sc.get("runAsNonRoot") is True, "brisk pod lacks runAsNonRoot: true")
check(str(sc.get("runAsUser")) == uid, f"pod runAsUser {sc.get('runAsUser')} != image USER {uid}")

# Dockerfile HEALTHCHECK: liveness, with a start period.
hc = re.search(r"^HEALTHCHECK\s+(.*?)\bCMD\b(.*)$", final_stage, re.M | re.S)
check(hc is not None, "Dockerfile has no HEALTHCHECK")
if hc:
    check("--start-period=" in hc.group(1), "HEALTHCHECK has no --start-period")
    check("/v2/health/live" in hc.group(2), "HEALTHCHECK does not probe /v2/health/live")
expose = re.search(r"^EXPOSE\s+(\d+)", final_stage, re.M)
env_port = re.search(r"BRISK_PORT=(\d+)", final_stage)
check(expose and env_port and expose.group(1) == env_port.group(1),
      "Dockerfile EXPOSE and BRISK_PORT differ")

# Config: mounted where BRISK_CONFIG points, listening on the container port.
env = {e["name"]: e.get("value") for e in container.get("env", [])}
cfg_path = pathlib.PurePosixPath(env.get("BRISK_CONFIG", ""))
mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
vols = {v["name"]: v for v in pod["spec"]["volumes"]}
cm_vol = next((n for n, v in vols.items() if "configMap" in v), None)
check(cm_vol and str(cfg_path.parent) == mounts.get(cm_vol),
      f"BRISK_CONFIG {cfg_path} is not in the ConfigMap volume's mount")
cm = by_kind["ConfigMap"][vols[cm_vol]["configMap"]["name"]] if cm_vol else {"data": {}}
toml_text = cm["data"].get(cfg_path.name, "")
config = tomllib.loads(toml_text)
check(config["server"]["port"] in ports.values(),
      f"config port {config['server']['port']} is not a container port")
check(config["server"]["host"] == "0.0.0.0", "config must bind 0.0.0.0 in a pod")

# Shutdown: preStop pause + brisk's drain fit in the grace period.
grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
drain = config["server"].get("shutdown_timeout_s", 30)
check(pre_stop + drain < grace,
      f"preStop {pre_stop} s + shutdown_timeout_s {drain} s must be < grace {grace} s")

# Shared cache: redis_url names the redis Service and its port.
redis_url = config.get("cache", {}).get("redis_url", "")
m = re.match(r"redis://([^:/]+):(\d+)", redis_url)
check(m is not None, f"config has no redis_url (got {redis_url!r})")
if m:
    svc = by_kind["Service"].get(m.group(1))
    check(svc is not None, f"redis_url host {m.group(1)} is not a Service")
    if svc:
        check(int(m.group(2)) in [p["port"] for p in svc["spec"]["ports"]],
              f"redis_url port {m.group(2)} is not a port of Service {m.group(1)}")

# Services select pods that exist and target declared ports.
templates = [d["spec"]["template"] for d in by_kind["Deployment"].values()]
for name, svc in by_kind["Service"].items():
    sel = svc["spec"]["selector"]
    match = [t for t in templates if sel.items() <= t["metadata"]["labels"].items()]
    check(match, f"Service {name} selects no Deployment's pods")
    for t in match:
        names = {p.get("name") for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            check(p["targetPort"] in names or isinstance(p["targetPort"], int),
                  f"Service {name} targetPort {p['targetPort']} is not a named port")

# HPA: scales the brisk Deployment on a metric brisk really emits.
hpa = by_kind["HorizontalPodAutoscaler"]["brisk"]
ref = hpa["spec"]["scaleTargetRef"]
check(ref["kind"] == "Deployment" and ref["name"] == "brisk", "HPA does not target Deployment brisk")
sources = "\n".join(p.read_text() for p in (ROOT / "crates").rglob("*.rs"))
pod_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
check(pod_metrics, "HPA has no brisk (Pods) metric")
for name in pod_metrics:
    check(name.startswith("brisk_") and f'"{name}"' in sources,
          f"HPA metric {name} is not emitted by brisk")

if errors:
    for e in errors:
        print(f"check_manifests: FAIL: {e}", file=sys.stderr)
    sys.exit(1)
print(f"check_manifests: ok ({len(docs)} resources, Dockerfile, config cross-checked)")
