#!/usr/bin/env bash
# Create or delete a persistent TAP (or, with --tun, TUN) device for trionet,
# optionally inside a network namespace, so that an unprivileged process can
# open it later.
set -euo pipefail

prog=$(basename "$0")
orig_args=("$@")

synopsis() {
    cat <<EOF
usage: $prog IFNAME CIDR [CIDR...] [--tun] [--user USER] [--netns NS]
       $prog IFNAME --delete [--tun] [--netns NS]
EOF
}

usage() {
    synopsis
    cat <<EOF

Create a persistent TAP device IFNAME owned by USER (default: \$SUDO_USER,
else the caller), give the host side the address CIDR (e.g. 10.0.0.1/24, or
fd00::1/64; several may be given, of either family) and bring it up. With
--tun, create a TUN device instead (IP packets, no Ethernet: for
trionet.TunLink); the host routes CIDR's network into it. With --netns, work
inside network namespace NS (created if it does not exist). With --delete,
remove IFNAME (from NS with --netns; a TUN with --tun).

examples:
  sudo $prog tap0 10.0.0.1/24
  sudo $prog tap0 10.0.0.1/24 fd00::1/64
  sudo $prog tap0 10.0.0.1/24 --netns tn-lab --user alice
  sudo $prog tap0 --delete --netns tn-lab
  sudo $prog tun0 10.0.0.1/24 fd00::1/64 --tun
  sudo $prog tun0 --delete --tun
EOF
}

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

usage_error() {
    echo "$prog: $*" >&2
    synopsis >&2
    echo "(run '$prog --help' for details)" >&2
    exit 2
}

# Print each command before running it.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    "$@"
}

ifname=""
cidrs=()
user=""
netns=""
delete=0
mode=tap
positional=()

while (($#)); do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --delete)
            delete=1
            ;;
        --tun)
            mode=tun
            ;;
        --user | --netns)
            (($# >= 2)) || usage_error "option $1 needs a value"
            [[ -n "$2" && "$2" != -* ]] || usage_error "option $1 needs a value"
            if [[ "$1" == --user ]]; then user=$2; else netns=$2; fi
            shift
            ;;
        --user=* | --netns=*)
            value=${1#*=}
            [[ -n "$value" ]] || usage_error "option ${1%%=*} needs a value"
            if [[ "$1" == --user=* ]]; then user=$value; else netns=$value; fi
            ;;
        --)
            shift
            positional+=("$@")
            break
            ;;
        -*)
            usage_error "unknown option: $1"
            ;;
        *)
            positional+=("$1")
            ;;
    esac
    shift
done

if ((delete)); then
    ((${#positional[@]} == 1)) || usage_error "--delete takes exactly one interface name"
    [[ -z "$user" ]] || usage_error "--user makes no sense with --delete"
    ifname=${positional[0]}
else
    ((${#positional[@]} >= 2)) || usage_error "expected IFNAME and CIDR"
    ifname=${positional[0]}
    cidrs=("${positional[@]:1}")
fi

# Interface names: at most 15 bytes (IFNAMSIZ - 1), no '/', ':' or blanks.
if ! [[ "$ifname" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || [[ "$ifname" == . || "$ifname" == .. ]]; then
    usage_error "bad interface name '$ifname' (1-15 characters from A-Z a-z 0-9 _ . -)"
fi

if [[ -n "$netns" ]] && { ! [[ "$netns" =~ ^[A-Za-z0-9_.-]+$ ]] || [[ "$netns" == . || "$netns" == .. ]]; }; then
    usage_error "bad namespace name '$netns' (characters from A-Z a-z 0-9 _ . -)"
fi

for cidr in "${cidrs[@]}"; do
    if [[ "$cidr" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]]; then
        for i in 1 2 3 4; do
            ((10#${BASH_REMATCH[i]} <= 255)) || usage_error "bad address '$cidr'"
        done
        ((10#${BASH_REMATCH[5]} <= 32)) || usage_error "bad prefix length in '$cidr'"
    elif [[ "$cidr" =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/([0-9]{1,3})$ ]]; then
        ((10#${BASH_REMATCH[1]} <= 128)) || usage_error "bad prefix length in '$cidr'"
    else
        usage_error "bad address '$cidr' (expected ADDRESS/PREFIXLEN, e.g. 10.0.0.1/24)"
    fi
done

if ((EUID != 0)); then
    die "must run as root (try: sudo $0 ${orig_args[*]})"
fi

command -v ip >/dev/null 2>&1 ||
    die "'ip' not found: install iproute2 (e.g. apt-get install iproute2)"

ns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -Fxq -- "$1"
}

ipn=(ip)
if [[ -n "$netns" ]]; then
    ipn=(ip -n "$netns")
fi
where=${netns:+ in namespace $netns}
kind=${mode^^}  # TAP or TUN

if ((delete)); then
    if [[ -n "$netns" ]] && ! ns_exists "$netns"; then
        die "network namespace '$netns' does not exist"
    fi
    details=$("${ipn[@]}" -d link show dev "$ifname" 2>/dev/null) ||
        die "no interface '$ifname'$where"
    [[ "$details" == *"tun type $mode"* ]] ||
        die "'$ifname'$where is not a $kind device; not touching it"
    run "${ipn[@]}" tuntap del dev "$ifname" mode "$mode"
    echo "deleted $kind $ifname$where"
    exit 0
fi

if [[ -z "$user" ]]; then
    user=${SUDO_USER:-$(id -un)}
fi
id -u -- "$user" >/dev/null 2>&1 || die "no such user '$user'"

if [[ -n "$netns" ]] && ! ns_exists "$netns"; then
    run ip netns add "$netns"
    run ip -n "$netns" link set dev lo up
fi

if "${ipn[@]}" link show dev "$ifname" >/dev/null 2>&1; then
    die "interface '$ifname' already exists$where (remove it with: $prog $ifname --delete${netns:+ --netns $netns})"
fi

run "${ipn[@]}" tuntap add dev "$ifname" mode "$mode" user "$user"
# Roll back the half-made device if a later step fails.
trap 'echo "$prog: failed; removing $ifname" >&2; "${ipn[@]}" tuntap del dev "$ifname" mode "$mode" || true' ERR
for cidr in "${cidrs[@]}"; do
    run "${ipn[@]}" addr add "$cidr" dev "$ifname"
done
run "${ipn[@]}" link set dev "$ifname" up
trap - ERR
echo "created $kind $ifname (${cidrs[*]}) for user $user$where"
