#!/usr/bin/env bash
# Installs, removes or prints the background service that runs `ollamalike serve`:
# a systemd user unit on Linux, a launchd agent on macOS.
#
#   daemon/service.sh install     write the unit, enable and start it
#   daemon/service.sh uninstall   stop, disable and remove it
#   daemon/service.sh print       print the unit that would be installed (changes nothing)
#
# SERVICE_DRY_RUN=1 writes the files but runs no systemctl/launchctl (used by the tests);
# SERVICE_OS=Linux|Darwin overrides `uname -s` (the tests render the launchd agent on Linux).
# The unit sets only OLLAMALIKE_HOME; add OLLAMALIKE_API_KEY, OLLAMALIKE_HOST, ... with
# `systemctl --user edit ollamalike` (Linux) or in the plist's EnvironmentVariables (macOS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin/ollamalike"
ACTION="${1:-}"
DRY="${SERVICE_DRY_RUN:-0}"
say() { printf '==> %s\n' "$*"; }
die() { printf 'service.sh: error: %s\n' "$*" >&2; exit 1; }
run() { if [ "$DRY" = 1 ]; then say "(dry run) $*"; else "$@"; fi; }

# Escape a value for the file format: systemd (inside "..."; % starts a specifier) or XML.
quote_for() {
  case "$1" in
    systemd) printf '%s' "$2" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g' ;;
    plist) printf '%s' "$2" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' ;;
  esac
}

# Fill in a template; the values are then escaped once more for sed's replacement text.
render() {
  local kind="$1" src="$2" escaped_bin escaped_home
  escaped_bin=$(quote_for "$kind" "$BIN" | sed 's/[&|\\]/\\&/g')
  escaped_home=$(quote_for "$kind" "$HOME" | sed 's/[&|\\]/\\&/g')
  sed -e "s|@OLLAMALIKE@|$escaped_bin|g" -e "s|@HOME_DIR@|$escaped_home|g" "$src"
}

case "${SERVICE_OS:-$(uname -s)}" in
  Linux)
    SRC="$ROOT/daemon/ollamalike.service"
    DEST="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/ollamalike.service"
    case "$ACTION" in
      print) render systemd "$SRC" ;;
      install)
        [ -x "$BIN" ] || die "$BIN not found: run ./install.sh first"
        if [ "$DRY" != 1 ] && ! command -v systemctl >/dev/null 2>&1; then
          die "systemctl not found: start the daemon yourself with '$BIN serve'"
        fi
        mkdir -p "$(dirname "$DEST")" "$HOME/.ollamalike/logs"
        render systemd "$SRC" > "$DEST.tmp" && mv "$DEST.tmp" "$DEST"
        say "wrote $DEST"
        run systemctl --user daemon-reload
        run systemctl --user enable --now ollamalike.service
        say "service started; logs: journalctl --user -u ollamalike" ;;
      uninstall)
        if [ -f "$DEST" ]; then
          if [ "$DRY" = 1 ] || command -v systemctl >/dev/null 2>&1; then
            run systemctl --user disable --now ollamalike.service || true
          fi
          rm -f "$DEST"
          [ "$DRY" = 1 ] || ! command -v systemctl >/dev/null 2>&1 || systemctl --user daemon-reload || true
          say "removed $DEST"
        else
          say "no service installed ($DEST absent)"
        fi ;;
      *) die "usage: daemon/service.sh install|uninstall|print" ;;
    esac ;;
  Darwin)
    SRC="$ROOT/daemon/com.ollamalike.serve.plist"
    DEST="$HOME/Library/LaunchAgents/com.ollamalike.serve.plist"
    case "$ACTION" in
      print) render plist "$SRC" ;;
      install)
        [ -x "$BIN" ] || die "$BIN not found: run ./install.sh first"
        mkdir -p "$(dirname "$DEST")" "$HOME/.ollamalike/logs"
        render plist "$SRC" > "$DEST.tmp" && mv "$DEST.tmp" "$DEST"
        say "wrote $DEST"
        run launchctl bootout "gui/$(id -u)" "$DEST" 2>/dev/null || true
        run launchctl bootstrap "gui/$(id -u)" "$DEST"
        say "service started; logs: ~/.ollamalike/logs/service.log" ;;
      uninstall)
        if [ -f "$DEST" ]; then
          run launchctl bootout "gui/$(id -u)" "$DEST" || true
          rm -f "$DEST"
          say "removed $DEST"
        else
          say "no service installed ($DEST absent)"
        fi ;;
      *) die "usage: daemon/service.sh install|uninstall|print" ;;
    esac ;;
  *) die "unsupported system ${SERVICE_OS:-$(uname -s)}: run '$BIN serve' yourself" ;;
esac
