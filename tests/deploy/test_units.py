"""The systemd units (deploy/{jetson,linux}/edgevlm-narrate.service): `systemd-analyze verify`
accepts them, they hold what the issue asks for, and their ExecStart really runs here (the
venv's edgevlm, the shipped street clip for /dev/video0) and talks to a fake systemd: READY=1,
WATCHDOG=1 and STOPPING=1 arrive on a real AF_UNIX datagram socket."""

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.servers.notify_socket import NotifyListener
from tests.support import REPO_ROOT, SAMPLES

UNITS = {name: os.path.join(REPO_ROOT, "deploy", name, "edgevlm-narrate.service") for name in ("jetson", "linux")}
INSTALLED_BINARY = "/usr/local/bin/edgevlm"
VENV_EDGEVLM = os.path.join(os.path.dirname(sys.executable), "edgevlm")


def read_unit(path: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(key, value)] in order (keys repeat: Environment=, DeviceAllow=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            assert not line.endswith("\\"), "continuation lines are not used (this reader does not join them)"
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), [])
                continue
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def values(unit, section, key) -> list[str]:
    return [value for k, value in unit[section] if k == key]


def one(unit, section, key) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= set {len(found)} times"
    return found[0]


def environment(unit) -> dict[str, str]:
    """The unit's Environment= assignments (quoted as systemd quotes them)."""
    env = {}
    for value in values(unit, "Service", "Environment"):
        for word in shlex.split(value):
            key, _, val = word.partition("=")
            env[key] = val
    return env


def exec_start(unit, env: dict[str, str]) -> list[str]:
    """ExecStart as systemd runs it: ${X} is one word, $X is split on whitespace."""
    argv = []
    for word in shlex.split(one(unit, "Service", "ExecStart")):
        if word.startswith("${") and word.endswith("}"):
            argv.append(env[word[2:-1]])
        elif word.startswith("$"):
            argv.extend(env[word[1:]].split())
        else:
            assert "$" not in word and "%" not in word, f"unexpanded {word!r}"
            argv.append(word)
    return argv


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_accepts_the_unit(name, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian: apt-get install systemd)")
    # verify checks that ExecStart's binary exists and is executable: point it at the venv's
    # edgevlm (the unit says /usr/local/bin/edgevlm, where `sudo pip install .` puts it).
    text = open(UNITS[name]).read()
    assert text.count(INSTALLED_BINARY) == 1
    copy = tmp_path / "edgevlm-narrate.service"
    copy.write_text(text.replace(INSTALLED_BINARY, VENV_EDGEVLM))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # Unknown keys or sections, bad values: rc 0 but a line each. Nothing at all is a pass.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(UNITS))
def test_the_unit_holds_what_the_device_needs(name):
    unit = read_unit(UNITS[name])
    service = {key: one(unit, "Service", key) for key in
               ("Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "User", "SupplementaryGroups",
                "NoNewPrivileges", "ProtectSystem", "ProtectHome", "CacheDirectory")}
    assert service == {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "on-failure",
                       "RestartSec": "5", "User": "edgevlm", "SupplementaryGroups": "video audio",
                       "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "CacheDirectory": "edgevlm"}
    for key in ("After", "Wants"):
        assert {"dev-video0.device", "sound.target"} <= set(" ".join(values(unit, "Unit", key)).split())
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    env = environment(unit)
    assert env["EDGEVLM_SOURCE"] == "/dev/video0" and env["EDGEVLM_CACHE_DIR"] == "/var/cache/edgevlm"
    assert env["EDGEVLM_AUDIO_PLAYER"] == "aplay -q"
    assert values(unit, "Service", "EnvironmentFile") == ["-/etc/default/edgevlm"]
    argv = exec_start(unit, env)
    assert argv[:3] == [INSTALLED_BINARY, "narrate", "/dev/video0"] and "--no-questions" in argv
    if name == "jetson":
        assert env["EDGEVLM_PROVIDER"] == "tensorrt" and "nvargus-daemon.service" in one(unit, "Unit", "After")
        assert one(unit, "Service", "PrivateTmp") == "no"  # the host's /tmp/argus_socket
        assert not values(unit, "Service", "DeviceAllow")  # GPU nodes vary by L4T release: groups instead
    else:
        assert env["EDGEVLM_PROVIDER"] == "cpu" and one(unit, "Service", "PrivateTmp") == "yes"
        assert one(unit, "Service", "DevicePolicy") == "closed"
        assert values(unit, "Service", "DeviceAllow") == ["char-video4linux rw", "char-alsa rw"]


@pytest.mark.parametrize("name", sorted(UNITS))
def test_exec_start_uses_only_real_narrate_flags(name):
    unit = read_unit(UNITS[name])
    help_text = subprocess.run([VENV_EDGEVLM, "narrate", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    flags = [word for word in exec_start(unit, environment(unit)) if word.startswith("--")]
    assert flags and all(f" {flag} " in help_text or f"/ {flag} " in help_text for flag in flags), flags


@pytest.mark.parametrize("name", sorted(UNITS))
def test_exec_start_runs_here_and_notifies_systemd(name, tmp_path):
    """The unit's own ExecStart and Environment, with what only a device has replaced: the
    venv's edgevlm for /usr/local/bin, the shipped street clip for /dev/video0 (and, for the
    Jetson unit, --provider cpu, as /etc/default/edgevlm would set), tmp folders for the
    cache and runtime directories that systemd would create."""
    unit = read_unit(UNITS[name])
    unit_env = environment(unit)
    unit_env.update(EDGEVLM_SOURCE=os.path.join(SAMPLES, "street.mp4"), EDGEVLM_PROVIDER="cpu",
                    EDGEVLM_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
    unit_env.pop("CUDA_CACHE_PATH", None)
    argv = exec_start(unit, unit_env)
    assert argv[0] == INSTALLED_BINARY
    argv[0] = VENV_EDGEVLM
    address = str(tmp_path / "notify.sock")
    listener = NotifyListener(address)
    env = {**os.environ, **unit_env, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}  # a ping every 0.1 s
    env.pop("WATCHDOG_PID", None)
    try:
        result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=180)
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    assert "[    0.00s] " in result.stdout and "summary: " in result.stdout
    messages = listener.texts()
    assert messages[0] == f"READY=1\nSTATUS=narrating {unit_env['EDGEVLM_SOURCE']}", messages[:3]
    assert messages.count("WATCHDOG=1") >= 3, messages
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"
    assert set(messages[1:-1]) == {"WATCHDOG=1"}
