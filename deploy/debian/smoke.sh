#!/usr/bin/env bash
# The Debian package end to end, as root on a Debian or Ubuntu machine (CI
# runs it; so can you, on a machine without berth installed):
#   1. build it (deploy/debian/build.sh), unless given a .deb;
#   2. dpkg -i; check the user, the data dir, the modes, the conffiles, the
#      units (installed, not enabled), completions and man pages;
#   3. the installed `berth --version`, then `berth dev` as user berth on a
#      temporary data dir and free ports: /healthz (public port, with its CA,
#      and the admin port) and /api/v1/me with its admin token, then SIGTERM;
#      then `berth control` with the shipped /etc/berth/control.toml;
#   4. systemd-analyze verify on the installed units;
#   5. dpkg -i again over an edited conffile (kept), dpkg --remove (config and
#      data kept), dpkg --purge (gone; only the berth user stays, as Debian
#      keeps system users).
#
#   deploy/debian/smoke.sh [PATH.deb]
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
  echo "smoke: FAIL: $*" >&2
  exit 1
}
step() { echo "smoke: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root: it installs and purges the package"
status() { dpkg-query -W -f='${db:Status-Status}' berth 2>/dev/null || echo not-installed; }
case "$(status)" in
  not-installed) ;;
  *) fail "berth is already on this machine ($(status)); this script would purge it: dpkg --purge berth first" ;;
esac
for tool in curl systemd-analyze setpriv; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install curl systemd util-linux)"
done

deb=${1:-}
built_here=false
if [ -z "$deb" ]; then
  step "building the package"
  deb=$(deploy/debian/build.sh | tail -1)
  built_here=true
fi
[ -f "$deb" ] || fail "no package at $deb"
version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
step "package $deb (version $version)"

data=$(mktemp -d /tmp/berth-smoke.XXXXXX)
pid=
installed=false
cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ]; then
    [ -n "${log:-}" ] && [ -f "$log" ] && { echo "--- berth's output ($log):"; cat "$log"; } >&2
    if $installed; then
      echo "smoke: purging the package after the failure" >&2
      dpkg --purge berth >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$data"
  exit "$rc"
}
trap cleanup EXIT

# ---- 2. install ----
step "dpkg -i"
installed=true
dpkg -i "$deb"
[ "$(status)" = installed ] || fail "dpkg says $(status), not installed"
dpkg -L berth | sort >"$data/files"

[ -x /usr/bin/berth ] || fail "/usr/bin/berth is missing"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd berth) || fail "no user berth"
[ "$uid" -lt 1000 ] || fail "berth is not a system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] || fail "berth's shell is $shell"
[ "$home" = /var/lib/berth ] || fail "berth's home is $home"
getent group berth >/dev/null || fail "no group berth"
[ "$(stat -c '%U:%G %a' /var/lib/berth)" = "berth:berth 700" ] \
  || fail "/var/lib/berth is $(stat -c '%U:%G %a' /var/lib/berth), not berth:berth 700"

conffiles=$(dpkg-query -W -f='${Conffiles}\n' berth)
for f in control.toml control.env edge.toml edge.env agent.env; do
  grep -q " /etc/berth/$f " <<<"$conffiles" || fail "/etc/berth/$f is not a conffile: $conffiles"
done
for f in control.env edge.env agent.env; do
  [ "$(stat -c '%U:%G %a' "/etc/berth/$f")" = "root:root 600" ] || fail "/etc/berth/$f is not root:root 600"
done
[ "$(stat -c '%a' /etc/berth/control.toml)" = 644 ] || fail "/etc/berth/control.toml is not 644"

units=()
for u in berth-control berth-edge berth-agent; do
  f=$(grep -E "/systemd/system/$u\.service$" "$data/files" | head -1)
  [ -n "$f" ] || fail "$u.service is not in the package"
  grep -q '^ExecStart=/usr/bin/berth ' "$f" || fail "$f does not run /usr/bin/berth"
  units+=("$f")
  if compgen -G "/etc/systemd/system/*.wants/$u.service" >/dev/null; then
    fail "$u is enabled on install; it needs configuring first"
  fi
done
[ -s /usr/share/bash-completion/completions/berth ] || fail "no bash completion"
grep -q 'complete .*berth' /usr/share/bash-completion/completions/berth || fail "the bash completion is not one"
[ -s /usr/share/zsh/vendor-completions/_berth ] || fail "no zsh completion"
[ -s /usr/share/fish/vendor_completions.d/berth.fish ] || fail "no fish completion"
for page in berth berth-control berth-edge berth-agent berth-dev; do
  zcat "/usr/share/man/man1/$page.1.gz" | grep -q '^\.TH' || fail "no man page $page(1)"
done

# ---- 3. the installed binary ----
step "berth --version"
line=$(/usr/bin/berth --version)
echo "  $line"
[[ "$line" =~ ^berth\ ${upstream//./\\.}\ \(commit\ ([0-9a-f]{7}(-dirty)?|unknown),\ schema\ [0-9]+\)$ ]] \
  || fail "unexpected --version: $line"
if $built_here && head=$(git rev-parse --short=7 HEAD 2>/dev/null); then
  [[ "$line" == *"commit $head"* ]] || fail "--version does not name HEAD ($head): $line"
fi

# A free loopback port: nothing accepts a connection on it.
free_port() {
  local p
  for p in $(shuf -i 20000-60000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  fail "no free port"
}
port=$(free_port)
admin=$(free_port)
[ "$port" != "$admin" ] || admin=$(free_port)
chown berth:berth "$data"

# Starts the installed berth as user berth with a clean environment plus
# the given VAR=value words, then the command line; output to $log.
start_as_berth() {
  local vars=()
  while [[ "${1:-}" == *=* ]]; do vars+=("$1"); shift; done
  env -i PATH=/usr/bin:/bin HOME=/var/lib/berth RUST_LOG=info "${vars[@]}" \
    setpriv --reuid=berth --regid=berth --init-groups -- /usr/bin/berth "$@" >"$log" 2>&1 &
  pid=$!
}
# Waits for the banner and the admin token in $1 (the data dir).
wait_running() {
  for _ in $(seq 1 120); do
    grep -q 'is running' "$log" && [ -f "$1/admin-token" ] && return
    kill -0 "$pid" 2>/dev/null || fail "berth exited: $(cat "$log")"
    sleep 0.5
  done
  fail "berth did not start within 60 s"
}
# SIGTERM, and a clean exit within 30 s.
stop() {
  local rc=0
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$pid" 2>/dev/null && fail "berth still running 30 s after SIGTERM"
  wait "$pid" || rc=$?
  pid=
  [ "$rc" = 0 ] || fail "berth exited $rc after SIGTERM"
}

dir="$data/dev"
log="$data/berth.log"
step "berth dev as user berth on 127.0.0.1:$port (admin $admin), data in $dir"
start_as_berth dev --data-dir "$dir" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin"
wait_running "$dir"
[ "$(stat -c %U "$dir/berth.db")" = berth ] || fail "the database is not berth's"
[ "$(stat -c %a "$dir")" = 700 ] || fail "the data dir is not 0700"

base="https://berth.localhost:$port"
resolve=(--resolve "berth.localhost:$port:127.0.0.1" --cacert "$dir/ca.pem")
health=$(curl -fsS --max-time 10 "${resolve[@]}" "$base/healthz") || fail "GET $base/healthz"
echo "  $base/healthz: $health"
curl -fsS --max-time 10 "http://127.0.0.1:$admin/healthz" >/dev/null || fail "GET admin /healthz"
me=$(curl -fsS --max-time 10 "${resolve[@]}" -H "Authorization: Bearer $(cat "$dir/admin-token")" \
  "$base/api/v1/me") || fail "GET /api/v1/me"
echo "  /api/v1/me: $me"
grep -q '"username":"admin"' <<<"$me" || fail "/api/v1/me is not the admin: $me"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "${resolve[@]}" "$base/api/v1/me")
[ "$code" = 401 ] || fail "/api/v1/me without a token answered $code, not 401"
stop
step "berth dev stopped cleanly"

# The shipped /etc/berth/control.toml as the unit uses it, with only what
# this machine cannot have overridden through the environment: a loopback
# port instead of :443, a local CA instead of certificate files, a
# temporary data dir.
dir="$data/control"
log="$data/control.log"
step "berth control --config /etc/berth/control.toml as user berth on 127.0.0.1:$port"
start_as_berth BERTH_SERVER_LISTEN="127.0.0.1:$port" BERTH_TLS_MODE=self-signed \
  BERTH_SERVER_DATA_DIR="$dir" BERTH_ADMIN_LISTEN="127.0.0.1:$admin" \
  control --config /etc/berth/control.toml
wait_running "$dir"
host=$(sed -n 's/^base_domain *= *"\([^"]*\)".*/\1/p' /etc/berth/control.toml)
health=$(curl -fsS --max-time 10 --resolve "$host:$port:127.0.0.1" --cacert "$dir/ca.pem" \
  "https://$host:$port/healthz") || fail "GET https://$host:$port/healthz"
echo "  https://$host:$port/healthz: $health"
stop
step "berth control stopped cleanly"

# ---- 4. the units ----
step "systemd-analyze verify ${units[*]}"
verify=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze verify: $verify"
# It warns without failing; any line about our units is a finding.
if grep -i 'berth' <<<"$verify"; then
  fail "systemd-analyze verify has remarks on the units (above)"
fi

# ---- 5. upgrade in place, remove, purge ----
step "dpkg -i again, over an edited conffile and data"
echo "# edited by smoke.sh" >>/etc/berth/control.toml
touch /var/lib/berth/smoke-marker
dpkg -i "$deb"
grep -q '^# edited by smoke.sh$' /etc/berth/control.toml || fail "the reinstall overwrote the edited control.toml"
[ -e /var/lib/berth/smoke-marker ] || fail "the reinstall lost /var/lib/berth"

step "dpkg --remove"
dpkg --remove berth
[ "$(status)" = config-files ] || fail "after --remove dpkg says $(status), not config-files"
[ ! -e /usr/bin/berth ] || fail "/usr/bin/berth is still there after --remove"
[ -f /etc/berth/control.toml ] || fail "--remove deleted the configuration"
[ -e /var/lib/berth/smoke-marker ] || fail "--remove deleted the data"

step "dpkg --purge"
dpkg --purge berth
installed=false
[ "$(status)" = not-installed ] || fail "after --purge dpkg says $(status)"
left=()
while read -r f; do
  # Directories other packages share (/usr, /etc, ...) stay, of course.
  [ -e "$f" ] && [ ! -d "$f" ] && left+=("$f")
done <"$data/files"
[ ${#left[@]} = 0 ] || fail "left after purge: ${left[*]}"
for d in /etc/berth /var/lib/berth /var/lib/berth-edge /usr/share/doc/berth; do
  [ ! -e "$d" ] || fail "$d is still there after --purge"
done
if compgen -G '/var/lib/systemd/deb-systemd-helper-*/*berth*' >/dev/null \
   || compgen -G '/var/lib/systemd/deb-systemd-helper-*/*/*berth*' >/dev/null; then
  fail "deb-systemd-helper state left: $(ls -d /var/lib/systemd/deb-systemd-helper-*/*berth* /var/lib/systemd/deb-systemd-helper-*/*/*berth* 2>/dev/null)"
fi
getent passwd berth >/dev/null && step "the berth system user stays, as Debian keeps system users"
step "OK"
