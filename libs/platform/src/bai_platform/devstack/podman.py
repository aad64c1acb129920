"""Podman, as the local stack and the tests use it: commands, containers, the API socket.

Invariants:
- every podman command runs with the project's ``deploy/docker/containers.conf``
  (``CONTAINERS_CONF``) unless the caller set another: system files are never edited;
- nothing is ever pulled (``--pull=never``): images are built here (see ``images``);
- a container run by the supervisor is a foreground ``podman run``: SIGTERM to that process
  is proxied to the service (it drains), and stopping it also removes the container, so a
  podman client killed after the grace time leaves no container behind.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bai_platform.devstack.config import repo_root
from bai_platform.devstack.process import ManagedProcess

IMAGE_REPOSITORY = "localhost/bai-"


class PodmanError(RuntimeError):
    """A podman command failed (its output says why)."""


def containers_conf() -> Path:
    return repo_root() / "deploy" / "docker" / "containers.conf"


def podman_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, plus the project's containers.conf."""
    return {"CONTAINERS_CONF": str(containers_conf()), **os.environ, **(extra or {})}


def podman_missing_reason() -> str | None:
    """None when podman (with runc, which our containers.conf selects) is installed."""
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (`make system-deps` installs them as root)"
    return None


def podman(*args: str, timeout: float = 600.0) -> str:
    """Run ``podman ARGS``; its standard output, or PodmanError with what it printed."""
    result = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise PodmanError(f"podman {' '.join(args[:2])} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def image_exists(image: str) -> bool:
    return (
        subprocess.run(
            ["podman", "image", "exists", image], env=podman_env(), check=False
        ).returncode
        == 0
    )


def service_image(service: str, tag: str) -> str:
    return f"{IMAGE_REPOSITORY}{service}:{tag}"


def run_argv(
    *, name: str, image: str, command: Sequence[str], env_keys: Sequence[str]
) -> list[str]:
    """``podman run`` of one service command on the host network, locked down as in k8s.

    Values travel in the podman process's environment (``--env KEY`` copies them), never on
    the command line, where ``ps`` would show the database password.
    """
    env_flags = [flag for key in sorted(env_keys) for flag in ("--env", key)]
    return [
        "podman",
        "run",
        "--rm",
        "--replace",
        f"--name={name}",
        "--pull=never",
        "--network=host",
        "--read-only",
        "--tmpfs=/tmp",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        *env_flags,
        image,
        *command,
    ]


def remove_container(name: str) -> None:
    subprocess.run(
        ["podman", "rm", "--force", "--ignore", "--time=0", name],
        env=podman_env(),
        capture_output=True,
        check=False,
    )


@dataclass
class ContainerProcess(ManagedProcess):
    """A foreground ``podman run``: stopped like any child, then its container removed."""

    container: str = ""

    def stop(self, timeout: float) -> None:
        super().stop(timeout)
        remove_container(self.container)


@contextlib.contextmanager
def api_socket() -> Iterator[str]:
    """``podman system service`` on a private socket; yields its ``DOCKER_HOST`` URL.

    The service is stopped (and its socket folder removed) on exit.
    """
    folder = Path(tempfile.mkdtemp(prefix="bai-podman-"))
    socket_path = folder / "podman.sock"
    url = f"unix://{socket_path}"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", url],
        env=podman_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_for_socket(socket_path, service)
        yield url
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_socket(path: Path, service: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise PodmanError(f"podman system service exited with {service.returncode}")
        if path.exists():
            return
        time.sleep(0.05)
    raise PodmanError("podman system service did not open its socket in 30 s")
