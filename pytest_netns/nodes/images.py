"""The test image, built from the host's static busybox without any registry; what a
container runs.

No registry is reachable on the machines this runs on, so pulling is not an
option: the image is a `FROM scratch` build whose only file is the host's
static busybox, with its applet links installed.

A container runs what its image's author meant (its ENTRYPOINT and CMD)
unless the test gives `command=`, as `docker run` does. Only the built-in
images, whose own command is a shell that would exit at once, and images
with no command at all, get a command that sleeps: they exist to be
exec'd into.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
from typing import TYPE_CHECKING

from ..errors import ImageError
from .command import Command, to_argv

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

DEFAULT_IMAGE = "pytest-netns/busybox:1"
BARE_IMAGE = "pytest-netns/bare:1"
# Works in both images: the bare one has no `sh` or applet links.
DEFAULT_COMMAND = ["/bin/busybox", "sleep", "2147483647"]
IMAGE_LABEL = "pytest-netns.image"  # on the images build_image makes
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")

_HOW_TO_FIX = (
    "install a static busybox (Debian/Ubuntu: `apt-get install busybox-static`) and run "
    "`pytest-netns image`, or pass an image that exists locally with --netns-image"
)

_build_lock = threading.Lock()


def find_static_busybox() -> str:
    """Path of a statically linked busybox, or ImageError saying how to get one."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path) and _is_static_elf(path):
            return path
    found = shutil.which("busybox")
    if found and _is_static_elf(found):
        return found
    raise ImageError(f"no statically linked busybox found on this host: {_HOW_TO_FIX}")


def _is_static_elf(path: str) -> bool:
    """True when the ELF file has no PT_INTERP, i.e. needs no dynamic loader."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        if int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") == 3:  # PT_INTERP
            return False
    return True


def _context(busybox: str, install_applets: bool) -> io.BytesIO:
    lines = ["FROM scratch", "COPY busybox /bin/busybox"]
    if install_applets:
        lines.append('RUN ["/bin/busybox", "--install", "-s", "/bin"]')
        lines.append('CMD ["/bin/sh"]')
    dockerfile = ("\n".join(lines) + "\n").encode()
    buf = io.BytesIO()
    import tarfile  # only to build the image: not on every topology's import path

    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(busybox, arcname="busybox")
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    return buf


def build_image(client: docker.DockerClient, tag: str = DEFAULT_IMAGE, bare: bool = False) -> str:
    """Build the busybox test image (or the tool-less `bare` one) and return its id."""
    import docker.errors

    busybox = find_static_busybox()
    try:
        image, _ = client.images.build(
            fileobj=_context(busybox, install_applets=not bare),
            custom_context=True,
            tag=tag,
            rm=True,
            pull=False,
            labels={IMAGE_LABEL: "1"},
        )
    except docker.errors.BuildError as exc:
        raise ImageError(f"building {tag} from {busybox} failed: {exc}") from None
    except docker.errors.DockerException as exc:  # e.g. a tag the engine refuses
        raise ImageError(
            f"cannot build image {tag!r} from {busybox}: {exc}; use a tag like "
            f"{DEFAULT_IMAGE!r} (lowercase name, ':', version)"
        ) from None
    return str(image.id)


def container_command(image: Image, command: Command | None) -> list[str] | None:
    """The `command` to start a container of `image` with (None: the image's own).

    Given, `command` follows the string rule of `exec` (`nodes/command.py`)
    and, like `docker run`'s, replaces CMD and is passed to the ENTRYPOINT.
    """
    if command is not None:
        return to_argv(command)
    config = image.attrs.get("Config") or {}
    builtin = (config.get("Labels") or {}).get(IMAGE_LABEL) == "1"
    if builtin or not (config.get("Entrypoint") or config.get("Cmd")):
        return list(DEFAULT_COMMAND)
    return None


def ensure_image(client: docker.DockerClient, image: str) -> Image:
    """Make sure `image` exists locally (build it if it is one of ours); return it.

    Never pulls: with no registry reachable a pull only hangs, and a user who
    names their own image expects that one, not a download.
    """
    import docker.errors

    with _build_lock:
        try:
            return client.images.get(image)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:  # "invalid reference format", empty name
            raise ImageError(
                f"image {image!r} cannot be looked up: {exc}; expected an image reference "
                f"such as {DEFAULT_IMAGE!r}"
            ) from None
        if image in (DEFAULT_IMAGE, BARE_IMAGE):
            build_image(client, image, bare=image == BARE_IMAGE)
            return client.images.get(image)
        raise ImageError(
            f"image {image!r} is not present locally and pytest-netns does not pull "
            f"images: `docker build`/`docker load` it first, or drop --netns-image to "
            f"use the built-in {DEFAULT_IMAGE} ({_HOW_TO_FIX})"
        )
