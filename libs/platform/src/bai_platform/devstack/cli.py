"""``bai-stack``: the command behind ``make run``."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.table import Table

from bai_platform import edge
from bai_platform.devstack import images as image_builds
from bai_platform.devstack.config import SERVICES, StackSettings, repo_root
from bai_platform.devstack.podman import PodmanError
from bai_platform.devstack.postgres import data_dir
from bai_platform.devstack.process import cmdline, recover_stale
from bai_platform.devstack.stack import ComponentFailed, Stack, StackError
from bai_platform.nats_permissions import ADMIN_USER

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run the B.A.I. platform locally: PostgreSQL, NATS, Traefik, services.",
)
console = Console(highlight=False)

_STYLE = {"ok": "green", "failed": "bold red", "recovered": "yellow", "stopping": "dim"}


def _report(component: str, status: str, detail: str) -> None:
    style = _STYLE.get(status, "white")
    console.print(f"  [{style}]{status:>9}[/]  {component:<16} [dim]{detail}[/]")


# Long enough for the supervisor's own stop: five tiers, each one stop timeout (15 s) at most.
SUPERVISOR_STOP_SECONDS = 90.0


def _supervisor_pid_file(state_dir: Path) -> Path:
    """Where a running ``up`` records itself (beside, not among, its processes' pid files)."""
    return state_dir / "supervisor.pid"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _ready_table(stack: Stack) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    for endpoint in stack.endpoints():
        table.add_row(endpoint.name, endpoint.url)
    table.add_row(
        "stripe webhooks",
        f"{stack.edge_url}/v1/billing/webhooks/stripe "
        f"(signing secret {stack.settings.stripe_webhook_secret})",
    )
    return table


@app.command()
def up() -> None:
    """Start everything, print where to go, and run until Ctrl-C."""
    # Ctrl-C stops the stack even if this process was started with SIGINT ignored (as a
    # shell does for a command put in the background with '&' without job control).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = Stack(StackSettings(), reporter=_report)
    console.print(f"Starting B.A.I. (state in {stack.state_dir})")
    supervisor = _supervisor_pid_file(stack.state_dir)
    try:
        supervisor.parent.mkdir(parents=True, exist_ok=True)
        supervisor.write_text(f"{os.getpid()}\n{cmdline(os.getpid())}\n")
        stack.start()
        console.print(f"\n[bold green]BAI ready: {stack.edge_url}[/]")
        console.print(_ready_table(stack))
        console.print("\nCtrl-C stops everything. A process that exits is restarted.")
        while True:
            time.sleep(3600)
    except ComponentFailed as exc:
        console.print(f"\n[bold red]{exc}[/]  log: {exc.log_path}\n{exc.log_tail()}")
        sys.exit(1)
    except StackError as exc:
        console.print(f"\n[bold red]{exc}[/]")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print(
            f"\nStopping… (a process still running after {stack.settings.stop_timeout_seconds:g} s"
            " is killed)"
        )
    finally:
        # A second Ctrl-C must not cut the stop short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        supervisor.unlink(missing_ok=True)
        console.print("Stopped.")


@app.command()
def down(state_dir: Path | None = None) -> None:
    """Stop a running ``up`` (as Ctrl-C would: it stops everything it started, and its
    watchdog does not bring them back), then any process left by a stack that did not shut
    down (a crash, kill -9)."""
    root = (state_dir or StackSettings().state_dir).resolve()
    if recover_stale(_supervisor_pid_file(root), timeout=SUPERVISOR_STOP_SECONDS):
        console.print(f"stopped the stack running from {root}")
    stopped = 0
    for pid_file in sorted((root / "run").glob("*.pid")):
        stopped += recover_stale(pid_file, timeout=10.0)
    console.print(f"stopped {stopped} process(es) left from {root}")


def _as_admin(service: str, *command: str) -> None:
    """Run a service's operator command against the local stack as the NATS admin user."""
    if service not in SERVICES:
        raise typer.BadParameter(f"{service!r} is not one of {', '.join(SERVICES)}")
    stack = Stack(StackSettings())
    env = os.environ | {
        "BAI_NATS_URL": stack.nats_address,
        "BAI_NATS_USER": ADMIN_USER,
        "BAI_NATS_PASSWORD": stack.nats_passwords[ADMIN_USER],
    }
    done = subprocess.run([sys.executable, "-m", service, *command], env=env, check=False)
    raise typer.Exit(done.returncode)


@app.command("dead-letters")
def dead_letters(service: str, limit: int = 50) -> None:
    """List the messages a service's consumers gave up on, in the running stack."""
    _as_admin(service, "dead-letters", "--limit", str(limit))


@app.command()
def replay(service: str, sequence: int) -> None:
    """Publish one of a service's dead letters again on its original subject."""
    _as_admin(service, "replay", str(sequence))


@app.command()
def clean(state_dir: Path | None = None) -> None:
    """Stop leftovers, then delete the state folder (and the database kept outside it)."""
    root = (state_dir or StackSettings().state_dir).resolve()
    down(root)
    outside = data_dir(root)
    for folder in {root, outside}:
        shutil.rmtree(folder, ignore_errors=True)
    console.print(f"removed {root}" + (f" and {outside}" if outside != root / "postgres" else ""))


@app.command("render-edge")
def render_edge(
    out_dir: Path | None = None,
    values_file: Path | None = None,
    trusted_proxy: list[str] | None = None,
    cert_resolver: str | None = None,
) -> None:
    """Write the Kubernetes IngressRoutes and Middlewares and Traefik's Helm values.

    Defaults: deploy/k8s/base/edge and deploy/traefik/helm-values.yaml. --trusted-proxy
    (repeatable): CIDRs of the proxies in front of Traefik; --cert-resolver: TLS from
    Traefik's ACME instead of cert-manager.
    """
    out = out_dir or repo_root() / "deploy" / "k8s" / "base" / "edge"
    proxies, tls = trusted_proxy or (), edge.Tls(cert_resolver=cert_resolver)
    files = {
        out / name: text
        for name, text in edge.k8s_manifests(trusted_proxies=proxies, tls=tls).items()
    }
    values = values_file or repo_root() / "deploy" / "traefik" / "helm-values.yaml"
    files[values] = edge.traefik_values(trusted_proxies=proxies, tls=tls)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        console.print(f"wrote {path}")


def _print_built(built: image_builds.Built) -> None:
    took = "cached" if built.skipped else f"{built.seconds:6.1f} s"
    console.print(f"  [green]{took:>9}[/]  {built.image:<32} [dim]{built.size / 1e6:6.0f} MB[/]")


@app.command()
def images(
    service: list[str] = typer.Option(list(SERVICES), help="Services to build (repeatable)."),
    tag: str = typer.Option("dev", help="Tag of the service images."),
    rebuild_base: bool = typer.Option(False, help="Run debootstrap even if the base exists."),
    test_servers: bool = typer.Option(False, help="Also build the PostgreSQL and NATS images."),
) -> None:
    """Build the service images with podman (base made from Debian packages first)."""
    console.print("Building images (podman; time and size of each step)")
    started = time.monotonic()
    try:
        image_builds.build_all(
            services=service,
            tag=tag,
            rebuild_base=rebuild_base,
            test_servers=test_servers,
            report=_print_built,
        )
    except PodmanError as exc:
        console.print(f"[bold red]{exc}[/]")
        sys.exit(1)
    console.print(f"done in {time.monotonic() - started:.1f} s")


def main() -> None:
    app()
