#!/usr/bin/env bash
# Offline validation of deploy/: the Kubernetes manifests, the Helm chart and the
# Dockerfiles. Nothing here needs a cluster, Docker or the network.
#
#   tests/deploy/validate.sh --engine PATH --control PATH --castorctl PATH
#                            --csi PATH [--build-dir DIR] [--npm-dir DIR]
#
# 1. renders kubectl kustomize deploy/kubernetes and deploy/kubernetes/etcd, and
#    helm template deploy/helm/castor with the defaults, with control.store=etcd and with
#    non-default values; helm lint of the chart; helm template must refuse a bad store;
# 2. validate.cjs: every object against Kubernetes' schemas (kubernetes-models) and for
#    fields outside them; the kinds, names and namespaces; kustomize and helm render
#    the same objects; every flag given to castor-engine, castor-control, castor-csi is
#    in that binary's --help and etcd's in etcd --help; listen ports, Services, probes, CSI sockets and kubelet
#    paths agree; the sidecars' RBAC; the Dockerfiles build the targets they copy from
#    where the build tree puts them, install every runtime library the binaries link to,
#    and run them as ENTRYPOINT.
# The tools come from build/npm (tests/deploy/setup-npm.sh, run by scripts/setup.sh
# test); a missing tool is a failure, never a skip.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
npm_dir="$root/build/npm"
build_dir=""
engine="" control="" castorctl="" csi=""
while (($#)); do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --control) control="$2"; shift 2 ;;
    --castorctl) castorctl="$2"; shift 2 ;;
    --csi) csi="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --npm-dir) npm_dir="$2"; shift 2 ;;
    *) echo "validate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$engine" || -z "$control" || -z "$castorctl" || -z "$csi" ]]; then
  echo "usage: $0 --engine PATH --control PATH --castorctl PATH --csi PATH [--build-dir DIR] [--npm-dir DIR]" >&2
  exit 2
fi
# The build tree the binaries are in: the directory above src/.
if [[ -z "$build_dir" ]]; then build_dir="$(cd "$(dirname "$engine")/../.." && pwd)"; fi

fail() { echo "FAIL $*"; echo "0 passed, 1 failed"; exit 1; }
kubectl="$npm_dir/bin/kubectl"
helm="$npm_dir/bin/helm"
for t in "$kubectl" "$helm"; do
  [[ -x "$t" ]] || fail "$t is missing (tests/deploy/setup-npm.sh installs it; scripts/setup.sh test runs that)"
done
[[ -d "$npm_dir/node_modules/kubernetes-models" && -d "$npm_dir/node_modules/yaml" ]] ||
  fail "$npm_dir/node_modules lacks kubernetes-models or yaml (tests/deploy/setup-npm.sh installs them)"
command -v node >/dev/null || fail "node is missing (scripts/setup.sh installs nodejs)"
etcd="$(command -v etcd || true)"
[[ -n "$etcd" ]] || fail "etcd is missing (scripts/setup.sh installs etcd-server)"
for t in readelf ldd dpkg-query apt-cache; do
  command -v "$t" >/dev/null || fail "$t is missing (scripts/setup.sh installs build-essential; Debian has the rest)"
done

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# helm keeps its caches and configuration here, not in ~.
export HELM_CACHE_HOME="$out/helm/cache" HELM_CONFIG_HOME="$out/helm/config" HELM_DATA_HOME="$out/helm/data"
chart="$root/deploy/helm/castor"

echo "rendering with $("$kubectl" version --client 2>/dev/null | head -1) and helm $("$helm" version --short)"
"$kubectl" kustomize "$root/deploy/kubernetes" >"$out/kustomize.yaml" || fail "kubectl kustomize deploy/kubernetes"
"$kubectl" kustomize "$root/deploy/kubernetes/etcd" >"$out/kustomize-etcd.yaml" ||
  fail "kubectl kustomize deploy/kubernetes/etcd"
custom=(--set control.store=etcd --set namespace=storage --set images.tag=dev
        --set 'engine.disks={/mnt/castor,/srv/castor-disks}' --set 'engine.extraArgs={--cores,0-1}'
        --set 'control.extraArgs={--lease-ttl-s,5}' --set control.etcd.replicas=5
        --set csi.node.kubeletDir=/var/snap/microk8s/common/var/lib/kubelet
        --set control.etcd.storageClassName=local --set engine.ports.nvmf=8420)
"$helm" lint --strict "$chart" >"$out/lint.txt" 2>&1 || { cat "$out/lint.txt"; fail "helm lint deploy/helm/castor"; }
"$helm" lint --strict "$chart" --set control.store=etcd >"$out/lint-etcd.txt" 2>&1 ||
  { cat "$out/lint-etcd.txt"; fail "helm lint deploy/helm/castor --set control.store=etcd"; }
echo "ok   helm lint --strict (defaults, control.store=etcd)"
"$helm" template castor "$chart" >"$out/helm.yaml" || fail "helm template deploy/helm/castor"
"$helm" template castor "$chart" --set control.store=etcd >"$out/helm-etcd.yaml" ||
  fail "helm template deploy/helm/castor --set control.store=etcd"
"$helm" template castor "$chart" "${custom[@]}" >"$out/helm-custom.yaml" ||
  fail "helm template deploy/helm/castor ${custom[*]}"
if "$helm" template castor "$chart" --set control.store=mysql >/dev/null 2>&1; then
  fail "helm template accepted control.store=mysql"
fi
echo "ok   helm template refuses control.store=mysql"

node "$here/validate.cjs" --root "$root" --npm "$npm_dir" --build-dir "$build_dir" --etcd "$etcd" \
  --binary "castor-engine=$engine" --binary "castor-control=$control" --binary "castorctl=$castorctl" \
  --binary "castor-csi=$csi" \
  --render "kustomize=$out/kustomize.yaml" --render "kustomize-etcd=$out/kustomize-etcd.yaml" \
  --render "helm=$out/helm.yaml" --render "helm-etcd=$out/helm-etcd.yaml" \
  --render "helm-custom=$out/helm-custom.yaml" \
  --same kustomize=helm --same kustomize-etcd=helm-etcd
