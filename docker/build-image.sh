#!/usr/bin/env bash
# Builds the shoal runtime image on a machine with no container registry:
#   docker/build-image.sh [TAG]        (default tag: shoal:dev)
# SHOAL_IMAGE_PROFILE=debug puts the debug binary in the image instead (the test suite
# does, to reuse the build it has made anyway).
#
# 1. A Debian bookworm base is made locally with debootstrap and imported into Docker
#    (`shoal-base:bookworm`), once: later builds reuse it. Its packages come from
#    $DEBIAN_MIRROR if set (a Debian archive's URL, the one debootstrap takes), else
#    from the Debian mirror this machine's own apt configuration uses (see
#    debian_mirror below); with neither, the script stops and says so.
# 2. The `shoal` binary is built here (release) against the cached librocksdb.a.
# 3. The runtime stage of docker/Dockerfile is built as it is, on that base, with the
#    binary copied in: the same image the Dockerfile gives where a registry exists.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-shoal:dev}"
suite=bookworm
base="shoal-base:$suite"

# The Debian mirror to make the base from: $DEBIAN_MIRROR, else the first Debian
# archive in this machine's apt sources (sources.list and sources.list.d/*.list in
# one-line form, sources.list.d/*.sources in deb822 form, where apt-config says they
# are): a `deb` source of component main for the suite $suite, else for this
# machine's own release by its codename, else by stable, testing, unstable or sid (a
# Debian archive serves $suite alongside them; third-party sources mostly name
# suites of their own).
# Only on Debian itself: elsewhere the apt sources name no Debian archive.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local id="" own="" list=/etc/apt/sources.list parts=/etc/apt/sources.list.d/ f
  if [ -r /etc/os-release ]; then
    id="$(. /etc/os-release && echo "${ID:-}")"
    own="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  fi
  if [ "$id" != debian ]; then
    echo "build-image.sh: this machine is not Debian (ID=${id:-unknown}), so its apt sources name no Debian mirror; set DEBIAN_MIRROR to one (DEBIAN_MIRROR=http://MIRROR/debian)" >&2
    return 1
  fi
  if command -v apt-config >/dev/null 2>&1; then
    eval "$(apt-config shell list Dir::Etc::sourcelist/f parts Dir::Etc::sourceparts/d)"
  fi
  local files=()
  [ -f "$list" ] && files+=("$list")
  for f in "$parts"*.list "$parts"*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  local mirror=""
  if [ ${#files[@]} -gt 0 ]; then
    mirror="$(awk -v want="$suite" -v own="$own" '
      function consider(types, uris, suites, comps,   u, s, nu, ns, i, j) {
        if (types !~ /(^| )deb( |$)/ || comps !~ /(^| )main( |$)/) return
        nu = split(uris, u, " "); ns = split(suites, s, " ")
        for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) {
          if (u[i] !~ /^(https?|file):/) continue
          sub(/\/+$/, "", u[i])
          if (s[j] == want && best == "") best = u[i]
          if (s[j] == own && mine == "") mine = u[i]
          if (s[j] ~ /^(stable|testing|unstable|sid)$/ && alias == "") alias = u[i]
        }
      }
      function flush() {
        if (enabled !~ /^(no|false|off)$/) consider(t, u, s, c)
        t = u = s = c = ""; enabled = ""
      }
      FNR == 1 { flush() }
      FILENAME ~ /\.sources$/ {
        if ($0 ~ /^[ \t]*$/) { flush(); next }
        if ($0 ~ /^[#\t ]/ || index($0, ":") == 0) next
        key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
        gsub(/\t/, " ", val)
        if (key == "types") t = val; else if (key == "uris") u = val
        else if (key == "suites") s = val; else if (key == "components") c = val
        else if (key == "enabled") { enabled = tolower(val); gsub(/[ \t]/, "", enabled) }
        next
      }
      {
        sub(/#.*/, ""); gsub(/\[[^]]*\]/, " ")
        if ($1 != "deb" || NF < 4) next
        comps = ""; for (i = 4; i <= NF; i++) comps = comps " " $i
        consider("deb", $2, $3, comps)
      }
      END { flush(); print (best != "" ? best : mine != "" ? mine : alias) }
    ' "${files[@]}")"
  fi
  if [ -z "$mirror" ]; then
    echo "build-image.sh: no Debian mirror in this machine's apt sources (${files[*]:-none found}); set DEBIAN_MIRROR to one (DEBIAN_MIRROR=http://MIRROR/debian)" >&2
    return 1
  fi
  echo "$mirror"
}

if ! docker image inspect "$base" >/dev/null 2>&1; then
  mirror="$(debian_mirror)"
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing debootstrap (Debian package)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  echo "making $base with debootstrap from $mirror (once per machine)" >&2
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >/dev/null
  # Slim it as debian:bookworm-slim is: no apt lists, docs or caches.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" -c . | docker import - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

source scripts/env.sh
profile="${SHOAL_IMAGE_PROFILE:-release}"
case "$profile" in
  release) cargo build --release --quiet -p shoal-cli; bin="$CARGO_TARGET_DIR/release/shoal" ;;
  debug) cargo build --quiet -p shoal-cli; bin="$CARGO_TARGET_DIR/debug/shoal" ;;
  *) echo "SHOAL_IMAGE_PROFILE must be release or debug" >&2; exit 2 ;;
esac
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/shoal"
# The runtime stage of docker/Dockerfile, with the binary from this build context.
{
  echo "ARG RUNTIME_BASE"
  sed -n '/^# --- runtime stage/,$p' docker/Dockerfile | sed 's#^COPY --from=builder /out/shoal #COPY shoal #'
} >"$ctx/Dockerfile"
docker build -q --build-arg RUNTIME_BASE="$base" -t "$tag" "$ctx" >/dev/null
echo "$tag"
