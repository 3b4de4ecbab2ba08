#!/bin/sh
# Install edgevlm-narrate.service on this machine (run as root, from the repository root):
#   sudo deploy/install.sh            # jetson on a Jetson (/etc/nv_tegra_release), linux elsewhere
#   sudo deploy/install.sh linux      # or name the variant
# It expects `edgevlm` at /usr/local/bin/edgevlm (deploy/README.md: `sudo pip install .`,
# on a Jetson with onnxruntime-gpu). It enables the service but does not start it.
set -eu

variant=${1:-}
if [ -z "$variant" ]; then
    if [ -e /etc/nv_tegra_release ]; then variant=jetson; else variant=linux; fi
fi
here=$(cd "$(dirname "$0")" && pwd)
unit="$here/$variant/edgevlm-narrate.service"
[ -f "$unit" ] || { echo "error: no unit for '$variant' (jetson or linux)" >&2; exit 1; }
[ -x /usr/local/bin/edgevlm ] || echo "note: /usr/local/bin/edgevlm is missing: install edgevlm first (deploy/README.md)" >&2

# An unprivileged system user in the camera and sound groups; no login, no home.
if ! id edgevlm >/dev/null 2>&1; then
    useradd --system --user-group --groups video,audio --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin edgevlm
fi

# Cameras get a systemd device unit (the service waits for dev-video0.device at boot).
install -m 0644 "$here/99-edgevlm-camera.rules" /etc/udev/rules.d/99-edgevlm-camera.rules
udevadm control --reload
udevadm trigger --subsystem-match=video4linux

[ -e /etc/default/edgevlm ] || install -m 0644 "$here/edgevlm.default" /etc/default/edgevlm
install -m 0644 "$unit" /etc/systemd/system/edgevlm-narrate.service
systemctl daemon-reload
systemctl enable edgevlm-narrate.service
echo "installed the $variant unit; start it with: sudo systemctl start edgevlm-narrate"
