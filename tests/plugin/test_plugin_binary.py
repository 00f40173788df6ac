"""The built plugin binary: what `ipamd install-cni` puts on a node, and that it needs
nothing there but itself and the daemon's socket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from shim_harness import PLUGIN, REPO, run_shim

from ipamd import cli
from ipamd.cni import protocol
from tests.support.daemon import Daemon


def install(dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipamd", "install-cni", "--dest", str(dest), *extra], capture_output=True, text=True, cwd=REPO,
    )


def test_the_plugin_and_the_daemon_support_the_same_versions():
    done = run_shim("VERSION", None, container_id=None, ifname=None, netns=None)
    assert done.returncode == 0 and done.stderr == ""
    assert done.output == {"cniVersion": protocol.LATEST_VERSION, "supportedVersions": list(protocol.SUPPORTED_VERSIONS)}


def test_install_cni_copies_the_binary_under_each_name(tmp_path: Path):
    done = install(tmp_path, "--name", "ipamd", "--also-as", "kube-ovn")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ipamd", "kube-ovn"], "temporary files left behind"
    for name in ("ipamd", "kube-ovn"):
        assert (tmp_path / name).read_bytes() == PLUGIN.read_bytes()
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o755
        assert run_shim("VERSION", {"cniVersion": "1.0.0"}, plugin=tmp_path / name).output["cniVersion"] == "1.0.0"


def test_install_cni_refuses_when_no_binary_was_built(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "plugin_binary", lambda: tmp_path / "plugin" / "bin" / "ipamd")
    dest = tmp_path / "bin"
    assert cli.main(["install-cni", "--dest", str(dest)]) == 2
    err = capsys.readouterr().err
    assert "no built CNI plugin" in err and "build-plugin.sh" in err
    assert not dest.exists() or not list(dest.iterdir())


def test_a_binary_that_fails_version_never_replaces_the_installed_one(tmp_path: Path):
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    dest = tmp_path / "bin"
    dest.mkdir()
    (dest / "ipamd").write_bytes(b"the plugin that works")
    with pytest.raises(OSError, match="failed VERSION"):
        cli.install_cni(str(dest), ["ipamd"], binary=broken)
    assert [p.name for p in dest.iterdir()] == ["ipamd"]
    assert (dest / "ipamd").read_bytes() == b"the plugin that works"


def test_the_installed_file_has_no_program_interpreter(tmp_path: Path):
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    assert install(tmp_path).returncode == 0
    headers = subprocess.run(["readelf", "-l", str(tmp_path / "ipamd")], capture_output=True, text=True, check=True).stdout
    assert "LOAD" in headers, headers  # the parse worked
    assert "INTERP" not in headers and "interpreter" not in headers, headers


@pytest.fixture
def jail() -> Iterator[Path]:
    # The daemon's socket is hard-linked in: the same file system as the daemon's directory.
    path = Path(tempfile.mkdtemp(prefix="ipamd-jail-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chroot")
def test_the_plugin_runs_in_an_empty_chroot_with_no_environment(jail: Path, tmp_path: Path):
    workdir = Path(tempfile.mkdtemp(prefix="ipamd-d-", dir="/tmp"))
    daemon = Daemon(workdir, f"sqlite:///{tmp_path / 'ipamd.db'}").start()
    try:
        reply = daemon.client.post("/v1/subnets", {"name": "jailed", "cidrBlock": "192.0.2.0/24", "provider": "jailed"})
        assert reply.status == 201, reply.body
        root = jail / "root"
        assert install(root).returncode == 0
        os.link(daemon.socket, root / "ipamd.sock")
        assert sorted(p.name for p in root.iterdir()) == ["ipamd", "ipamd.sock"]
        config = json.dumps({"cniVersion": "1.0.0", "name": "jailed", "ipam": {"type": "ipamd", "server_socket": "/ipamd.sock", "provider": "jailed"}})

        def plugin(command: str) -> subprocess.CompletedProcess[str]:
            env = [f"CNI_COMMAND={command}", "CNI_CONTAINERID=c1", "CNI_IFNAME=net1", "CNI_NETNS=/var/run/netns/c1"]
            # env -i clears the environment; chroot (found before it is cleared) runs /ipamd.
            return subprocess.run([shutil.which("env") or "env", "-i", *env, chroot, str(root), "/ipamd"], input=config, capture_output=True, text=True, timeout=60)

        chroot = shutil.which("chroot")
        assert chroot, "chroot (coreutils) is missing"
        added = plugin("ADD")
        assert added.returncode == 0, added
        (ip,) = json.loads(added.stdout)["ips"]
        assert ip["address"].startswith("192.0.2.")
        assert [a["addresses"][0]["cidr"] for a in daemon.client.get("/v1/allocations?subnet=jailed").body["items"]] == [ip["address"]]
        deleted = plugin("DEL")
        assert (deleted.returncode, deleted.stdout) == (0, ""), deleted
        assert daemon.client.get("/v1/allocations?subnet=jailed").body["items"] == []

        daemon.stop()
        version = plugin("VERSION")
        assert version.returncode == 0 and json.loads(version.stdout)["cniVersion"] == "1.0.0", version
        down = plugin("ADD")
        assert down.returncode == 1 and json.loads(down.stdout)["code"] == 11 and "/ipamd.sock" in down.stdout
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_install_cni_links_kube_ovns_socket_path_to_the_daemon_and_never_replaces_a_real_socket(tmp_path: Path):
    import socket as socketlib

    daemon_socket = tmp_path / "ipamd.sock"
    server = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    server.bind(str(daemon_socket))
    server.listen(1)
    link = tmp_path / "run" / "openvswitch" / "kube-ovn-daemon.sock"
    try:
        for _ in range(2):  # a restarted init container replaces its own link
            done = install(tmp_path / "bin", "--link-socket", f"{link}={daemon_socket}")
            assert done.returncode == 0, done.stderr
            assert link.is_symlink() and os.readlink(link) == str(daemon_socket)
        client = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        client.connect(str(link))  # a client with the fixed path reaches the daemon
        client.close()
        link.unlink()
        real = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        real.bind(str(link))  # Kube-OVN's own socket
        refused = install(tmp_path / "bin", "--link-socket", f"{link}={daemon_socket}")
        assert refused.returncode == 1 and "is not a symlink" in refused.stderr
        assert not link.is_symlink()
        real.close()
    finally:
        server.close()
