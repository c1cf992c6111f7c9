#!/usr/bin/env bash
# A Debian trixie chroot with a real GUI Blender (Debian's `blender` package), Xvfb + Mesa llvmpipe,
# xdotool and ImageMagick: what the real-GUI end-to-end test (tests/blender/gui/) and the Blender 5.2
# suite (python3.13 + the cp313-only bpy wheel) run in.
#
#   bash .ci/gui_chroot.sh ensure          # build it if missing or if the package list changed (cached)
#   bash .ci/gui_chroot.sh run CMD...      # run CMD inside, with /proc /dev /sys bind-mounted (always unmounted);
#                                          # EX4D_CHROOT_BINDS="/a:/b" also binds host folders at the same paths
#   bash .ci/gui_chroot.sh bpy52           # + a python3.13 venv with bpy 5.2.3 at /opt/ex4d-py313 (cached)
#   bash .ci/gui_chroot.sh path            # print the chroot's path
#
# Location: $EX4D_GUI_CHROOT or /var/cache/ex4d-gui-chroot. Needs root (debootstrap, chroot, mounts).
# The chroot shares the host's network namespace, so `ex4d serve` on the host's loopback is reachable inside.
set -euo pipefail

CHROOT="${EX4D_GUI_CHROOT:-/var/cache/ex4d-gui-chroot}"
MIRROR="${EX4D_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# One list: changing it rebuilds the chroot (its hash is stored in $CHROOT/.ex4d-packages).
PACKAGES="blender xvfb xauth libgl1-mesa-dri libegl-mesa0 libglx-mesa0 xdotool imagemagick python3.13 python3.13-venv"
STAMP="trixie minbase | $PACKAGES"
# Blender 5.1+ embeds Python 3.13 and bpy 5.2.3 on PyPI is cp313-only: downloaded here (pip download), installed
# inside with --no-index into a venv of trixie's python3.13. numpy comes with it (the GUI Blender borrows it).
BPY52_SPEC="bpy==5.2.3 pytest"
STAMP52="$BPY52_SPEC + numpy target"
NUMPY_TARGET=/opt/ex4d-numpy  # numpy alone, for the GUI Blender's "numpy installed" session
WHEELS="${EX4D_WHEEL_CACHE:-/var/cache/ex4d-gui-wheels}"
PY313_VENV=/opt/ex4d-py313

log() { echo "gui_chroot: $*" >&2; }

mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -l "${mounted[$i]}" 2>/dev/null || true
  done
  mounted=()
}

bind_mounts() {  # $1 = root
  local root="$1" d
  for d in proc sys dev dev/pts; do
    mkdir -p "$root/$d"
    if ! mountpoint -q "$root/$d"; then
      if [ "$d" = proc ]; then mount -t proc proc "$root/proc"; else mount --bind "/$d" "$root/$d"; fi
      mounted+=("$root/$d")
    fi
  done
  mkdir -p "$root/dev/shm"
  if ! mountpoint -q "$root/dev/shm"; then mount -t tmpfs shm "$root/dev/shm"; mounted+=("$root/dev/shm"); fi
}

is_ready() {
  [ -x "$CHROOT/usr/bin/blender" ] && [ -f "$CHROOT/.ex4d-packages" ] && [ "$(cat "$CHROOT/.ex4d-packages")" = "$STAMP" ]
}

build() {
  command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  local tmp="$CHROOT.build-$$"
  rm -rf "$tmp"
  trap 'unmount_all; rm -rf "'"$tmp"'"' EXIT
  log "debootstrap trixie into $tmp (a few minutes)"
  debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >"$tmp.log" 2>&1 || { tail -30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
  rm -f "$tmp.log"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  bind_mounts "$tmp"
  log "apt-get install $PACKAGES"
  chroot "$tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null && apt-get clean"
  unmount_all
  echo "$STAMP" >"$tmp/.ex4d-packages"
  rm -rf "$CHROOT"
  mv "$tmp" "$CHROOT"
  trap - EXIT
  log "ready: $CHROOT ($(du -sh "$CHROOT" | cut -f1))"
}

ensure_bpy52() {
  local stamp="$CHROOT$PY313_VENV/.ex4d-spec"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$STAMP52" ]; then log "cached: $PY313_VENV ($BPY52_SPEC)"; return; fi
  local python="${PYTHON:-python3}"
  mkdir -p "$WHEELS"
  log "pip download $BPY52_SPEC (cp313) into $WHEELS"
  "$python" -m pip download -q --disable-pip-version-check --python-version 3.13 --implementation cp \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" $BPY52_SPEC
  mkdir -p "$CHROOT/var/cache/ex4d-wheels"
  cp -ln "$WHEELS"/*.whl "$CHROOT/var/cache/ex4d-wheels/" 2>/dev/null || cp -n "$WHEELS"/*.whl "$CHROOT/var/cache/ex4d-wheels/"
  rm -rf "$CHROOT$PY313_VENV"
  "$0" run /bin/sh -c "python3.13 -m venv $PY313_VENV && $PY313_VENV/bin/pip install -q --disable-pip-version-check \
    --no-index --find-links /var/cache/ex4d-wheels $BPY52_SPEC && rm -rf $NUMPY_TARGET && \
    $PY313_VENV/bin/pip install -q --disable-pip-version-check --no-index --find-links /var/cache/ex4d-wheels \
    --target $NUMPY_TARGET numpy"
  echo "$STAMP52" >"$stamp"
  log "ready: $PY313_VENV"
}

cmd="${1:-ensure}"
shift || true
case "$cmd" in
  ensure)
    if is_ready; then log "cached: $CHROOT"; else build; fi ;;
  path)
    echo "$CHROOT" ;;
  bpy52)
    is_ready || build
    ensure_bpy52 ;;
  run)
    is_ready || { log "not built: bash .ci/gui_chroot.sh ensure"; exit 2; }
    # A private mount namespace: concurrent runs never unmount each other's /proc, and the
    # mounts vanish with the namespace even if this script is killed; the trap unmounts anyway.
    exec unshare --mount --propagation private "$0" _inner "$@" ;;
  _inner)
    trap unmount_all EXIT INT TERM
    bind_mounts "$CHROOT"
    IFS=: read -r -a binds <<<"${EX4D_CHROOT_BINDS:-}"
    for b in "${binds[@]}"; do
      [ -n "$b" ] || continue
      mkdir -p "$CHROOT$b"
      mount --bind "$b" "$CHROOT$b"
      mounted+=("$CHROOT$b")
    done
    set +e
    chroot "$CHROOT" "$@"
    rc=$?
    set -e
    exit $rc ;;
  *)
    echo "usage: $0 ensure|path|run CMD..." >&2; exit 2 ;;
esac
