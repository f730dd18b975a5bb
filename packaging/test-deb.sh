#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine with dpkg, checks what it installed
# (binary, configuration, unit, user, modes, man page, completions), upgrades it in place, then
# removes and purges it and checks that nothing is left. Finally it installs it once more on a
# PATH without systemd-sysusers, to check the adduser fallback, and purges it again.
#
#   packaging/test-deb.sh                  cargo deb (the release package), then the checks
#   packaging/test-deb.sh --debug-build    package target/debug/lsrecd, the binary the test
#                                          suite just ran (what .ci/run does: no second build)
#   packaging/test-deb.sh FILE.deb         the checks on an existing package
#
# It changes the machine, so it needs root; it skips, saying so, where dpkg is missing or when
# not root, and refuses to run where an lsrecd package is already installed. Needs cargo-deb
# (unless given a .deb), systemd-analyze (package systemd) and man (package man-db); .ci/run
# installs them.
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
for tool in systemd-analyze man runuser flock; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install systemd man-db util-linux)"
done

# One run at a time on a machine: the test installs and purges the one lsrecd package.
exec 9>/run/lock/lsrecd-package-test.lock
flock 9

package_state() { dpkg-query -W -f='${db:Status-Status}' lsrecd 2>/dev/null || true; }
case "$(package_state)" in
"" | not-installed) ;;
*) fail "an lsrecd package is on this machine ($(package_state)); this test installs and purges its own" ;;
esac

work=$(mktemp -d)
user_existed=no
getent passwd lsrecd >/dev/null && user_existed=yes
cleanup() {
    status=$?
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

# --- what an operator adds -----------------------------------------------------------------
step "operator state: keys, a database, an enabled unit with a drop-in"
install -m 0600 "$work/credentials/access_key" /etc/lsrecd/access_key
install -m 0600 "$work/credentials/secret_key" /etc/lsrecd/secret_key
if command -v sqlite3 >/dev/null; then
    as_lsrecd sqlite3 /var/lib/lsrecd/lsrecd.db "CREATE TABLE t(x); INSERT INTO t VALUES (1);"
else
    as_lsrecd touch /var/lib/lsrecd/lsrecd.db
fi
systemctl enable lsrecd.service >/dev/null 2>&1 || fail "systemctl enable lsrecd"
[ -L /etc/systemd/system/multi-user.target.wants/lsrecd.service ] || fail "systemctl enable made no link"
mkdir -p /etc/systemd/system/lsrecd.service.d
printf '[Service]\nLoadCredential=\nLoadCredential=secret_key:/etc/lsrecd/secret_key\n' \
    >/etc/systemd/system/lsrecd.service.d/override.conf

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

newer_version="${version%-*}+newer-1"
dpkg-deb -R "$deb" "$work/newer"
sed -i "s/^Version: .*/Version: $newer_version/" "$work/newer/DEBIAN/control"
dpkg-deb -Zgzip -b "$work/newer" "$work/newer.deb" >/dev/null
under_systemd 0 dpkg -i "$work/newer.deb"
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
