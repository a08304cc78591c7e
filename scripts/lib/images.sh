# shellcheck shell=bash
# Small OCI images built locally, without a registry (see ../shared/design/RUNTIME.md, "Images without a
# registry"): a rootfs with Debian's static busybox and its applet links in one layer, a config, a
# manifest and an index.json named by the annotation io.containerd.image.name, all hashed with sha256.
# The result is an OCI layout tar that `ctr images import` takes. Needs busybox-static, tar, sha256sum.
#
#   source scripts/lib/images.sh
#   outpost_image_build NAME ENTRYPOINT_JSON WORKDIR   # writes WORKDIR/image.tar
#   outpost_image_build_demo DIR                       # pause and busybox images under DIR/{pause,busybox}
#
# The names the demo and the tests use:
OUTPOST_IMAGE_BUSYBOX=${OUTPOST_IMAGE_BUSYBOX:-localhost/outpost/busybox:1}
OUTPOST_IMAGE_PAUSE=${OUTPOST_IMAGE_PAUSE:-localhost/outpost/pause:1}

# outpost_image_build NAME ENTRYPOINT_JSON WORKDIR
# Builds the image NAME (e.g. localhost/outpost/busybox:1) whose entrypoint is ENTRYPOINT_JSON
# (e.g. '["/bin/sh"]') into WORKDIR/image.tar. WORKDIR is emptied first.
outpost_image_build() (
  set -eu
  local name=$1 ep=$2 w=$3 busybox=/bin/busybox
  [ -x "$busybox" ] || { echo "outpost_image_build: $busybox is missing (apt-get install busybox-static)" >&2; return 1; }
  rm -rf "$w"
  mkdir -p "$w/rootfs/bin" "$w/layout/blobs/sha256"
  cp "$busybox" "$w/rootfs/bin/busybox"
  # A link for every applet, made by busybox itself (one process, not one ln per applet). They point
  # to where the host's busybox really is (/usr/bin/busybox on merged-/usr): make that path exist too.
  "$busybox" --install -s "$w/rootfs/bin"
  local real
  real=$(readlink -f "$busybox")
  if [ "$real" != /bin/busybox ]; then
    mkdir -p "$w/rootfs$(dirname "$real")"
    ln -s /bin/busybox "$w/rootfs$real"
  fi
  mkdir -p "$w/rootfs/tmp" "$w/rootfs/etc" "$w/rootfs/proc" "$w/rootfs/sys" "$w/rootfs/dev"
  tar -C "$w/rootfs" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$w/layer.tar" .
  # Moves a file into the blob store under its digest; prints "digest size".
  blob() {
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$w/layout/blobs/sha256/$d"
    echo "$d $s"
  }
  local l ls c cs m ms
  read -r l ls < <(blob "$w/layer.tar")
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$ep" "$l" >"$w/config.json"
  read -r c cs < <(blob "$w/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$c" "$cs" "$l" "$ls" >"$w/manifest.json"
  read -r m ms < <(blob "$w/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s"}}]}' \
    "$m" "$ms" "$name" >"$w/layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$w/layout/oci-layout"
  tar -C "$w/layout" -cf "$w/image.tar" .
  rm -rf "$w/rootfs" "$w/layout"
)

# outpost_image_build_demo DIR
# The two images every pod here needs: the sandbox's pause image (sleeps forever) and busybox (/bin/sh).
# Writes DIR/pause/image.tar and DIR/busybox/image.tar.
outpost_image_build_demo() {
  outpost_image_build "$OUTPOST_IMAGE_PAUSE" '["/bin/sleep","inf"]' "$1/pause" &&
    outpost_image_build "$OUTPOST_IMAGE_BUSYBOX" '["/bin/sh"]' "$1/busybox"
}
