#!/usr/bin/env bash
# Builds Skiff's test images from scratch (no registry needed) as OCI archives:
#
#   skiff.local/pause:3.10     /pause, the pod sandbox process (entrypoint /pause)
#   skiff.local/testhost:1.0   /testhost plus /bin/busybox (busybox-static) and
#                              its applet links; entrypoint /testhost, default
#                              command `netexec --http-port=8080`
#
# Usage: scripts/build-images.sh [OUT_DIR]   (default: .skiff/images)
# Writes OUT_DIR/pause.tar and OUT_DIR/testhost.tar, each carrying the
# annotation io.containerd.image.name, so that
#   ctr -n k8s.io images import OUT_DIR/testhost.tar
# names the image skiff.local/testhost:1.0 (or: scripts/containerd.sh import).
# A tar newer than its inputs (binary, busybox, this script) is kept as is.
# Needs cargo, umoci and busybox-static (scripts/install-prereqs.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/.skiff/images}
target=x86_64-unknown-linux-gnu
bin_dir=${CARGO_TARGET_DIR:-$repo/target}/$target/release
busybox=/bin/busybox
self=$repo/scripts/build-images.sh

PAUSE_IMAGE=skiff.local/pause:3.10
TESTHOST_IMAGE=skiff.local/testhost:1.0

for tool in cargo umoci; do
    command -v "$tool" >/dev/null || {
        echo "images: $tool not found; run scripts/install-prereqs.sh" >&2
        exit 1
    }
done
# is_static FILE: whether FILE is a statically linked executable.
is_static() {
    case "$(ldd "$1" 2>&1)" in
    *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
    *) return 1 ;;
    esac
}
if ! "$busybox" --list >/dev/null 2>&1 || ! is_static "$busybox"; then
    echo "images: $busybox is not busybox-static; install it: apt-get install busybox-static" >&2
    exit 1
fi

# Static, non-PIE binaries (ldd: "not a dynamic executable") without symbols:
# glibc linked in, as the musl target is not installed; safe because they
# never resolve names (no NSS). Built for an explicit --target, so they land
# in target/$target/ and the workspace's ordinary builds are not invalidated
# by the different RUSTFLAGS.
echo "images: building static testhost and pause (cargo build --release --target $target)"
(cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static -C strip=symbols' \
    cargo build --release --quiet -p skiff-testhost --target "$target")
for b in pause testhost; do
    if ! is_static "$bin_dir/$b"; then
        echo "images: $bin_dir/$b is not static" >&2
        exit 1
    fi
done

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootless=()
[ "$(id -u)" -eq 0 ] || rootless=(--rootless)

# up_to_date TAR INPUT...: whether TAR exists and is newer than every INPUT.
up_to_date() {
    local tar=$1 input
    shift
    [ -f "$tar" ] || return 1
    for input in "$@"; do
        [ "$tar" -nt "$input" ] || return 1
    done
}

# build_image NAME STAGE_DIR TAR CONFIG_ARGS...: an image whose one layer is
# STAGE_DIR's content at /, written to TAR as an OCI archive named NAME.
build_image() {
    local name=$1 stage=$2 tar=$3
    shift 3
    local tag=${name##*:} layout=$work/layout-${name//[\/:]/_}
    umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    # unpack + repack, not `umoci insert`: umoci 0.4.7's insert leaves the
    # layer's tar without its end-of-archive blocks (umoci#436), which
    # strict tar readers reject.
    umoci unpack "${rootless[@]}" --image "$layout:$tag" "$work/bundle-$tag"
    cp -a "$stage/." "$work/bundle-$tag/rootfs/"
    umoci repack --image "$layout:$tag" --history.created_by "scripts/build-images.sh" "$work/bundle-$tag"
    umoci config --image "$layout:$tag" --os linux --architecture amd64 --author skiff "$@"
    umoci gc --layout "$layout"
    # containerd names an imported image after this annotation.
    sed -i "s|\"org.opencontainers.image.ref.name\":\"$tag\"|\"io.containerd.image.name\":\"$name\",&|" "$layout/index.json"
    grep -q "\"io.containerd.image.name\":\"$name\"" "$layout/index.json" || {
        echo "images: could not annotate $layout/index.json: $(cat "$layout/index.json")" >&2
        exit 1
    }
    tar --sort=name --owner=0 --group=0 --numeric-owner -cf "$tar.tmp" -C "$layout" oci-layout index.json blobs
    mv "$tar.tmp" "$tar"
    echo "images: wrote $name to $tar ($(du -k "$tar" | cut -f1) KiB)"
}

# skiff.local/pause
pause_tar=$out/pause.tar
if up_to_date "$pause_tar" "$bin_dir/pause" "$self"; then
    echo "images: $PAUSE_IMAGE is up to date ($pause_tar)"
else
    echo "images: building $PAUSE_IMAGE"
    stage=$work/pause-rootfs
    mkdir -p "$stage"
    chmod 0755 "$stage"
    install -m 0755 "$bin_dir/pause" "$stage/pause"
    build_image "$PAUSE_IMAGE" "$stage" "$pause_tar" \
        --config.entrypoint /pause --config.user 65535:65535 \
        --config.env PATH=/ --config.stopsignal SIGTERM
fi

# skiff.local/testhost
testhost_tar=$out/testhost.tar
if up_to_date "$testhost_tar" "$bin_dir/testhost" "$busybox" "$self"; then
    echo "images: $TESTHOST_IMAGE is up to date ($testhost_tar)"
else
    echo "images: building $TESTHOST_IMAGE"
    stage=$work/testhost-rootfs
    mkdir -p "$stage"/{bin,etc,tmp,root}
    chmod 0755 "$stage" "$stage/bin" "$stage/etc"
    chmod 0700 "$stage/root"
    chmod 1777 "$stage/tmp"
    install -m 0755 "$bin_dir/testhost" "$stage/testhost"
    install -m 0755 "$busybox" "$stage/bin/busybox"
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$stage/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
    chmod 0644 "$stage/etc/passwd" "$stage/etc/group"
    build_image "$TESTHOST_IMAGE" "$stage" "$testhost_tar" \
        --config.entrypoint /testhost --config.cmd netexec --config.cmd --http-port=8080 \
        --config.env PATH=/bin:/usr/bin:/sbin:/usr/sbin --config.workingdir / \
        --config.exposedports 8080/tcp --config.stopsignal SIGTERM
fi

echo "images: $PAUSE_IMAGE $pause_tar"
echo "images: $TESTHOST_IMAGE $testhost_tar"
