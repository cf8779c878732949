# The check helpers the whole-cluster suites share (sourced by cluster.sh,
# cluster-etcd.sh and join.sh): each check prints one line, ok or FAIL with
# what the command printed, and counts itself.

passed=0
failed=0
skipped=0

ok()   { passed=$((passed + 1)); echo "ok    $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/      /' | head -20; }
skip() { skipped=$((skipped + 1)); echo "skip  $1 ($2)"; }
# check WHAT COMMAND...: ok when the command succeeds.
check() {
    local what=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$what"; else fail "$what" "$out"; return 1; fi
}
# expect WHAT PATTERN COMMAND...: ok when its output matches the pattern.
expect() {
    local what=$1 pattern=$2; shift 2
    local out
    out=$("$@" 2>&1)
    if echo "$out" | grep -Eq -- "$pattern"; then ok "$what"; else fail "$what" "$out"; fi
}
# until_ok SECONDS COMMAND...: retries until it succeeds; on timeout runs it
# once more with its output shown, and fails.
until_ok() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && { "$@"; return 1; }
        sleep 0.5
    done
}
