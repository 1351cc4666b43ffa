#!/bin/sh
# Installs arcproxy from a cluster-connect relay, verified before it is ever run.
#
#   curl -fsSL https://relay.example.com/install.sh | sh
#
# The relay serves this file with its URL and its downloads signing key filled in. The script checks,
# in this order, and installs nothing when one fails:
#   1. the relay's list of downloads is signed by that key (EdDSA JWS, verified with OpenSSL 3:
#      ARC_OPENSSL when set, else the one on PATH, else Homebrew's openssl@3);
#      pin the key out of band with ARC_DOWNLOADS_KEY_SHA256 (printed by `arcrelay serve` at start);
#   2. the binary for this machine has the size and SHA-256 the signed list gives.
# Then it installs arcproxy and remembers the relay, so `arcproxy --cluster NAME` is all one types.
#
# Settings (environment): ARC_RELAY (default: the relay that served this script), ARC_INSTALL_DIR
# (default: /usr/local/bin when writable, else ~/.local/bin), ARC_DOWNLOADS_KEY_SHA256 (pin),
# ARC_OS / ARC_ARCH (default: from uname), ARC_OPENSSL (an OpenSSL 3 binary, when not found).
set -eu

relay="${ARC_RELAY:-@ARC_RELAY@}"
embedded_key='@ARC_DOWNLOADS_KEY_PEM@'
pinned_key_sha256="${ARC_DOWNLOADS_KEY_SHA256:-}"

fail() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*" >&2; }

case "$relay" in
  @*) fail "no relay: run the install.sh a relay serves (curl -fsSL https://RELAY/install.sh | sh) or set ARC_RELAY" ;;
  *@*|*[!]A-Za-z0-9:/._~%[-]*) fail "ARC_RELAY must be a plain URL (no user info, no shell characters), got: $relay" ;;
  https://*) ;;
  http://127.0.0.1|http://127.0.0.1[:/]*|http://localhost|http://localhost[:/]*|http://\[::1\]|http://\[::1\][:/]*) ;;
  *) fail "ARC_RELAY must be an https:// URL (plain http only on loopback), got: $relay" ;;
esac
relay="${relay%/}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# An openssl that verifies Ed25519 over raw input (`pkeyutl -rawin`, OpenSSL 3.0+) and hashes
# SHA-256: tried on RFC 8032's test 2 and on "abc", as a help text would not show a FIPS-only
# build that lists both and runs neither. macOS's own `openssl` is LibreSSL, which cannot;
# Homebrew's openssl@3 is not on PATH by default, so look there.
printf -- '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAPUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=\n-----END PUBLIC KEY-----\n' > "$work/probe-key.pem"
printf 'r' > "$work/probe-message"
can_verify_ed25519() {
  [ -x "$1" ] || return 1
  printf '%s' 'kqAJqfDUyrhyDoILX2QlQKKye1QWUD+Ps3YiI+vbadoIWsHkPhWZbkWPNhPQ8R2MOHsurrQwKu6wDSkWErsMAA==' | "$1" base64 -d -A > "$work/probe-signature" 2>/dev/null || return 1
  "$1" pkeyutl -verify -pubin -inkey "$work/probe-key.pem" -rawin -in "$work/probe-message" -sigfile "$work/probe-signature" >/dev/null 2>&1 || return 1
  [ "$(printf 'abc' | "$1" dgst -sha256 -r 2>/dev/null | cut -d' ' -f1)" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ]
}
openssl=""
if [ -n "${ARC_OPENSSL:-}" ]; then
  can_verify_ed25519 "$ARC_OPENSSL" || fail "ARC_OPENSSL=$ARC_OPENSSL is not an OpenSSL 3 that can verify Ed25519 signatures and hash SHA-256"
  openssl="$ARC_OPENSSL"
else
  for candidate in "$(command -v openssl 2>/dev/null || true)" /opt/homebrew/opt/openssl@3/bin/openssl /usr/local/opt/openssl@3/bin/openssl; do
    if [ -n "$candidate" ] && can_verify_ed25519 "$candidate"; then openssl="$candidate"; break; fi
  done
fi
if [ -z "$openssl" ]; then
  found=$( (openssl version) 2>/dev/null || echo "no openssl")
  case "$(uname -s)" in
    Darwin) fail "verifying the download's Ed25519 signature needs OpenSSL 3 (this machine has: $found); run brew install openssl@3, then this again" ;;
    *) fail "verifying the download's Ed25519 signature needs OpenSSL 3 (this machine has: $found); install it (Debian/Ubuntu: apt-get install openssl; Alpine: apk add openssl) or set ARC_OPENSSL to its path, then run this again" ;;
  esac
fi
if command -v sha256sum >/dev/null 2>&1; then sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else sha256() { "$openssl" dgst -sha256 -r "$1" | cut -d' ' -f1; }
fi

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --proto '=https,http' --proto-redir '=https' "$1" -o "$2" || fail "could not download $1"; }
  stream_progress() {
    if [ -t 2 ]; then curl -fL --proto '=https,http' --proto-redir '=https' --progress-bar "$1"
    else curl -fsSL --proto '=https,http' --proto-redir '=https' "$1"; fi
  }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1" || fail "could not download $1"; }
  # --show-progress is GNU wget 1.16+; busybox's wget (Alpine) and older GNU ones refuse it.
  stream_progress() {
    if [ -t 2 ] && wget --help 2>&1 | grep -q -- '--show-progress'; then wget -q --show-progress -O - "$1"
    else wget -q -O - "$1"; fi
  }
else
  fail "curl or wget is needed"
fi

# URL to FILE, never more than MAX bytes: a relay (or a cache before it) that streams without end
# must not fill the disk. One byte past the signed size is enough to show that the file is wrong.
fetch_capped() {
  { stream_progress "$1" || echo failed > "$work/fetch-failed"; } | head -c "$3" > "$2"
  [ ! -e "$work/fetch-failed" ] || [ "$(wc -c < "$2" | tr -d ' ')" -ge "$3" ] || fail "could not download $1"
}

# For what only shapes a hint: failing is no reason to stop.
fetch_optional() {
  if command -v curl >/dev/null 2>&1; then curl -fsS --proto '=https,http' --proto-redir '=https' "$1" -o "$2" 2>/dev/null
  else wget -q -O "$2" "$1" 2>/dev/null; fi
}

os="${ARC_OS:-}"
if [ -z "$os" ]; then
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    MINGW*|MSYS*|CYGWIN*) os=windows ;;
    *) fail "unsupported operating system $(uname -s); the relay serves linux, darwin and windows" ;;
  esac
fi
arch="${ARC_ARCH:-}"
if [ -z "$arch" ]; then
  case "$(uname -m)" in
    x86_64|amd64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) fail "unsupported CPU $(uname -m); the relay serves amd64 and arm64" ;;
  esac
fi
exe=""
[ "$os" = windows ] && exe=".exe"

# base64url (RFC 4648 section 5) without padding, as JWS uses it, to bytes.
b64url_decode() {
  s=$(printf '%s' "$1" | tr '_-' '/+')
  case $(( ${#s} % 4 )) in 2) s="$s==" ;; 3) s="$s=" ;; esac
  printf '%s' "$s" | "$openssl" base64 -d -A
}

# 1. The key: the one embedded by the relay, else the relay's well-known key; pinned when asked.
case "$embedded_key" in
  @*) fetch "$relay/.well-known/cluster-connect/downloads-key.pem" "$work/key.pem" ;;
  *) printf '%s\n' "$embedded_key" > "$work/key.pem" ;;
esac
"$openssl" pkey -pubin -in "$work/key.pem" -outform DER > "$work/key.der" 2>/dev/null || fail "the relay's downloads key is not a public key"
key_sha256=$("$openssl" dgst -sha256 -r "$work/key.der" | cut -d' ' -f1)
[ -n "$key_sha256" ] || fail "$openssl could not hash the relay's downloads key; set ARC_OPENSSL to another OpenSSL 3"
pinned_key_sha256=$(printf '%s' "$pinned_key_sha256" | tr 'A-F' 'a-f')
if [ -n "$pinned_key_sha256" ] && [ "$key_sha256" != "$pinned_key_sha256" ]; then
  fail "the relay's downloads key is $key_sha256, not the pinned ARC_DOWNLOADS_KEY_SHA256 $pinned_key_sha256; nothing was installed"
fi

# 2. The signed list: header.payload.signature, the signature over "header.payload" (RFC 7515).
fetch "$relay/v1/downloads/index.jws" "$work/index.jws"
jws=$(tr -d '\r\n' < "$work/index.jws")
header=${jws%%.*}
rest=${jws#*.}
payload=${rest%%.*}
signature=${rest#*.}
[ -n "$header" ] && [ -n "$payload" ] && [ -n "$signature" ] && [ "$signature" = "${signature%.*}" ] || fail "the relay's list of downloads is not a signed document"
printf '%s.%s' "$header" "$payload" > "$work/signed-part"
b64url_decode "$signature" > "$work/signature" 2>/dev/null || fail "the list's signature is not base64url"
if ! "$openssl" pkeyutl -verify -pubin -inkey "$work/key.pem" -rawin -in "$work/signed-part" -sigfile "$work/signature" >/dev/null 2>&1; then
  fail "the relay's list of downloads does not verify with key $key_sha256: it was changed after the relay signed it; nothing was installed"
fi
b64url_decode "$header" | grep -q '"typ":"cluster-connect-downloads+jws"' || fail "the signed document is not a list of downloads"
b64url_decode "$payload" > "$work/index.json"
head -n 1 "$work/index.json" | grep -qF "{\"relay\":\"$relay\"," || fail "the signed list is for another relay than $relay; nothing was installed"

line=$(grep "\"path\":\"/v1/downloads/arcproxy/$os-$arch\"" "$work/index.json" || true)
[ -n "$line" ] || fail "the relay serves no arcproxy for $os-$arch"
want_sha256=$(printf '%s' "$line" | sed -n 's/.*"sha256":"\([0-9a-f]\{64\}\)".*/\1/p')
want_size=$(printf '%s' "$line" | sed -n 's/.*"size":\([0-9]\{1,\}\).*/\1/p')
version=$(printf '%s' "$line" | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
[ -n "$want_sha256" ] && [ -n "$want_size" ] || fail "the signed list has no checksum for arcproxy $os-$arch"

# 3. The binary: size and SHA-256 as signed.
say "downloading arcproxy $version for $os-$arch from $relay"
fetch_capped "$relay/v1/downloads/arcproxy/$os-$arch" "$work/arcproxy$exe" $((want_size + 1))
got_size=$(wc -c < "$work/arcproxy$exe" | tr -d ' ')
[ "$got_size" = "$want_size" ] || fail "the downloaded arcproxy is $got_size bytes, the signed list says $want_size; nothing was installed"
got_sha256=$(sha256 "$work/arcproxy$exe")
[ "$got_sha256" = "$want_sha256" ] || fail "the downloaded arcproxy has SHA-256 $got_sha256, the signed list says $want_sha256; nothing was installed"
chmod 755 "$work/arcproxy$exe"

# 4. Install: atomically, into a folder this user can write.
dir="${ARC_INSTALL_DIR:-}"
if [ -z "$dir" ]; then
  if [ -w /usr/local/bin ] 2>/dev/null; then dir=/usr/local/bin; else dir="$HOME/.local/bin"; fi
fi
mkdir -p "$dir" || fail "cannot create $dir; set ARC_INSTALL_DIR to a folder you can write"
[ -w "$dir" ] || fail "cannot write to $dir; set ARC_INSTALL_DIR to a folder you can write"
# mktemp creates the file itself (exclusively): a symlink planted under a fixed name is never followed.
staged=$(mktemp "$dir/.arcproxy.XXXXXXXX") || fail "cannot write to $dir; set ARC_INSTALL_DIR to a folder you can write"
cat "$work/arcproxy$exe" > "$staged" && chmod 755 "$staged" || { rm -f "$staged"; fail "cannot write to $dir; set ARC_INSTALL_DIR to a folder you can write"; }
mv -f "$staged" "$dir/arcproxy$exe"

# 5. Remember the relay with the binary just verified.
"$dir/arcproxy$exe" config set-relay "$relay" --downloads-key-sha256 "$key_sha256" >/dev/null || fail "installed $dir/arcproxy$exe, but it could not remember the relay; pass --relay $relay"
say "arcproxy $version installed to $dir/arcproxy$exe (SHA-256 $got_sha256, list signed by key $key_sha256)"
# The next step depends on the relay: a login through its identity provider, or a token from its admin.
if fetch_optional "$relay/.well-known/cluster-connect" "$work/client-config.json" && ! grep -q '"loginIssuers":\[\]' "$work/client-config.json"; then
  say "relay $relay remembered: next, arcproxy login, then arcproxy clusters and arcproxy --cluster NAME"
else
  say "relay $relay remembered: next, set ARC_TOKEN to a token from the relay's admin (arcrelay token create), then arcproxy clusters and arcproxy --cluster NAME"
fi
case ":$PATH:" in *":$dir:"*) ;; *) say "note: $dir is not on your PATH; add it, or run $dir/arcproxy$exe" ;; esac
