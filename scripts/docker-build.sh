#!/usr/bin/env bash
# Builds the Docker image here (no registry: the base image is made with debootstrap, as
# ../shared/docs/docker-here.md describes), then runs the tool inside it on the generated test-data
# with no network and checks the four outputs. Prints the image size and the build time.
# Usage: scripts/docker-build.sh [WEIGHTS...]   (weights to bake in need internet)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="image-learner:0.1.0"
command -v dockerd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
work="$(mktemp -d)"
dockerd --iptables=false --bridge=none --pidfile "$work/dockerd.pid" --data-root "${DOCKER_DATA_ROOT:-/var/lib/docker}" > "$work/dockerd.log" 2>&1 &
trap 'kill "$(cat "$work/dockerd.pid" 2>/dev/null)" 2>/dev/null; sleep 2; rm -rf "$work"' EXIT
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1
  tar -C "$work/rootfs" -c . | docker import -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
fi
# This machine's proxy CA certificates and apt sources, for the build only (ignored by git).
cp /usr/local/share/ca-certificates/*.crt docker/certs/ 2>/dev/null || true
cp /etc/apt/sources.list.d/debian.sources docker/apt/ 2>/dev/null || true

start=$(date +%s)
docker build --force-rm --network host -t "$tag" --build-arg WEIGHTS="$*" . > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
echo "docker: built $tag in $(( $(date +%s) - start )) s; image size $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"

out="$(mktemp -d)"; chmod 777 "$out"
docker run --rm --network none -v "$PWD/test-data:/data:ro" -v "$out:/out" "$tag" \
  image-learner train --images /data/sample_images.zip --metadata /data/sample_metadata.csv \
  --model resnet18 --epochs 2 --image-size 32 --use-pretrained false --output-dir /out/run > "$work/run.log" 2>&1 \
  || { tail -20 "$work/run.log"; exit 1; }
for f in best_model.zip report.html training_history.csv predictions.csv; do
  [ -s "$out/run/$f" ] || { echo "docker: $f missing"; exit 1; }
done
echo "docker: the tool ran inside the image (no network, user $(docker run --rm "$tag" id -un)) and wrote the four outputs"
rm -rf "$out"
