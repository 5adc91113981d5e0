"""Podman for the image test: a private store, the settings these machines need, a local base.

:class:`Podman` runs ``podman`` with a ``containers.conf`` and a ``storage.conf``
of its own (``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF`` on every call),
in a store of its own under a temporary directory: the test never sees nor
changes the machine's images, containers, volumes or networks, and removing
that directory removes all it made. The settings, each needed here:

- ``default_ulimits``: root on these VMs cannot raise RLIMIT_NOFILE/NPROC to
  podman's defaults (runc: "error setting rlimits ... operation not permitted");
- ``runtime = "runc"``: the cgroups are hybrid (v1 controllers, v2 unified),
  which crun, the runtime Debian's podman picks first, refuses;
- ``cgroup_manager = "cgroupfs"``, ``events_logger = "file"``,
  ``log_driver = "k8s-file"``: there is no systemd nor journald;
- ``tmp_dir`` and ``network_config_dir``: podman's run-time state and its
  network definitions in the private directory too.

:func:`base_image` makes ``debian:bookworm-slim`` locally, for there is no
container registry to pull it from: ``mmdebstrap --variant=minbase bookworm``
from this machine's own apt sources, with the paths Debian's slim images leave
out, imported with the ``PATH`` and ``CMD`` that image has. The tarball is
cached (``~/.cache/wolfpacs-image/``, named by a hash of what made it), so
only the first run pays for it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import missing, need_program

BASE = "docker.io/library/debian:bookworm-slim"
INSTALL = "apt-get install -y --no-install-recommends podman runc slirp4netns mmdebstrap"

# What Debian's own slim images leave out of a minbase (docs, man pages, translations).
SLIM = (
    "--variant=minbase",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)
# debian:bookworm-slim's own config; `podman import` would give the image none.
BASE_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
)


class Podman:
    """``podman`` on a private store under ``root`` (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]\n'
            'log_driver = "k8s-file"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'tmp_dir = "{root / "tmp"}"\n'
            "[network]\n"
            f'network_config_dir = "{root / "networks"}"\n'
        )
        (root / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{root / "storage"}"\n'
            f'runroot = "{root / "run"}"\n'
        )
        self.env = {
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        }

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS``; with ``check``, fail with its output if it fails."""
        done = subprocess.run(
            ["podman", *args], env={**os.environ, **self.env}, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr)[-5000:]
            raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{output}")
        return done

    def command(self, *args: str) -> str:
        """``podman ARGS`` as a shell command line with this store's settings (for tmux)."""
        settings = " ".join(f"{key}={value}" for key, value in self.env.items())
        return f"env {settings} podman {' '.join(args)}"

    def ensure_runs(self) -> None:
        """Skip (fail under ``CI=true``) with a reason if podman cannot run here."""
        for program in ("podman", "runc", "slirp4netns"):
            need_program(program, INSTALL)
        if os.geteuid() != 0:
            missing("root", "the image test runs podman as root")
        info = self("info", check=False, timeout=60)
        if info.returncode != 0:
            last = (info.stderr.strip().splitlines() or ["no output"])[-1]
            missing(f"a podman that runs ({last})", INSTALL)

    def remove_everything(self) -> None:
        """Remove every container, volume and image of this store, then the store itself."""
        self("rm", "--all", "--force", "--volumes", "--time", "0", check=False)
        self("volume", "rm", "--all", "--force", check=False)
        self("rmi", "--all", "--force", check=False, timeout=300)
        shutil.rmtree(self.root)


def apt_sources() -> Path | None:
    """This machine's Debian sources (Debian 12 keeps them in ``debian.sources``), if any.

    None leaves mmdebstrap to its default mirror, with updates and security.
    """
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if path.is_file() and path.read_text().strip():
            return path
    return None


def base_tarball(cache: Path) -> Path:
    """A Debian bookworm minbase as a tarball: the cached one, else made now (about 30 s)."""
    sources = apt_sources()
    made_from = repr((SLIM, sources.read_text() if sources else None))
    key = hashlib.sha256(made_from.encode()).hexdigest()[:12]
    tarball = cache / f"debian-bookworm-minbase-{key}.tar"
    if tarball.exists():
        return tarball
    mmdebstrap = need_program("mmdebstrap", INSTALL)
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob("debian-bookworm-minbase-*.tar"):
        stale.unlink()  # made from other sources or options: never used again
    partial = cache / f"{tarball.name}.{os.getpid()}.partial"
    made = subprocess.run(
        [mmdebstrap, "--quiet", "--format=tar", *SLIM, "bookworm", str(partial),
         *([str(sources)] if sources else [])],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if made.returncode != 0:
        partial.unlink(missing_ok=True)
        raise AssertionError(f"mmdebstrap exited {made.returncode}:\n{made.stderr[-3000:]}")
    partial.replace(tarball)  # whole or not at all, should another run look at the same time
    return tarball


def base_image(podman: Podman, cache: Path) -> None:
    """``debian:bookworm-slim`` in ``podman``'s store, made locally (see the module's docstring)."""
    changes = [arg for change in BASE_CONFIG for arg in ("--change", change)]
    podman("import", "--quiet", *changes, str(base_tarball(cache)), BASE, timeout=300)
