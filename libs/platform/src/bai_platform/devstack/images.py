"""The platform's container images, built with podman from Debian packages alone.

No image registry is reachable from these machines, so every image starts from a Debian
root filesystem made here::

    debootstrap minbase + python3 --podman import-->  localhost/bai-base:bookworm
    the host's uv binary, FROM scratch       ----->  localhost/bai-uv:<uv version>
    deploy/docker/Dockerfile, SERVICE=<s>    ----->  localhost/bai-<s>:<tag>     (five)
    deploy/docker/{postgres,nats}.Dockerfile ----->  localhost/bai-postgres:15, bai-nats:2.9
                                                     (the containers test provider's servers)

Invariants:
- the base is made only when it is absent (debootstrap is the slow step) unless asked;
- builds never pull (``--pull=never``) and use the host network (no bridge, no iptables);
- the five service builds share one uv cache mount, so each wheel is downloaded once;
- where HTTPS needs the host's CA bundle (``SSL_CERT_FILE``), it reaches the build as the
  secret ``ca-bundle``: never a layer, never a system file changed.
"""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bai_platform.devstack.config import SERVICES, repo_root
from bai_platform.devstack.podman import (
    IMAGE_REPOSITORY,
    PodmanError,
    image_exists,
    podman,
    podman_env,
    service_image,
)

BASE_IMAGE = f"{IMAGE_REPOSITORY}base:bookworm"
POSTGRES_IMAGE = f"{IMAGE_REPOSITORY}postgres:15"
NATS_IMAGE = f"{IMAGE_REPOSITORY}nats:2.9"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Left out of the base and of every Debian package installed on it later (as slim images do).
_SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


@dataclass(frozen=True)
class Built:
    """One step of a build: the image, how long it took, its size (bytes); skipped if cached."""

    image: str
    seconds: float
    size: int
    skipped: bool = False


Reporter = Callable[[Built], None]


def _ignore(built: Built) -> None:
    return None


def docker_dir() -> Path:
    return repo_root() / "deploy" / "docker"


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).strip())


def _timed(image: str, build: Callable[[], None]) -> Built:
    started = time.monotonic()
    build()
    return Built(image, time.monotonic() - started, image_size(image))


# ---- base ----------------------------------------------------------------------------------
def build_base(*, rebuild: bool = False, mirror: str = DEBIAN_MIRROR) -> Built:
    """Debian bookworm (minbase) with python3, imported as ``BASE_IMAGE``; needs root."""
    if not rebuild and image_exists(BASE_IMAGE):
        return Built(BASE_IMAGE, 0.0, image_size(BASE_IMAGE), skipped=True)
    if os.geteuid() != 0:
        raise PodmanError("building the base image runs debootstrap, which needs root")
    return _timed(BASE_IMAGE, lambda: _debootstrap_and_import(mirror))


def _debootstrap_and_import(mirror: str) -> None:
    rootfs = Path(tempfile.mkdtemp(prefix="bai-rootfs-"))
    try:
        debootstrap = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm"]
        _run([*debootstrap, str(rootfs), mirror])
        _slim(rootfs)
        _import(rootfs)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _slim(rootfs: Path) -> None:
    """Drop what a container never reads, and keep later apt installs as lean."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*"):
        for path in rootfs.glob(pattern):
            _remove(path)
    for folder in ("usr/share/man", "usr/share/info", "usr/share/locale"):
        shutil.rmtree(rootfs / folder, ignore_errors=True)
        (rootfs / folder).mkdir()
    (rootfs / "etc/dpkg/dpkg.cfg.d/01-bai-slim").write_text(_SLIM_DPKG)
    (rootfs / "etc/apt/apt.conf.d/01-bai-no-recommends").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _import(rootfs: Path) -> None:
    changes = ['CMD ["/bin/bash"]', "ENV LANG=C.UTF-8"]
    flags = [flag for change in changes for flag in ("--change", change)]
    # The context manager closes tar's pipe (left open, it is a ResourceWarning: an error
    # under the test suite's warnings filter).
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        result = subprocess.run(
            ["podman", "import", *flags, "-", BASE_IMAGE],
            stdin=tar.stdout,
            env=podman_env(),
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0 or tar.returncode != 0:
        raise PodmanError(f"podman import failed: {result.stderr.strip()[-2000:]}")


# ---- uv ------------------------------------------------------------------------------------
def uv_binary() -> Path:
    """The uv running this project (``uv run`` names itself in ``UV``), else the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise PodmanError("uv not found: run through `uv run` or put uv on the PATH")
    return Path(found)


def uv_image() -> str:
    version = _run([str(uv_binary()), "--version"]).split()[1]
    return f"{IMAGE_REPOSITORY}uv:{version}"


def build_uv() -> Built:
    """The host's uv at ``/uv`` of an image, like the official ``ghcr.io/astral-sh/uv``."""
    image = uv_image()

    def build() -> None:
        with tempfile.TemporaryDirectory(prefix="bai-uv-") as context:
            shutil.copy2(uv_binary(), Path(context) / "uv")
            (Path(context) / "Containerfile").write_text("FROM scratch\nCOPY uv /uv\n")
            podman("build", "--pull=never", "--quiet", "--tag", image, context)

    return _timed(image, build)


# ---- services and test servers -------------------------------------------------------------
def _secret_flags() -> list[str]:
    bundle = os.environ.get("SSL_CERT_FILE")
    if bundle and Path(bundle).is_file():
        return ["--secret", f"id=ca-bundle,src={bundle}"]
    return []


def _build(image: str, dockerfile: Path, context: Path, args: dict[str, str]) -> None:
    build_args = [flag for key, value in args.items() for flag in ("--build-arg", f"{key}={value}")]
    podman(
        "build",
        "--pull=never",
        "--network=host",
        "--file",
        str(dockerfile),
        *build_args,
        *_secret_flags(),
        "--tag",
        image,
        str(context),
        timeout=1800,
    )


def build_service(service: str, *, tag: str, uv: str) -> Built:
    image = service_image(service, tag)
    args = {"SERVICE": service, "BASE_IMAGE": BASE_IMAGE, "UV_IMAGE": uv}
    return _timed(image, lambda: _build(image, docker_dir() / "Dockerfile", repo_root(), args))


def build_test_servers(*, rebuild: bool = False) -> list[Built]:
    """PostgreSQL 15 and NATS from Debian's packages, for testcontainers (if absent)."""
    servers = {POSTGRES_IMAGE: "postgres.Dockerfile", NATS_IMAGE: "nats.Dockerfile"}
    return [_build_test_server(image, name, rebuild) for image, name in servers.items()]


def _build_test_server(image: str, dockerfile: str, rebuild: bool) -> Built:
    if not rebuild and image_exists(image):
        return Built(image, 0.0, image_size(image), skipped=True)
    args = {"BASE_IMAGE": BASE_IMAGE}
    folder = docker_dir()
    return _timed(image, lambda: _build(image, folder / dockerfile, folder, args))


def build_all(
    *,
    services: Iterable[str] = SERVICES,
    tag: str = "dev",
    rebuild_base: bool = False,
    test_servers: bool = False,
    report: Reporter = _ignore,
) -> list[Built]:
    """Base, uv, then each service image (and the test servers); each step reported."""
    steps: list[Built] = []

    def step(built: Built) -> None:
        steps.append(built)
        report(built)

    step(build_base(rebuild=rebuild_base))
    step(build_uv())
    uv = uv_image()
    for service in services:
        step(build_service(service, tag=tag, uv=uv))
    if test_servers:
        for built in build_test_servers():
            step(built)
    # A rebuilt image leaves its predecessor and build stage untagged: ~300 MB per service.
    podman("image", "prune", "--force")
    return steps


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PodmanError(f"{argv[0]} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout
