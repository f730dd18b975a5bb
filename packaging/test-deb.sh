#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine with dpkg, checks what it installed
# (binary, configuration, unit, user, modes, man page, completions), runs the commands of the
# runbook (docs/operations.md) against it with a local emulator as Live Station, upgrades it in
# place, then removes and purges it and checks that nothing is left. Finally it installs it once
# more on a PATH without systemd-sysusers, to check the adduser fallback, and purges it again.
#
#   packaging/test-deb.sh                  cargo deb (the release package), then the checks
#   packaging/test-deb.sh --debug-build    package target/debug/lsrecd, the binary the test
#                                          suite just ran (what .ci/run does: no second build)
#   packaging/test-deb.sh FILE.deb         the checks on an existing package
#
# It changes the machine, so it needs root; it skips, saying so, where dpkg is missing or when
# not root, and refuses to run where an lsrecd package is already installed or where the paths
# the runbook uses hold something. Needs cargo-deb (unless given a .deb), systemd-analyze
# (package systemd), man (man-db), sqlite3 and curl; .ci/run installs them. With --debug-build it
# takes about 1.5 minutes on a busy 2-core machine, 35 s of it the runbook's commands (mostly apt).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { echo "-- $*"; }
fail() {
    echo "FAILED: $*" >&2
    exit 1
}
skip() {
    echo "SKIPPED: $*"
    exit 0
}

command -v dpkg >/dev/null || skip "dpkg is not installed: the package test needs a Debian-like system"
[ "$(id -u)" = 0 ] || skip "installing a package needs root"
for tool in systemd-analyze man runuser setpriv flock sqlite3 curl apt useradd; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install systemd man-db util-linux sqlite3 curl)"
done

# One run at a time on a machine: the test installs and purges the one lsrecd package.
exec 9>/run/lock/lsrecd-package-test.lock
flock 9

package_state() { dpkg-query -W -f='${db:Status-Status}' lsrecd 2>/dev/null || true; }
case "$(package_state)" in
"" | not-installed) ;;
*) fail "an lsrecd package is on this machine ($(package_state)); this test installs and purges its own" ;;
esac

# The runbook's paths, and a user standing for its alice: created and removed by this test, so an
# operator's are never touched.
reader=lsrecd-alice
runbook_paths=(/var/backups/lsrecd /root/lsrecd-move /root/lsrecd-move.db /root/lsrecd-move.tar.gz)
for path in "${runbook_paths[@]}"; do
    [ ! -e "$path" ] || fail "$path exists; the runbook's commands would overwrite or remove it"
done
! getent passwd "$reader" >/dev/null || fail "a user $reader exists; this test makes and removes its own"
if (exec 3<>/dev/tcp/127.0.0.1/9464) 2>/dev/null; then
    fail "127.0.0.1:9464 is in use; the packaged configuration's [metrics] listens there"
fi

work=$(mktemp -d)
# User lsrecd reaches the unit's credentials directory inside (and nothing it cannot name).
chmod 0711 "$work"
daemon_pid=""
emulator_pid=""
user_existed=no
getent passwd lsrecd >/dev/null && user_existed=yes
cleanup() {
    status=$?
    if [ -n "$daemon_pid" ] && [ "$status" != 0 ]; then
        echo "-- the last lines of lsrecd run's log"
        tail -n 20 "$work/daemon.log"
    fi
    for pid in $daemon_pid $emulator_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if getent passwd "$reader" >/dev/null; then
        userdel "$reader" 2>/dev/null || true
    fi
    rm -rf "${runbook_paths[@]}"
    if [ "$(package_state)" != "" ] && [ "$(package_state)" != not-installed ]; then
        echo "-- cleaning up: purging the package left by a failed check"
        dpkg --purge lsrecd >/dev/null 2>&1 || true
    fi
    if [ "$user_existed" = no ] && getent passwd lsrecd >/dev/null; then
        userdel lsrecd 2>/dev/null || true
    fi
    if [ "$user_existed" = no ] && getent group lsrecd >/dev/null; then
        groupdel lsrecd 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

# --- the package ---------------------------------------------------------------------------
target=${CARGO_TARGET_DIR:-target}
case "${1:-}" in
"")
    step "cargo deb (release)"
    deb=$(cargo deb --locked | tail -n1)
    ;;
--debug-build)
    step "cargo deb from the debug build"
    cargo build --locked --quiet --bin lsrecd
    # cargo-deb packages target/<profile>/lsrecd; the deb-check profile's directory holds the
    # binary the tests ran against, so CI does not compile lsrecd a second time.
    mkdir -p "$target/deb-check"
    cp "$target/debug/lsrecd" "$target/deb-check/lsrecd"
    deb=$(cargo deb --locked --profile deb-check --no-build --no-dbgsym --fast | tail -n1)
    ;;
*.deb) deb=$1 ;;
*) fail "usage: $0 [--debug-build | FILE.deb]" ;;
esac
[ -f "$deb" ] || fail "no package at '$deb'"
deb=$(realpath "$deb")
version=$(dpkg-deb -f "$deb" Version)
echo "   $deb ($version, $(du -h "$deb" | cut -f1))"

step "maintainer scripts parse (sh -n)"
dpkg-deb -e "$deb" "$work/control"
for script in postinst prerm postrm; do
    sh -n "$work/control/$script" || fail "$script does not parse"
done

# Paths named after lsrecd outside the repository and home directories, before and after.
lsrecd_paths() {
    find /etc /usr /var /opt /srv -xdev -name '*lsrecd*' -not -path '/var/lib/dpkg/*' 2>/dev/null | sort
}
lsrecd_paths >"$work/paths-before"

# --- install -------------------------------------------------------------------------------
step "dpkg -i"
dpkg -i "$deb" >"$work/install.log" 2>&1 || {
    cat "$work/install.log"
    fail "dpkg -i"
}
cat "$work/install.log"
grep -q "not enabled and not started" "$work/install.log" || fail "no first-install instructions"
! grep -i "warning" "$work/install.log" || fail "warnings while installing (above)"
[ "$(package_state)" = installed ] || fail "package state is $(package_state)"

step "lsrecd --version"
[ "$(command -v lsrecd)" = /usr/bin/lsrecd ] || fail "lsrecd resolves to $(command -v lsrecd)"
expected="lsrecd ${version%-*}"
[ "$(lsrecd --version)" = "$expected" ] || fail "lsrecd --version says '$(lsrecd --version)', not '$expected'"

step "the lsrecd user and group"
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd lsrecd) || fail "no lsrecd user"
[ "$home" = /var/lib/lsrecd ] || fail "home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "shell is $shell"
getent group lsrecd >/dev/null || fail "no lsrecd group"

step "file owners and modes"
mode_is() {
    actual=$(stat -c '%a %U:%G' "$2")
    [ "$actual" = "$1" ] || fail "$2 is $actual, expected $1"
    echo "   $1  $2"
}
mode_is "755 root:root" /usr/bin/lsrecd
mode_is "750 root:lsrecd" /etc/lsrecd
mode_is "640 root:lsrecd" /etc/lsrecd/config.toml
mode_is "750 lsrecd:lsrecd" /var/lib/lsrecd
mode_is "644 root:root" /usr/lib/systemd/system/lsrecd.service
mode_is "644 root:root" /usr/lib/sysusers.d/lsrecd.conf
mode_is "644 root:root" /usr/share/man/man1/lsrecd.1.gz
mode_is "644 root:root" /usr/share/bash-completion/completions/lsrecd
mode_is "644 root:root" /usr/share/zsh/vendor-completions/_lsrecd
mode_is "644 root:root" /usr/share/fish/vendor_completions.d/lsrecd.fish
for doc in README.md operations.md database.md high-availability.md config.toml.example examples/prometheus/lsrecd-rules.yml; do
    mode_is "644 root:root" "/usr/share/doc/lsrecd/$doc"
done
conffiles=$(dpkg-query -W -f='${Conffiles}\n' lsrecd)
grep -q "^ /etc/lsrecd/config.toml " <<<"$conffiles" || fail "/etc/lsrecd/config.toml is not a conffile"

step "lsrecd check on the installed configuration, as the lsrecd user"
as_lsrecd() { runuser -u lsrecd -- env -i PATH=/usr/bin:/bin "$@"; }
as_lsrecd LSRECD_ACCESS_KEY=test-access-key LSRECD_SECRET_KEY=test-secret-key \
    lsrecd check >"$work/check.out" 2>&1 || {
    cat "$work/check.out"
    fail "lsrecd check with keys in the environment"
}
grep -q "access key from \$LSRECD_ACCESS_KEY" "$work/check.out" || fail "keys not from the environment: $(cat "$work/check.out")"
cat "$work/check.out"
mkdir -m 0700 "$work/credentials"
printf 'test-access-key' >"$work/credentials/access_key"
printf 'test-secret-key' >"$work/credentials/secret_key"
env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$work/credentials" lsrecd check >"$work/check.out" 2>&1 ||
    fail "lsrecd check with keys as systemd credentials: $(cat "$work/check.out")"
grep -q "secret key from systemd credential" "$work/check.out" || fail "$(cat "$work/check.out")"
code=0
as_lsrecd lsrecd check >"$work/check.out" 2>&1 || code=$?
[ "$code" = 78 ] || fail "lsrecd check without keys exited $code, not 78: $(cat "$work/check.out")"
as_lsrecd lsrecd check --no-credentials >/dev/null || fail "lsrecd check --no-credentials"

step "systemd-analyze verify on the installed unit (any output fails)"
unit=/usr/lib/systemd/system/lsrecd.service
code=0
SYSTEMD_COLORS=0 systemd-analyze verify --no-pager "$unit" >"$work/verify.out" 2>&1 || code=$?
if [ "$code" != 0 ] || [ -s "$work/verify.out" ]; then
    cat "$work/verify.out"
    fail "systemd-analyze verify exited $code"
fi

step "systemd-analyze security --offline=true on the installed unit (exposure <= 2.0)"
SYSTEMD_COLORS=0 systemd-analyze security --offline=true --threshold=20 --no-pager "$unit" \
    >"$work/security.out" 2>&1 || {
    tail -5 "$work/security.out"
    fail "systemd-analyze security"
}
exposure=$(sed -n 's/.*Overall exposure level for lsrecd.service: \([0-9.]*\).*/\1/p' "$work/security.out")
[ -n "$exposure" ] || fail "no exposure level in: $(tail -3 "$work/security.out")"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure $exposure > 2.0"
echo "   exposure $exposure"

step "man lsrecd"
export MANPAGER=cat MANWIDTH=100 MAN_DISABLE_SECCOMP=1
page=$(LC_ALL=C man lsrecd 2>"$work/man.err") || fail "man lsrecd: $(cat "$work/man.err")"
grep -q "^SUBCOMMANDS" <<<"$page" || fail "man lsrecd has no SUBCOMMANDS: $page"
page=$(LC_ALL=C man lsrecd-check 2>&1) || fail "man lsrecd-check: $page"
grep -q -- "--no-credentials" <<<"$page" || fail "man lsrecd-check does not describe --no-credentials"

step "bash completion from the installed file"
completes() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    bash --norc --noprofile -c 'source /usr/share/bash-completion/completions/lsrecd
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
        _lsrecd lsrecd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf "%s\n" "${COMPREPLY[@]}"' completes "$@"
}
offered=$(completes lsrecd "")
for sub in run check status records start stop emulator demo completions manpage; do
    grep -qx "$sub" <<<"$offered" || fail "'lsrecd <TAB>' does not offer $sub: $offered"
done
[ "$(completes lsrecd che)" = check ] || fail "'lsrecd che<TAB>' gives '$(completes lsrecd che)'"
installed=$(dpkg -L lsrecd)
for shell in zsh fish; do
    if command -v "$shell" >/dev/null; then
        "$shell" -n "$(grep -m1 "/$shell/.*lsrecd" <<<"$installed")" || fail "$shell completion does not parse"
    else
        echo "   ($shell not installed: its completion file is only checked to be present)"
    fi
done

if command -v promtool >/dev/null; then
    step "promtool check rules on the installed alert rules"
    promtool check rules /usr/share/doc/lsrecd/examples/prometheus/lsrecd-rules.yml >/dev/null
fi

# --- the runbook, run ------------------------------------------------------------------------
# The commands of docs/operations.md, run against the installed package, with a local emulator
# (loopback only) as Live Station. `runbook` runs runbook lines given verbatim in a heredoc;
# tests/runbook.rs checks that every command of the runbook's sh blocks is in one of them or in
# this list of commands not run here, each followed by what runs instead:
#
# not run: cargo deb
#     the package is built at the top of this script (with --debug-build from the debug binary)
# not run: systemctl daemon-reload
#     there is no systemd manager; systemd-analyze verify reads the drop-in as it would
# not run: systemctl enable --now lsrecd
#     `systemctl enable lsrecd` (which works without a manager), then start_daemon: the unit's
#     ExecStartPre= and ExecStart= lines as systemd runs them (user and group lsrecd, UMask=0027,
#     the keys copied into a credentials directory), waiting until /readyz answers 200: the first
#     poll succeeded, which is what `systemctl enable --now` waits for
# not run: systemctl start lsrecd
#     start_daemon
# not run: systemctl status lsrecd
#     the daemon is running and /readyz answers 200
# not run: journalctl -u lsrecd -f
#     the daemon's stderr goes to $work/daemon.log, whose last lines are printed when a check fails
# not run: systemctl stop lsrecd
#     stop_daemon: SIGTERM, then lsrecd must exit 0 within the unit's TimeoutStopSec=15s
# not run: systemctl disable --now lsrecd
#     `systemctl disable lsrecd`, then stop_daemon
#
# Placeholders of the runbook replaced when run: alice by a throwaway user ($reader), the package
# files by the package under test (lsrecd_0.1.0-1_amd64.deb) and a copy of it with a higher version
# (lsrecd_0.2.0-1_amd64.deb), and the date of the backup to restore (2026-11-27) by the date of
# the backup taken just before.
runbook_started=$SECONDS
newer_deb=$work/lsrecd-newer.deb
backup_date=2026-11-27
# runbook [--as USER] [--stdin FILE] <<'SH' ...runbook lines... SH: runs the lines with bash -e,
# as root in $work or as USER (no environment but PATH and HOME) in /, after replacing the
# placeholders. Prints the lines and their output; the output stays in $work/runbook.out.
runbook() {
    local as="" input=/dev/null text line code=0
    while [ $# -gt 0 ]; do
        case $1 in
        --as) as=$2 ;;
        --stdin) input=$2 ;;
        *) fail "runbook: unknown option $1" ;;
        esac
        shift 2
    done
    text=$(cat)
    text=${text//alice/$reader}
    text=${text//.\/target\/debian\/lsrecd_0.1.0-1_amd64.deb/$deb}
    text=${text//.\/lsrecd_0.1.0-1_amd64.deb/$deb}
    text=${text//.\/lsrecd_0.2.0-1_amd64.deb/$newer_deb}
    text=${text//2026-11-27/$backup_date}
    while IFS= read -r line; do
        echo "   ${as:-root}\$ $line"
    done <<<"$text"
    if [ -n "$as" ]; then
        (cd / && runuser -u "$as" -- env -i PATH=/usr/bin:/bin HOME=/ bash -e -o pipefail -c "$text") \
            <"$input" >"$work/runbook.out" 2>&1 || code=$?
    else
        (cd "$work" && bash -e -o pipefail -c "$text") <"$input" >"$work/runbook.out" 2>&1 || code=$?
    fi
    sed 's/^/      /' "$work/runbook.out"
    [ "$code" = 0 ] || fail "the runbook's commands above exited $code"
}
said() { grep -qE -- "$1" "$work/runbook.out" || fail "the output above does not match '$1'"; }

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds, for SECONDS at most.
# What COMMAND last wrote to $work/waited.out is printed when it never succeeds.
wait_for() {
    local limit=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    rm -f "$work/waited.out"
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            [ ! -s "$work/waited.out" ] || cat "$work/waited.out"
            fail "$what: not within $limit s"
        fi
        sleep 0.1
    done
}
# Whether process $1 (a child of this shell) has exited: gone, or a zombie not yet waited for.
exited() { [ ! -e "/proc/$1" ] || [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# What systemd would do for the unit: run ExecStartPre= and ExecStart= as user and group lsrecd
# with UMask=0027 and no environment but CREDENTIALS_DIRECTORY, where LoadCredential= put copies
# of the keys that only lsrecd can read.
unit_credentials=$work/unit-credentials
as_service=(setpriv --reuid=lsrecd --regid=lsrecd --init-groups --no-new-privs
    env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$unit_credentials")
ready() {
    ! exited "$daemon_pid" || {
        tail -n 30 "$work/daemon.log"
        fail "lsrecd run exited while starting (log above)"
    }
    [ "$(curl -s -o "$work/waited.out" -w '%{http_code}' http://127.0.0.1:9464/readyz)" = 200 ]
}
start_daemon() {
    local key pre start foreign begun=$SECONDS
    # What root ran in the state directory (sqlite3, lsrecd status) left nothing lsrecd cannot write.
    foreign=$(find /var/lib/lsrecd ! -user lsrecd)
    [ -z "$foreign" ] || fail "not owned by lsrecd: $foreign"
    rm -rf "$unit_credentials"
    install -d -m 0500 -o lsrecd -g lsrecd "$unit_credentials"
    for key in access_key secret_key; do
        install -m 0400 -o lsrecd -g lsrecd "/etc/lsrecd/$key" "$unit_credentials/$key"
    done
    pre=$(sed -n 's/^ExecStartPre=//p' "$unit")
    start=$(sed -n 's/^ExecStart=//p' "$unit")
    if [ -z "$pre" ] || [ -z "$start" ]; then
        fail "no ExecStartPre= or ExecStart= in $unit"
    fi
    # The unit's command lines are split into words as systemd does. The daemon is this shell's
    # child ($daemon_pid is lsrecd itself) and does not inherit the lock on fd 9.
    # shellcheck disable=SC2086
    (umask 0027 && exec "${as_service[@]}" $pre) >"$work/start-pre.out" 2>&1 ||
        fail "ExecStartPre=$pre: $(cat "$work/start-pre.out")"
    # shellcheck disable=SC2086
    (umask 0027 && exec "${as_service[@]}" $start) >>"$work/daemon.log" 2>&1 9>&- &
    daemon_pid=$!
    wait_for 60 "lsrecd ready (/readyz answering 200)" ready
    echo "   (lsrecd run, pid $daemon_pid: ready after $((SECONDS - begun)) s)"
}
stop_daemon() {
    local code=0 begun=$SECONDS
    kill -TERM "$daemon_pid"
    wait_for 15 "lsrecd exiting after SIGTERM (TimeoutStopSec=15s)" exited "$daemon_pid"
    wait "$daemon_pid" || code=$?
    daemon_pid=""
    [ "$code" = 0 ] || fail "lsrecd run exited $code after SIGTERM: $(tail -n 20 "$work/daemon.log")"
    echo "   (lsrecd run: exited after $((SECONDS - begun)) s)"
}
# db SQL: the answer of the live database, read as operators read it.
db() { sqlite3 -readonly /var/lib/lsrecd/lsrecd.db "$1" 2>/dev/null; }
db_says() {
    db "$1" >"$work/waited.out"
    [ "$(cat "$work/waited.out")" = "$2" ]
}

step "runbook: the API keys (typed on stdin as the runbook says, with the newline of Enter)"
access_key=runbook-access-key
secret_key=runbook-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$access_key" >"$work/access_key.typed")
(umask 077 && printf '%s\n' "$secret_key" >"$work/secret_key.typed")
runbook --stdin "$work/access_key.typed" <<'SH'
sh -c 'umask 077 && cat > /etc/lsrecd/access_key'
SH
runbook --stdin "$work/secret_key.typed" <<'SH'
sh -c 'umask 077 && cat > /etc/lsrecd/secret_key'
SH
runbook <<'SH'
ls -l /etc/lsrecd
SH
said '^-rw------- 1 root root .* access_key$'
said '^-rw------- 1 root root .* secret_key$'
runbook <<'SH'
env CREDENTIALS_DIRECTORY=/etc/lsrecd lsrecd check
SH
said 'access key from systemd credential /etc/lsrecd/access_key'
said 'secret key from systemd credential /etc/lsrecd/secret_key'

step "runbook: configure a channel and a schedule, Live Station emulated on 127.0.0.1"
setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \
    lsrecd emulator --listen 127.0.0.1:0 --access-key "$access_key" --secret-key "$secret_key" \
    --processing 1s >"$work/emulator.out" 2>&1 9>&- &
emulator_pid=$!
wait_for 30 "the emulator listening" grep -q '^listening on http://127\.0\.0\.1:' "$work/emulator.out"
emulator=$(sed -n 's/^listening on //p' "$work/emulator.out")
channel=ls-20261128000000-Runbk
curl -sf -X POST -H 'content-type: application/json' "$emulator/_emulator/channels" \
    -d "{\"id\": \"$channel\", \"name\": \"studio-a\", \"record_type\": \"MANUAL_UPLOAD\", \"status\": \"PUBLISHING\"}" \
    >/dev/null || fail "the emulator did not take channel $channel"
sed -i -e "s|^\[api\]\$|[api]\nendpoint = \"$emulator\"|" \
    -e 's|^\[daemon\]$|[daemon]\npoll_interval = "1s"\nrecord_poll_interval = "1s"|' /etc/lsrecd/config.toml
cat >>/etc/lsrecd/config.toml <<TOML

[[channel]]
id = "$channel"
label = "studio-a"
record_when_live = true

# 09:00 on 29 February: never during this test, and its next fire times are known.
[[schedule]]
name = "leap-day"
channel = "studio-a"
cron = "0 9 29 2 *"
duration = "1h"
TOML
mode_is "640 root:lsrecd" /etc/lsrecd/config.toml
runbook <<'SH'
env CREDENTIALS_DIRECTORY=/etc/lsrecd lsrecd check --next 3
SH
for year in 2028 2032 2036; do said "$year-02-29T09:00:00\\+09:00"; done
! grep -q 2040-02-29 "$work/runbook.out" || fail "--next 3 printed a fourth fire time"
runbook <<'SH'
env CREDENTIALS_DIRECTORY=/etc/lsrecd lsrecd probe
SH
said '^keys and region: *accepted$'
said "^  $channel \(studio-a\): PUBLISHING"
said '^result: usable$'
cp /etc/lsrecd/config.toml "$work/studio-seoul.toml"
runbook <<'SH'
lsrecd check --no-credentials --config ./studio-seoul.toml
SH
! grep -qi "key from" "$work/runbook.out" || fail "--no-credentials read a key"
printf 'unknown_key = 1\n' >>"$work/studio-seoul.toml"
code=0
(cd "$work" && lsrecd check --no-credentials --config ./studio-seoul.toml) >"$work/check.out" 2>&1 || code=$?
[ "$code" = 78 ] || fail "a configuration with an unknown key: exit $code, not 78"
grep -qE 'studio-seoul\.toml:[0-9]+:[0-9]+: schedule\[0\]\.unknown_key: ' "$work/check.out" ||
    fail "not FILE:LINE:COLUMN: KEY: MESSAGE: $(cat "$work/check.out")"

step "runbook: first start"
systemctl enable lsrecd >/dev/null 2>&1 || fail "systemctl enable lsrecd"
start_daemon
wait_for 30 "a recording of $channel in the database" db_says "SELECT count(*) FROM active_recordings" 1
record_id=$(db "SELECT record_id FROM active_recordings")
metric_is() {
    curl -s http://127.0.0.1:9464/metrics >"$work/waited.out"
    grep -qx "$1" "$work/waited.out"
}
wait_for 30 "lsrecd_recordings_active 1 in /metrics" metric_is 'lsrecd_recordings_active 1'
runbook <<'SH'
curl -s http://127.0.0.1:9464/readyz
curl -s http://127.0.0.1:9464/metrics | grep -E '^lsrecd_(recordings_active|last_successful_poll)'
SH
said '^ready$'
said '^lsrecd_recordings_active 1$'
said '^lsrecd_last_successful_poll'

step "runbook: reading the database as a member of the lsrecd group"
useradd --no-create-home --shell /usr/sbin/nologin --user-group "$reader"
runbook <<'SH'
usermod -aG lsrecd alice       # takes effect at alice's next login
SH
runbook --as "$reader" <<'SH'
lsrecd status
sqlite3 -readonly -header -column /var/lib/lsrecd/lsrecd.db 'SELECT * FROM active_recordings'
SH
said "$record_id"
said 'studio-a'
if runuser -u "$reader" -- sqlite3 /var/lib/lsrecd/lsrecd.db 'CREATE TABLE intruder(x)' 2>/dev/null; then
    fail "a member of the lsrecd group changed the database"
fi
curl -sf -X POST "$emulator/_emulator/channels/$channel/offline" >/dev/null || fail "emulator: offline"
wait_for 30 "record $record_id in TRANSFER_READY in the database" \
    db_says "SELECT status FROM records WHERE record_id = $record_id" TRANSFER_READY
runbook --as "$reader" <<'SH'
lsrecd records --status TRANSFER_READY
SH
said "$record_id"

step "runbook: backup while lsrecd runs"
runbook <<'SH'
install -d -m 0750 -o root -g lsrecd /var/backups/lsrecd
sqlite3 -readonly /var/lib/lsrecd/lsrecd.db ".backup /var/backups/lsrecd/lsrecd-$(date +%F).db"
sqlite3 -readonly /var/lib/lsrecd/lsrecd.db "VACUUM INTO '/var/backups/lsrecd/lsrecd-$(date +%F)-compact.db'"
sqlite3 -readonly /var/backups/lsrecd/lsrecd-$(date +%F).db 'PRAGMA integrity_check'
SH
said '^ok$'
mode_is "750 root:lsrecd" /var/backups/lsrecd
runuser -u "$reader" -- ls /var/backups/lsrecd >/dev/null || fail "$reader cannot read the backups"
if runuser -u nobody -- ls /var/backups/lsrecd >/dev/null 2>&1; then
    fail "anyone can read the backups"
fi
if sqlite3 -readonly /var/lib/lsrecd/lsrecd.db "VACUUM INTO '$(find /var/backups/lsrecd -name '*-compact.db')'" 2>/dev/null; then
    fail "VACUUM INTO overwrote a copy"
fi
if sqlite3 -readonly "$work/no-such-copy.db" 'PRAGMA integrity_check' >/dev/null 2>&1; then
    fail "PRAGMA integrity_check with -readonly passes on a file that does not exist"
fi
backup=$(find /var/backups/lsrecd -name 'lsrecd-????-??-??.db')
backup_date=${backup#/var/backups/lsrecd/lsrecd-}
backup_date=${backup_date%.db}
for copy in "$backup" "/var/backups/lsrecd/lsrecd-$backup_date-compact.db"; do
    [ "$(sqlite3 -readonly "$copy" "SELECT status FROM records WHERE record_id = $record_id")" = TRANSFER_READY ] ||
        fail "$copy does not hold record $record_id"
done

step "runbook: restore the backup"
stop_daemon
runbook <<'SH'
install -m 0640 -o lsrecd -g lsrecd /var/backups/lsrecd/lsrecd-2026-11-27.db /var/lib/lsrecd/lsrecd.db
rm -f /var/lib/lsrecd/lsrecd.db-wal /var/lib/lsrecd/lsrecd.db-shm
SH
cmp "$backup" /var/lib/lsrecd/lsrecd.db || fail "the database is not the backup"
mode_is "640 lsrecd:lsrecd" /var/lib/lsrecd/lsrecd.db
start_daemon

step "runbook: upgrade (to this package with a higher version)"
newer_version="${version%-*}+newer-1"
dpkg-deb -R "$deb" "$work/newer"
sed -i "s/^Version: .*/Version: $newer_version/" "$work/newer/DEBIAN/control"
dpkg-deb -Zgzip -b "$work/newer" "$newer_deb" >/dev/null
runbook <<'SH'
sqlite3 -readonly /var/lib/lsrecd/lsrecd.db ".backup /var/backups/lsrecd/before-upgrade.db"
apt install ./lsrecd_0.2.0-1_amd64.deb
lsrecd --version
SH
[ "$(dpkg-query -W -f='${Version}' lsrecd)" = "$newer_version" ] || fail "apt did not install $newer_version"
said "^lsrecd ${version%-*}\$"
# Where systemd runs, the package restarts a running lsrecd on the new binary (try-restart; the
# stubbed-systemd checks below show it): here, by hand.
stop_daemon
start_daemon

step "runbook: roll back (to the package under test and the database from before the upgrade)"
stop_daemon
echo Y >"$work/yes" # apt asks before it downgrades
runbook --stdin "$work/yes" <<'SH'
apt install --allow-downgrades ./lsrecd_0.1.0-1_amd64.deb
install -m 0640 -o lsrecd -g lsrecd /var/backups/lsrecd/before-upgrade.db /var/lib/lsrecd/lsrecd.db
rm -f /var/lib/lsrecd/lsrecd.db-wal /var/lib/lsrecd/lsrecd.db-shm
lsrecd status
SH
[ "$(dpkg-query -W -f='${Version}' lsrecd)" = "$version" ] || fail "apt did not go back to $version"
said "studio-a"
start_daemon

step "runbook: move to another host (this one: purged, then installed again)"
systemctl disable lsrecd >/dev/null 2>&1 || fail "systemctl disable lsrecd"
stop_daemon
runbook <<'SH'
sqlite3 -readonly /var/lib/lsrecd/lsrecd.db ".backup /root/lsrecd-move.db"
tar -C / -czf /root/lsrecd-move.tar.gz etc/lsrecd root/lsrecd-move.db
rm /root/lsrecd-move.db
SH
dpkg -P lsrecd >"$work/move-purge.log" 2>&1 || {
    cat "$work/move-purge.log"
    fail "dpkg -P"
}
if [ -e /etc/lsrecd ] || [ -e /var/lib/lsrecd ]; then
    fail "dpkg -P left /etc/lsrecd or /var/lib/lsrecd"
fi
runbook <<'SH'
apt install ./target/debian/lsrecd_0.1.0-1_amd64.deb
lsrecd --version
SH
said "not enabled and not started"
runbook <<'SH'
mkdir -m 0700 /root/lsrecd-move
tar -C /root/lsrecd-move -xzf /root/lsrecd-move.tar.gz
install -m 0640 -o root -g lsrecd /root/lsrecd-move/etc/lsrecd/config.toml /etc/lsrecd/config.toml
install -m 0600 -o root -g root /root/lsrecd-move/etc/lsrecd/access_key /root/lsrecd-move/etc/lsrecd/secret_key /etc/lsrecd/
install -m 0640 -o lsrecd -g lsrecd /root/lsrecd-move/root/lsrecd-move.db /var/lib/lsrecd/lsrecd.db
rm -rf /root/lsrecd-move /root/lsrecd-move.tar.gz
env CREDENTIALS_DIRECTORY=/etc/lsrecd lsrecd check
SH
said 'secret key from systemd credential /etc/lsrecd/secret_key'
mode_is "640 root:lsrecd" /etc/lsrecd/config.toml
mode_is "600 root:root" /etc/lsrecd/secret_key
mode_is "640 lsrecd:lsrecd" /var/lib/lsrecd/lsrecd.db
db_says "SELECT status FROM records WHERE record_id = $record_id" TRANSFER_READY ||
    fail "the moved database does not hold record $record_id"
systemctl enable lsrecd >/dev/null 2>&1 || fail "systemctl enable lsrecd"
start_daemon
stop_daemon

step "runbook: a drop-in handing over the secret key only, checked with systemd-analyze verify"
runbook <<'SH'
mkdir -p /etc/systemd/system/lsrecd.service.d
printf '[Service]\nLoadCredential=\nLoadCredential=secret_key:/etc/lsrecd/secret_key\n' \
  > /etc/systemd/system/lsrecd.service.d/keys.conf
systemd-analyze verify /usr/lib/systemd/system/lsrecd.service
SH
[ ! -s "$work/runbook.out" ] || fail "systemd-analyze verify complains about the drop-in (above)"
# systemd-analyze reads that directory: a key it does not know, put there, is named.
printf '[Service]\nNoSuchKey=1\n' >/etc/systemd/system/lsrecd.service.d/probe.conf
grep -q "probe.conf:2: Unknown key" <(SYSTEMD_COLORS=0 systemd-analyze verify "$unit" 2>&1) ||
    fail "systemd-analyze verify does not read /etc/systemd/system/lsrecd.service.d"
rm /etc/systemd/system/lsrecd.service.d/probe.conf
# With the drop-in the unit hands over only the secret key; the access key is then in config.toml.
sed -i "s|^\[api\]\$|[api]\naccess_key = \"$access_key\"|" /etc/lsrecd/config.toml
rm "$unit_credentials/access_key"
(umask 0027 && exec "${as_service[@]}" lsrecd check) >"$work/check.out" 2>&1 || fail "lsrecd check, access key in config.toml: $(cat "$work/check.out")"
grep -q "access key from the configuration file, secret key from systemd credential" "$work/check.out" ||
    fail "$(cat "$work/check.out")"
echo "   ExecStartPre= with the drop-in: access key from config.toml, secret key from the credential"

step "runbook: done; the secret key is in no log, database or backup"
if grep -rlaF "$secret_key" /var/lib/lsrecd /var/backups/lsrecd "$work/daemon.log"; then
    fail "the secret key is in the files above"
fi
kill -TERM "$emulator_pid"
wait "$emulator_pid" || true
emulator_pid=""
userdel "$reader"
rm -rf /var/backups/lsrecd
for path in "${runbook_paths[@]}"; do
    [ ! -e "$path" ] || fail "$path is left after the runbook's commands"
done
echo "   (the runbook: $((SECONDS - runbook_started)) s)"

# --- upgrade in place: the operator's configuration stays, nothing is started ---------------
step "dpkg -i again over the installed package (an upgrade)"
echo "# edited by the operator" >>/etc/lsrecd/config.toml
dpkg -i "$deb" </dev/null >"$work/upgrade.log" 2>&1 || {
    cat "$work/upgrade.log"
    fail "dpkg -i over the installed package"
}
! grep -q "not enabled and not started" "$work/upgrade.log" || fail "first-install text on an upgrade"
tail -n1 /etc/lsrecd/config.toml | grep -q "edited by the operator" || fail "the operator's edit was lost"
mode_is "640 root:lsrecd" /etc/lsrecd/config.toml
mode_is "750 root:lsrecd" /etc/lsrecd

# --- what the runbook left ------------------------------------------------------------------
step "operator state from the runbook: keys, a database, an enabled unit with a drop-in"
for path in /etc/lsrecd/access_key /etc/lsrecd/secret_key /var/lib/lsrecd/lsrecd.db \
    /etc/systemd/system/lsrecd.service.d/keys.conf; do
    [ -f "$path" ] || fail "no $path"
done
[ -L /etc/systemd/system/multi-user.target.wants/lsrecd.service ] || fail "systemctl enable made no link"

# --- remove: the configuration, the keys and the database stay -----------------------------
step "dpkg -r"
dpkg -r lsrecd >"$work/remove.log" 2>&1 || {
    cat "$work/remove.log"
    fail "dpkg -r"
}
cat "$work/remove.log"
[ "$(package_state)" = config-files ] || fail "state after dpkg -r is $(package_state)"
[ ! -e /usr/bin/lsrecd ] || fail "/usr/bin/lsrecd is still there"
[ ! -e /usr/lib/systemd/system/lsrecd.service ] || fail "the unit is still there"
for kept in /etc/lsrecd/config.toml /etc/lsrecd/secret_key /var/lib/lsrecd/lsrecd.db; do
    [ -e "$kept" ] || fail "dpkg -r removed $kept"
done
grep -q "edited by the operator" /etc/lsrecd/config.toml || fail "dpkg -r changed the configuration"

# --- purge: everything goes, and the output says what --------------------------------------
step "dpkg -P"
dpkg -P lsrecd >"$work/purge.log" 2>&1 || {
    cat "$work/purge.log"
    fail "dpkg -P"
}
cat "$work/purge.log"
for said in "removing /var/lib/lsrecd" "removing /etc/lsrecd/secret_key" "user and group are kept"; do
    grep -q "$said" "$work/purge.log" || fail "dpkg -P did not say '$said'"
done
case "$(package_state)" in
"" | not-installed) ;;
*) fail "state after dpkg -P is $(package_state)" ;;
esac
listed=$(dpkg -L lsrecd 2>/dev/null || true)
[ -z "$listed" ] || fail "dpkg -L lsrecd still lists: $listed"
overrides=$(dpkg-statoverride --list)
if grep lsrecd <<<"$overrides"; then
    fail "statoverrides left (above)"
fi
lsrecd_paths >"$work/paths-after"
if ! diff "$work/paths-before" "$work/paths-after"; then
    fail "paths left behind (> above)"
fi

# --- the adduser fallback --------------------------------------------------------------------
step "dpkg -i where systemd-sysusers is missing: the user comes from adduser"
if [ "$user_existed" = yes ]; then
    echo "   (skipped: the lsrecd user existed before this test, so it is not removed to try again)"
else
    userdel lsrecd
    getent group lsrecd >/dev/null && groupdel lsrecd
    mkdir "$work/path"
    for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
        [ -d "$dir" ] || continue
        for tool in "$dir"/*; do
            name=${tool##*/}
            [ "$name" = systemd-sysusers ] || [ -e "$work/path/$name" ] || ln -s "$tool" "$work/path/$name"
        done
    done
    PATH=$work/path dpkg -i "$deb" >"$work/fallback.log" 2>&1 || {
        cat "$work/fallback.log"
        fail "dpkg -i without systemd-sysusers"
    }
    grep "Adding system user" "$work/fallback.log" || fail "adduser did not run: $(cat "$work/fallback.log")"
    ! grep -i "warning" "$work/fallback.log" || fail "warnings while installing (above)"
    IFS=: read -r _ _ _ _ _ home shell < <(getent passwd lsrecd) || fail "adduser made no lsrecd user"
    [ "$home:$shell" = /var/lib/lsrecd:/usr/sbin/nologin ] || fail "adduser made $home:$shell"
    getent group lsrecd >/dev/null || fail "adduser made no lsrecd group"
    mode_is "640 root:lsrecd" /etc/lsrecd/config.toml
    dpkg -P lsrecd >/dev/null
    lsrecd_paths >"$work/paths-after"
    diff "$work/paths-before" "$work/paths-after" || fail "paths left behind (> above)"
fi

# --- the maintainer scripts where systemd runs ------------------------------------------------
# systemd is not PID 1 here: systemctl and deb-systemd-invoke are replaced by stubs that log their
# arguments (and answer is-active as told), and /run/systemd/system exists only in a private
# mount namespace, so nothing outside this test sees a "running" systemd.
step "maintainer scripts where systemd runs (systemctl stubbed, /run private to the test)"
mkdir "$work/stub"
for tool in systemctl deb-systemd-invoke; do
    cat >"$work/stub/$tool" <<STUB
#!/bin/sh
echo "$tool \$*" >>"\$STUB_LOG"
case " \$* " in *" is-active "*) exit "\$STUB_ACTIVE" ;; esac
exit 0
STUB
    chmod +x "$work/stub/$tool"
done
# under_systemd ACTIVE(0|3) COMMAND...: COMMAND's output in $work/dpkg.log, the stubs' in
# $work/calls.log.
under_systemd() {
    local active=$1
    shift
    : >"$work/calls.log"
    STUB_ACTIVE=$active STUB_LOG=$work/calls.log PATH="$work/stub:$PATH" \
        unshare --mount --propagation private \
        sh -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec "$@"' sh "$@" \
        </dev/null >"$work/dpkg.log" 2>&1 || {
        cat "$work/dpkg.log"
        fail "$*"
    }
}
called() { grep -qx "$1" "$work/calls.log"; }
never_called() {
    if grep -E "$1" "$work/calls.log"; then
        fail "unexpected call (above) during: $2"
    fi
}
actions='(^| )(start|stop|restart|try-restart|reload|enable|disable|mask)( |$)'

under_systemd 3 dpkg -i "$deb"
called "systemctl --system daemon-reload" || fail "fresh install: no daemon-reload: $(cat "$work/calls.log")"
never_called "$actions" "a fresh install"
echo "   fresh install: daemon-reload only"

under_systemd 3 dpkg -i "$deb"
never_called "$actions" "an upgrade with lsrecd stopped"
echo "   upgrade, lsrecd stopped: not started"

under_systemd 0 dpkg -i "$deb"
called "deb-systemd-invoke try-restart lsrecd.service" || fail "upgrade of a running lsrecd: no try-restart: $(cat "$work/calls.log")"
never_called '(^| )(start|stop|restart|enable)( |$)' "an upgrade with lsrecd running"
echo "   upgrade, lsrecd running: try-restart once the new binary accepted the configuration"

echo "unknown_key = 1" >>/etc/lsrecd/config.toml
under_systemd 0 dpkg -i "$deb"
grep -q "rejects /etc/lsrecd/config.toml" "$work/dpkg.log" || fail "no word about the rejected configuration: $(cat "$work/dpkg.log")"
never_called "$actions" "an upgrade whose configuration the new binary rejects"
sed -i '/^unknown_key = 1$/d' /etc/lsrecd/config.toml
echo "   upgrade, configuration rejected: the running daemon is left alone"

under_systemd 0 dpkg -i "$newer_deb"
called "deb-systemd-invoke try-restart lsrecd.service" || fail "upgrade to $newer_version: no try-restart"
under_systemd 0 dpkg -i "$deb"
grep -q "downgraded from $newer_version" "$work/dpkg.log" || fail "no word about the downgrade: $(cat "$work/dpkg.log")"
never_called "$actions" "a downgrade"
echo "   downgrade, lsrecd running: left running, the operator told to restore the database"

under_systemd 0 dpkg -r lsrecd
called "deb-systemd-invoke stop lsrecd.service" || fail "dpkg -r of a running lsrecd: no stop"
grep -q "recordings already running in Live Station keep running" "$work/dpkg.log" || fail "dpkg -r did not say that recordings keep running: $(cat "$work/dpkg.log")"
echo "   remove, lsrecd running: stopped (its binary goes), recordings keep running"
under_systemd 3 dpkg -P lsrecd
called "systemctl --system daemon-reload" || fail "dpkg -P: no daemon-reload"
lsrecd_paths >"$work/paths-after"
diff "$work/paths-before" "$work/paths-after" || fail "paths left behind (> above)"

echo "OK: the package installs, checks, upgrades, removes and purges cleanly ($((SECONDS - started)) s)"
