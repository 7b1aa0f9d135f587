# Sourced by scripts/check: find Chromium for the inspector's browser tests (tests/web),
# installing Debian's package when we are root with apt. Without it CI fails, clearly.
CHROMIUM="${CLEW_CHROMIUM:-}"
if [ -z "$CHROMIUM" ]; then
    for c in /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -x "$c" ]; then CHROMIUM="$c"; break; fi
    done
fi
if [ -z "$CHROMIUM" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium for the inspector's browser tests"
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
        CHROMIUM=/usr/bin/chromium
    fi
fi
if [ -n "$CHROMIUM" ] && [ -x "$CHROMIUM" ]; then
    export CLEW_CHROMIUM="$CHROMIUM"
else
    msg="Chromium not found: the inspector's browser tests need it (Debian: apt install chromium, or set CLEW_CHROMIUM=/path/to/chromium)"
    if [ "${CI:-}" = "true" ]; then
        echo "error: $msg" >&2
        exit 1
    fi
    echo "warning: $msg; those tests will be skipped" >&2
fi
