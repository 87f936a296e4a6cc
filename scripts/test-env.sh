#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine:
# install the tools, start real registries (Debian's docker-registry, the
# reference distribution server) on free 127.0.0.1 ports with temporary
# storage, and fill them with images built by umoci and skopeo from Debian's
# busybox-static. Never uses mocker to build anything.
#
# Usage: scripts/test-env.sh start WORKDIR        (writes WORKDIR/env to source)
#        scripts/test-env.sh start-bench WORKDIR  (one registry with a ~500 MB image)
#        scripts/test-env.sh stop WORKDIR
#        scripts/test-env.sh install           (only the packages; building mocker needs libseccomp-dev debootstrap)
set -euo pipefail

cmd=${1:?usage: test-env.sh start|start-bench|stop WORKDIR, or install}
work=${2:-}
[[ $cmd == install || -n $work ]] || { echo "usage: test-env.sh $cmd WORKDIR" >&2; exit 2; }

PACKAGES=(docker-registry skopeo umoci busybox-static apache2-utils curl python3 time attr bc gcc libc6-dev libseccomp-dev libcap2-bin strace)

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_registry NAME PORT [htpasswd-file]
start_registry() {
    local name=$1 port=$2 htpasswd=${3:-}
    mkdir -p "$work/$name/data"
    {
        echo "version: 0.1"
        echo "log: {level: error, accesslog: {disabled: true}}"
        echo "storage:"
        echo "  filesystem: {rootdirectory: $work/$name/data}"
        echo "  delete: {enabled: true}"
        echo "http: {addr: 127.0.0.1:$port}"
        if [[ -n $htpasswd ]]; then
            echo "auth: {htpasswd: {realm: mocker-test, path: $htpasswd}}"
        fi
    } >"$work/$name/config.yml"
    docker-registry serve "$work/$name/config.yml" >"$work/$name/log" 2>&1 &
    echo $! >"$work/$name/pid"
    for _ in $(seq 100); do
        local code
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
        [[ $code == 200 || $code == 401 ]] && return 0
        sleep 0.1
    done
    echo "registry $name did not start; log:" >&2
    cat "$work/$name/log" >&2
    return 1
}

# add_layer IMAGE_FROM IMAGE_TO SCRIPT: unpack, run SCRIPT in the rootfs, repack.
add_layer() {
    local from=$1 to=$2 script=$3 bundle
    bundle=$(mktemp -d "$work/bundle.XXXX")
    rmdir "$bundle"
    umoci unpack --image "$layout:$from" "$bundle" >/dev/null
    (cd "$bundle/rootfs" && eval "$script")
    umoci repack --image "$layout:$to" "$bundle" >/dev/null
    rm -rf "$bundle"
}

blob_path() { # blob_path DIGEST -> registry storage file
    local hex=${1#sha256:}
    echo "$work/registry/data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
}

top_layer() { # digest of the last layer of IMAGE in the layout
    python3 - "$layout" "$1" <<'PY'
import json, sys, os
layout, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(os.path.join(layout, "index.json")))
desc = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
print(json.load(open(blob(desc["digest"])))["layers"][-1]["digest"])
PY
}

build_images() {
    layout=$work/oci
    umoci init --layout "$layout"
    umoci new --image "$layout:empty"
    add_layer empty busybox '
        mkdir -p bin etc tmp root
        cp /bin/busybox bin/busybox
        for a in sh ls cat echo true false sleep id hostname env mkdir rm touch wc head sha256sum; do ln -s busybox bin/$a; done
        echo "root:x:0:0:root:/root:/bin/sh" > etc/passwd
        echo "root:x:0:" > etc/group'
    umoci config --image "$layout:busybox" --os linux --architecture amd64 \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.cmd /bin/sh

    # The runtime tests' image: every busybox applet (httpd, nc, ip, ps,
    # kill, …), users and groups to run as, and a server script.
    # busybox has no UDP server: a static UDP echo server (gcc) for `-p
    # …/udp`, answering every datagram to its sender.
    cat >"$work/udp-echo.c" <<'C'
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(argc > 1 ? atoi(argv[1]) : 7)};
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) != 0) return 1;
    for (;;) {
        char buf[2048];
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n >= 0) sendto(s, buf, n, 0, (struct sockaddr *)&from, len);
    }
}
C
    gcc -static -O2 -o "$work/udp-echo" "$work/udp-echo.c"
    # A system-call probe for the seccomp tests: `sysprobe NAME...` makes
    # each call with harmless arguments (bad flags, a missing path, no
    # memory) and prints NAME=OK or NAME=<errno name>. Only the filter or a
    # missing capability answers EPERM; the kernel itself answers the rest.
    cat >"$work/sysprobe.c" <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static long call(const char *name) {
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
    if (!strcmp(name, "add_key")) return syscall(SYS_add_key, "user", "mocker-probe", "x", 1, -2 /* process */);
    if (!strcmp(name, "request_key")) return syscall(SYS_request_key, "user", "mocker-probe-missing", NULL, 0);
    if (!strcmp(name, "unshare")) return syscall(SYS_unshare, CLONE_NEWUSER);
    if (!strcmp(name, "personality")) return syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */);
    if (!strcmp(name, "clock_settime")) return syscall(SYS_clock_settime, -1, NULL);
    if (!strcmp(name, "reboot")) return syscall(SYS_reboot, 0, 0, 0, NULL);
    if (!strcmp(name, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0xffff0000UL);
    if (!strcmp(name, "open_by_handle_at")) return syscall(SYS_open_by_handle_at, -1, NULL, 0);
    if (!strcmp(name, "bpf")) return syscall(SYS_bpf, -1, NULL, 0);
    if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, -1);
    if (!strcmp(name, "perf_event_open")) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    if (!strcmp(name, "mount")) return syscall(SYS_mount, "none", "/nonexistent", "tmpfs", 0, NULL);
    if (!strcmp(name, "mkdir")) return syscall(SYS_mkdir, "/tmp/sysprobe-dir", 0755);
    errno = ENOSYS;
    return -2;
}
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long rc = call(argv[i]);
        if (rc == -2 && errno == ENOSYS) { printf("%s=UNKNOWN\n", argv[i]); continue; }
        printf("%s=%s\n", argv[i], rc >= 0 ? "OK" : strerrorname_np(errno));
    }
    return 0;
}
C
    gcc -static -O2 -o "$work/sysprobe" "$work/sysprobe.c"
    add_layer busybox toolbox '
        cp "$work/udp-echo" bin/udp-echo && cp "$work/sysprobe" bin/sysprobe
        for a in $(/bin/busybox --list); do [ -e bin/$a ] || ln -s busybox bin/$a; done
        printf "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n" > etc/passwd
        printf "root:x:0:\nwww-data:x:33:\nbob:x:1000:\naudio:x:29:bob\n" > etc/group
        mkdir -p www home/bob && echo hello-from-container > www/index.html'
    umoci config --image "$layout:toolbox" --config.workingdir /www --config.env GREETING=hello

    # Three more layers, including a deletion (whiteout) and a replaced file.
    add_layer busybox multi 'mkdir -p etc/app && echo one > etc/app/config && echo keep > etc/app/keep'
    add_layer multi multi 'head -c 2000000 /dev/urandom > data.bin && echo two > etc/app/config'
    add_layer multi multi 'rm etc/app/keep && ln -s /etc/app/config etc/app/link'

    # Two images on one shared base layer.
    add_layer busybox shared-a 'echo a > a.txt'
    add_layer busybox shared-b 'echo b > b.txt'

    # An arm64 variant (marked by a file) for the multi-platform index.
    add_layer busybox arm64 'echo arm64 > arch'
    # A file capability: umoci writes it as a binary SCHILY.xattr PAX record
    # whose value holds a newline byte (cap_net_raw's bit is 0x0a…).
    add_layer busybox caps 'cp bin/busybox bin/ping && setcap cap_net_raw,cap_dac_override,cap_fowner+ep bin/ping'
    umoci config --image "$layout:arm64" --architecture arm64

    # Every kind of entry and metadata the layer rules cover, then a layer
    # that swaps a file for a directory and empties a directory, then one
    # that swaps it back.
    add_layer busybox everything '
        mkdir -p meta/dir meta/sticky meta/olddir && chmod 1777 meta/sticky && chmod 0750 meta/dir
        echo suid > meta/suid && chmod 4755 meta/suid
        echo sgid > meta/sgid && chmod 2711 meta/sgid
        echo owned > meta/owned && chown 1234:5678 meta/owned && chmod 0640 meta/owned
        echo old > meta/old && touch -d "2001-02-03 04:05:06.789" meta/old
        echo data > meta/hard1 && ln meta/hard1 meta/hard2
        ln -s /etc/passwd meta/abs-link && ln -s ../bin/busybox meta/rel-link && ln -s /no/such/file meta/dangling
        mkfifo meta/fifo && mknod meta/null c 1 3 && mknod meta/loop b 7 0
        echo x > meta/xattr && setfattr -n user.mocker -v hello meta/xattr
        long=$(printf "d%.0s" $(seq 120)); mkdir -p "meta/$long"; echo long > "meta/$long/$(printf "f%.0s" $(seq 150))"
        mkdir -p opq/sub && echo old > opq/sub/old && echo keep > opq/keep
        echo file > swap
        touch -d "2002-01-01" meta/olddir'
    add_layer everything everything 'rm -rf opq/sub && mkdir opq/sub && echo new > opq/sub/new && rm swap && mkdir swap && echo in > swap/x'
    add_layer everything everything 'rm -rf swap && echo file-again > swap && rm meta/hard2 && echo changed > meta/suid && chmod 4755 meta/suid'

    # Layers whose bytes the registry will serve wrong (see corrupt_blobs).
    add_layer busybox corrupt 'head -c 300000 /dev/urandom > noise'
    add_layer busybox truncated 'head -c 300000 /dev/urandom > noise'
    umoci gc --layout "$layout"

    # Images with many layers (more lower directories than fit in one page
    # of overlayfs mount options as absolute paths), written as an OCI
    # layout by Python's tarfile: each layer adds one file and rewrites one.
    python3 - "$layout" 60 200 <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
layout, counts = sys.argv[1], [int(c) for c in sys.argv[2:]]
blobs = os.path.join(layout, "blobs", "sha256")
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)
idx_path = os.path.join(layout, "index.json")
idx = json.load(open(idx_path))
for count in counts:
    layers, diff_ids = [], []
    for i in range(count):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            info = tarfile.TarInfo("layers")
            info.type, info.mtime, info.mode = tarfile.DIRTYPE, 1700000000, 0o755
            t.addfile(info)
            for name, body in ((f"layers/layer-{i:03d}", f"{i}\n".encode()), ("layers/top", f"top {i}\n".encode())):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(body), 1700000000 + i, 0o644
                t.addfile(info, io.BytesIO(body))
        tar = raw.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        digest, size = put(gzip.compress(tar, mtime=0))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
    config = {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
              "config": {"Cmd": ["/bin/sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdigest, csize = put(json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
                "layers": layers}
    mdigest, msize = put(json.dumps(manifest).encode())
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
                             "annotations": {"org.opencontainers.image.ref.name": f"layers-{count}"}})
json.dump(idx, open(idx_path, "w"))
PY

    # An opaque directory (".wh..wh..opq"), which umoci's repack never
    # writes: the base layer's d/ holds a and b, the top layer empties d/ and
    # adds c. Built on busybox's layer by Python's tarfile.
    python3 - "$layout" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
layout = sys.argv[1]
blobs = os.path.join(layout, "blobs", "sha256")
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, digest), "wb").write(data)
    return "sha256:" + digest, len(data)
def layer(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, body in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if body is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(body), 0o644
                t.addfile(info, io.BytesIO(body))
    tar = raw.getvalue()
    digest, size = put(gzip.compress(tar, mtime=0))
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}, \
        "sha256:" + hashlib.sha256(tar).hexdigest()
idx_path = os.path.join(layout, "index.json")
idx = json.load(open(idx_path))
ref = lambda m: m.get("annotations", {}).get("org.opencontainers.image.ref.name")
base = next(m for m in idx["manifests"] if ref(m) == "busybox")
base_manifest = json.load(open(os.path.join(blobs, base["digest"].split(":")[1])))
base_config = json.load(open(os.path.join(blobs, base_manifest["config"]["digest"].split(":")[1])))
l1, d1 = layer([("d", None), ("d/a", b"a\n"), ("d/b", b"b\n"), ("keep", b"k\n")])
l2, d2 = layer([("d", None), ("d/.wh..wh..opq", b""), ("d/c", b"c\n")])
config = dict(base_config)
config["rootfs"] = {"type": "layers", "diff_ids": base_config["rootfs"]["diff_ids"] + [d1, d2]}
cdigest, csize = put(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
            "layers": base_manifest["layers"] + [l1, l2]}
mdigest, msize = put(json.dumps(manifest).encode())
idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
                         "annotations": {"org.opencontainers.image.ref.name": "opaque"}})
json.dump(idx, open(idx_path, "w"))
PY

    python3 - "$layout" <<'PY'
# Write an image index (amd64 + arm64/v8) into the layout, tagged "multiarch".
import hashlib, json, os, sys
layout = sys.argv[1]
idx_path = os.path.join(layout, "index.json")
idx = json.load(open(idx_path))
ref = lambda m: m.get("annotations", {}).get("org.opencontainers.image.ref.name")
by_tag = {ref(m): m for m in idx["manifests"]}
entries = []
for tag, arch, variant in (("busybox", "amd64", None), ("arm64", "arm64", "v8")):
    d = {k: by_tag[tag][k] for k in ("mediaType", "digest", "size")}
    d["platform"] = {"architecture": arch, "os": "linux"}
    if variant:
        d["platform"]["variant"] = variant
    entries.append(d)
body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}).encode()
digest = hashlib.sha256(body).hexdigest()
open(os.path.join(layout, "blobs", "sha256", digest), "wb").write(body)
idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest,
                         "size": len(body), "annotations": {"org.opencontainers.image.ref.name": "multiarch"}})
json.dump(idx, open(idx_path, "w"))
PY
}

# A Debian 12 minbase image (debootstrap from the machine's apt mirror,
# packed by umoci): dynamic glibc programs, a shell and apt, for the
# seccomp tests' "ordinary programs run" check.
push_debian() { # push_debian DEST
    local mirror rootfs=$work/debian-rootfs bundle=$work/debian-bundle debian=$work/debian-oci
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; return 1; }
    umoci init --layout "$debian"
    umoci new --image "$debian:bookworm"
    umoci unpack --image "$debian:bookworm" "$bundle" >/dev/null
    cp -a "$rootfs/." "$bundle/rootfs/"
    umoci repack --image "$debian:bookworm" "$bundle" >/dev/null
    umoci config --image "$debian:bookworm" --os linux --architecture amd64 --config.cmd /bin/bash \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    rm -rf "$rootfs" "$bundle"
    skopeo copy -q --dest-tls-verify=false "oci:$debian:bookworm" "docker://$1"
}

push() { # push TAG DEST [skopeo options...]
    local tag=$1 dest=$2
    shift 2
    skopeo copy -q --dest-tls-verify=false "$@" "oci:$layout:$tag" "docker://$dest"
}

corrupt_blobs() {
    # Same size, other bytes: a digest mismatch.
    local f
    f=$(blob_path "$(top_layer corrupt)")
    python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=0xff; open(p,"wb").write(b)' "$f"
    # Half the bytes: a size mismatch.
    f=$(blob_path "$(top_layer truncated)")
    truncate -s 150000 "$f"
}

# The user whose subordinate ids the --userns-remap tests map containers
# to (as docker's userns-remap uses "dockremap"); idempotent.
add_remap_user() {
    id mockremap >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin mockremap
    local f
    for f in /etc/subuid /etc/subgid; do
        grep -q '^mockremap:' "$f" 2>/dev/null || echo "mockremap:420000:65536" >>"$f"
    done
}

start() {
    install_packages
    add_remap_user
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
    local port auth_port
    port=$(free_port)
    start_registry registry "$port"
    auth_port=$(free_port)
    htpasswd -Bbn mocker s3cret >"$work/htpasswd"
    start_registry auth-registry "$auth_port" "$work/htpasswd"

    build_images
    local r=127.0.0.1:$port
    push busybox "$r/busybox:latest"
    push_debian "$r/debian:bookworm"
    push busybox "$r/busybox-docker:latest" --format v2s2
    # Recompress through a local copy; --preserve-digests stops skopeo from
    # substituting the gzip blob the registry already has.
    skopeo copy -q --dest-compress --dest-compress-format zstd "oci:$layout:busybox" "oci:$work/oci-zstd:busybox"
    skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$work/oci-zstd:busybox" "docker://$r/busybox-zstd:latest"
    skopeo copy -q --dest-decompress "oci:$layout:busybox" "dir:$work/dir-plain"
    skopeo copy -q --preserve-digests --dest-tls-verify=false "dir:$work/dir-plain" "docker://$r/busybox-plain:latest"
    push toolbox "$r/toolbox:latest"
    push multi "$r/multi:latest"
    push everything "$r/everything:latest"
    push layers-60 "$r/layers-60:latest"
    push layers-200 "$r/layers-200:latest"
    push opaque "$r/opaque:latest"
    push caps "$r/caps:latest"
    push shared-a "$r/shared-a:latest"
    push shared-b "$r/shared-b:latest"
    push multiarch "$r/multiarch:latest" --all
    push corrupt "$r/corrupt:latest"
    push truncated "$r/truncated:latest"
    push busybox "127.0.0.1:$auth_port/private/busybox:latest" --dest-creds mocker:s3cret
    corrupt_blobs

    cat >"$work/env" <<ENV
export MOCKER_TEST_REGISTRY=$r
export MOCKER_TEST_REGISTRY_DATA=$work/registry/data
export MOCKER_TEST_AUTH_REGISTRY=127.0.0.1:$auth_port
export MOCKER_TEST_AUTH_USER=mocker
export MOCKER_TEST_AUTH_PASSWORD=s3cret
export MOCKER_TEST_OCI_LAYOUT=$layout
ENV
    echo "registries ready: $r (open), 127.0.0.1:$auth_port (htpasswd); env in $work/env" >&2
}

# A multi-layer image of real-looking content (binaries, libraries, text)
# plus incompressible data: ~500 MB unpacked, a few hundred MB compressed.
start_bench() {
    install_packages
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
    local port
    port=$(free_port)
    start_registry registry "$port"
    layout=$work/oci
    umoci init --layout "$layout"
    umoci new --image "$layout:big"
    add_layer big big 'mkdir -p usr && cp -a /usr/bin usr/bin'
    add_layer big big 'mkdir -p usr/lib && cp -a /usr/lib/gcc usr/lib/gcc'
    add_layer big big 'mkdir -p usr/lib && cp -a /usr/lib/python3 usr/lib/python3'
    add_layer big big 'mkdir -p usr/share && cp -a /usr/share/perl usr/share/perl 2>/dev/null || true; cp -a /usr/share/doc usr/share/doc'
    add_layer big big 'head -c 64000000 /dev/urandom > blob.bin'
    umoci config --image "$layout:big" --os linux --architecture amd64
    push big "127.0.0.1:$port/big:latest"
    # The pull-speed shapes: one big layer, and the same files in three.
    umoci new --image "$layout:single"
    add_layer single single 'mkdir -p usr/lib usr/share && cp -a /usr/bin usr/bin && cp -a /usr/lib/gcc /usr/lib/python3 usr/lib/ && cp -a /usr/share/doc usr/share/doc'
    umoci config --image "$layout:single" --os linux --architecture amd64
    push single "127.0.0.1:$port/single:latest"
    umoci new --image "$layout:three"
    add_layer three three 'mkdir -p usr && cp -a /usr/bin usr/bin'
    add_layer three three 'mkdir -p usr/lib && cp -a /usr/lib/gcc /usr/lib/python3 usr/lib/'
    add_layer three three 'mkdir -p usr/share && cp -a /usr/share/doc usr/share/doc'
    umoci config --image "$layout:three" --os linux --architecture amd64
    push three "127.0.0.1:$port/three:latest"
    # Many small layers (a twentieth of usr/bin each): the per-layer cost.
    umoci new --image "$layout:twenty"
    for k in $(seq 0 19); do
        add_layer twenty twenty "mkdir -p usr/bin && ls /usr/bin | awk 'NR % 20 == $k' | sed 's|^|/usr/bin/|' | xargs -d '\\n' cp -a -t usr/bin"
    done
    umoci config --image "$layout:twenty" --os linux --architecture amd64
    push twenty "127.0.0.1:$port/twenty:latest"
    cat >"$work/env" <<ENV
export MOCKER_TEST_REGISTRY=127.0.0.1:$port
export MOCKER_BENCH_IMAGE=127.0.0.1:$port/big:latest
export MOCKER_BENCH_SINGLE=127.0.0.1:$port/single:latest
export MOCKER_BENCH_THREE=127.0.0.1:$port/three:latest
export MOCKER_BENCH_TWENTY=127.0.0.1:$port/twenty:latest
ENV
}

stop() {
    for name in registry auth-registry; do
        if [[ -f $work/$name/pid ]]; then
            kill "$(cat "$work/$name/pid")" 2>/dev/null || true
            rm -f "$work/$name/pid"
        fi
    done
}

case $cmd in
install) install_packages ;;
start) start ;;
start-bench) start_bench ;;
stop) stop ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
