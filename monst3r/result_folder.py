"""The result folder: its file names and its one write policy (:func:`result_folder`).

Every writer (demo modes, exports, evaluation, GUI, synthetic scenes) goes through :func:`result_folder`: the
result is built in a hidden sibling and swapped in, so an interrupted write never leaves a folder that loads as
complete; a re-run replaces the files the previous run listed in ``.monst3r_manifest.json`` and keeps every
other entry. The files themselves are written and read by :mod:`monst3r.io` (which re-exports every name here).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Sequence

from monst3r.errors import Monst3rInputError

log = logging.getLogger(__name__)

# file names of a result folder (the table in monst3r.io's docstring)
TRAJ_FILE = "pred_traj.txt"
TRAJ_TUM_FILE = "pred_traj_tum.txt"
INTRINSICS_FILE = "pred_intrinsics.txt"
FOCAL_FILE = "pred_focal.txt"
DEPTH_PATTERN = "frame_{:04d}.npy"
RGB_PATTERN = "frame_{:04d}.png"
CONF_PATTERN = "conf_{}.npy"
INIT_CONF_PATTERN = "init_conf_{}.npy"
MASK_PATTERN = "dynamic_mask_{}.png"
ENLARGED_MASK_PATTERN = "enlarged_dynamic_mask_{}.png"
GIF_FILE = "_depth_maps.gif"
GLB_FILE = "scene.glb"
META_FILE = "monst3r_meta.json"


# ----------------------------------------------------------------------------------------------------------
# the folder: one write policy for every writer (demo modes, exports, evaluation, GUI, synthetic scenes)
# ----------------------------------------------------------------------------------------------------------
# Deliberate difference from the original, which wrote straight into <output_dir>/<seq_name> (and the two-frame
# extras into <output_dir> itself): a result folder appears complete or not at all, a re-run replaces exactly the
# files the previous run wrote, and nothing else is ever deleted, copied or followed (symbolic links included).
#
# How (:func:`result_folder`):
#   1. the run builds everything in a hidden sibling ``.<name>.monst3r-tmp-<pid>-<tag>`` (with a marker file);
#   2. it lists what it wrote in ``.monst3r_manifest.json`` inside that folder;
#   3. entries of the previous folder that the previous run did not write (its manifest; for folders written
#      before manifests existed, or by the original, the known result-file names) are moved with os.replace
#      into the new folder -- never copied, never followed;
#   4. new and old folder are swapped atomically (renameat2 RENAME_EXCHANGE; two renames where unsupported);
#   5. the retired copy (holding only the previous run's files) is emptied file by file and removed.
# A run killed at any moment (SIGKILL included) leaves at most its hidden sibling; the next run on the same
# folder recognises it by its name, its marker/manifest and its dead process id, moves back any user entry it
# holds and removes the rest (the previous result was never modified before the swap).
MANIFEST_FILE = ".monst3r_manifest.json"
#: files of our result folders that the original's folders do not have
EXTRA_FILES = (TRAJ_TUM_FILE, META_FILE, MANIFEST_FILE)
_TMP_MARKER = ".monst3r_tmp_owner"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


class LegacyLayout:
    """What counts as ours in a folder without a manifest: top-level file names (regexes) and sub-folders whose
    files (one level, regexes) are ours."""

    def __init__(self, files: Sequence[str], dirs: dict[str, Sequence[str]] | None = None,
                 signature: Sequence[str] = ()):
        self.files = [re.compile(p) for p in files]
        self.dirs = {k: [re.compile(p) for p in v] for k, v in (dirs or {}).items()}
        self.signature = tuple(signature)  # a folder without any of these regular files is not an old result

    def is_result(self, folder: Path) -> bool:
        return any((folder / n).is_file() and not (folder / n).is_symlink() for n in self.signature)

    def matches(self, name: str) -> bool:
        return any(p.fullmatch(name) for p in self.files) or name in self.dirs


RESULT_LEGACY = LegacyLayout(
    files=(r"pred_traj\.txt", r"pred_traj_tum\.txt", r"pred_intrinsics\.txt", r"pred_focal\.txt",
           r"frame_\d+\.(npy|png)",
           r"conf_\d+\.npy", r"init_conf_\d+\.npy", r"(enlarged_)?dynamic_mask_\d+\.png", r"_depth_maps\.gif",
           r"scene\.glb", re.escape(META_FILE),
           # real-time files (optimizer.md 10.2) and the two-frame motion-mask files (monst3r.two_frame.FILES)
           r"(pts3d|conf)[12]_p\d+\.npy", r"img[12]_p\d+\.png",
           r"dynamic_mask(_binary|_bw)?\.png", r"dynamic_mask(_bw)?\.npy", r"(forward|backward)_flow\.(npy|png)"),
    dirs={"ply": [r"frame_\d+\.ply"], "colmap": [r"(cameras|images|points3D)\.txt"]},
    signature=(TRAJ_FILE, TRAJ_TUM_FILE, INTRINSICS_FILE, META_FILE, "pts3d1_p0.npy", "conf1_p0.npy"))


def _is_result_file(name: str) -> bool:
    return any(p.fullmatch(name) for p in RESULT_LEGACY.files)


def _test_pause(stage: str) -> None:
    """Test hook only: ``MONST3R_TEST_PAUSE=<stage>:<flag file>`` creates the flag file and sleeps at ``stage``
    (build, built, moved, swapped) so that tests can kill the process there."""
    spec = os.environ.get("MONST3R_TEST_PAUSE", "")
    if spec.partition(":")[0] == stage:
        import time
        Path(spec.partition(":")[2]).write_text(str(os.getpid()))
        time.sleep(3600)


def _stale_rx(name: str):
    return re.compile(re.escape(f".{name}.monst3r-") + r"(tmp|old)-(\d+)-([0-9a-f]{8})")


def _sibling(folder: Path, kind: str) -> Path:
    return folder.parent / f".{folder.name}.monst3r-{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _walk(root: Path, prefix: str = "") -> tuple[list[str], list[str]]:
    """(files, dirs) under ``root`` as relative posix paths; symbolic links are files (never followed)."""
    files, dirs = [], []
    with os.scandir(root / prefix if prefix else root) as it:
        for e in it:
            rel = prefix + e.name
            if e.is_dir(follow_symlinks=False):
                dirs.append(rel)
                f, d = _walk(root, rel + "/")
                files += f
                dirs += d
            else:
                files.append(rel)
    return files, dirs


def _owned(folder: Path, legacy: LegacyLayout) -> set[str]:
    """Relative paths of ``folder`` that a previous run wrote: files, and directories with a trailing '/'."""
    man = folder / MANIFEST_FILE
    if man.is_file() and not man.is_symlink():
        try:
            entries = json.loads(man.read_text()).get("entries")
        except (OSError, ValueError, AttributeError, UnicodeDecodeError):
            entries = None
        if isinstance(entries, list):
            ok = set()
            for e in entries:
                if isinstance(e, str) and e and not e.startswith("/") and ".." not in e.split("/") \
                        and "." not in e.rstrip("/").split("/"):
                    ok.add(e)
            return ok | {MANIFEST_FILE}
    if (folder / _TMP_MARKER).is_file():  # a build that died before its manifest: everything in it is ours
        files, dirs = _walk(folder)
        return set(files) | {d + "/" for d in dirs}
    owned = set()
    if not legacy.is_result(folder):  # not a result folder at all: nothing in it is ours
        return owned
    with os.scandir(folder) as it:
        for e in it:
            if e.is_symlink():
                continue
            if e.is_file() and any(p.fullmatch(e.name) for p in legacy.files):
                owned.add(e.name)
            elif e.is_dir() and e.name in legacy.dirs:
                owned.add(e.name + "/")
                with os.scandir(e.path) as sub:
                    for s in sub:
                        if s.is_file(follow_symlinks=False) and any(p.fullmatch(s.name) for p in legacy.dirs[e.name]):
                            owned.add(f"{e.name}/{s.name}")
    return owned


def _user_paths(folder: Path, owned: set[str], prefix: str = "") -> list[str]:
    """Maximal relative paths of ``folder`` that are not ours (whole foreign sub-folders count as one)."""
    out = []
    with os.scandir(folder / prefix if prefix else folder) as it:
        for e in sorted(it, key=lambda x: x.name):
            rel = prefix + e.name
            if rel in (MANIFEST_FILE, _TMP_MARKER):
                continue
            if e.is_dir(follow_symlinks=False):
                if rel + "/" in owned or any(o.startswith(rel + "/") for o in owned):
                    out += _user_paths(folder, owned, rel + "/")
                else:
                    out.append(rel)
            elif rel not in owned:
                out.append(rel)
    return out


def _retire(path: Path, folder: Path, legacy: LegacyLayout) -> None:
    """Empty a hidden sibling of ``folder`` (our temporary or retired copy): entries that are not ours go back to
    ``folder`` (same relative path), ours are deleted file by file; the sibling is removed when empty. A user
    entry that cannot go back stays where it is (with a warning): nothing that is not ours is ever deleted."""
    if path.is_symlink() or not path.is_dir():
        return
    owned = _owned(path, legacy)
    kept = []
    for rel in _user_paths(path, owned):
        dst = folder / rel
        if folder.is_dir() and not folder.is_symlink() and not os.path.lexists(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path / rel, dst)
        else:
            kept.append(rel)
    files, dirs = _walk(path)
    for rel in files:
        if rel in owned or rel in (MANIFEST_FILE, _TMP_MARKER):
            os.unlink(path / rel)
    for rel in sorted(dirs, key=lambda d: -d.count("/")):
        with contextlib.suppress(OSError):
            (path / rel).rmdir()  # only when empty
    try:
        path.rmdir()
    except OSError:
        log.warning("kept %s: it holds files that are not results (%s); move them back by hand", path,
                    ", ".join(kept[:5]) or "?")


def recover_stale(folder, legacy: LegacyLayout = RESULT_LEGACY) -> None:
    """Clean up what earlier runs on ``folder`` left when they were killed: only hidden siblings named by this
    module whose process is gone; a previous result moved aside is put back first, user entries are restored."""
    folder = Path(folder)
    parent = folder.parent if str(folder.parent) else Path(".")
    if not parent.is_dir():
        return
    rx = _stale_rx(folder.name)
    stale = []
    with os.scandir(parent) as it:
        for e in it:
            m = rx.fullmatch(e.name)
            if m and e.is_dir(follow_symlinks=False) and not _pid_alive(int(m.group(2))):
                stale.append((m.group(1), Path(e.path)))
    if not os.path.lexists(folder):
        for kind, p in stale:
            if kind == "old":  # killed between the two renames of the fallback swap: put the previous one back
                os.rename(p, folder)
                stale.remove((kind, p))
                break
    for _, p in stale:
        log.info("removing %s left by an interrupted run", p)
        try:
            _retire(p, folder, legacy)
        except OSError as exc:
            log.warning("could not clean up %s (left by an interrupted run): %s", p, exc)


def _immutable(path: str) -> bool:
    import fcntl
    import struct
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("i", 0)))[0]
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL))


def check_result_target(folder, legacy: LegacyLayout = RESULT_LEGACY, flag: str = "--seq_name") -> Path:
    """Everything about writing ``folder`` that can be checked before the work: it is not a file or a link, its
    parent can be created and written, a previous result can be replaced (writable, not immutable). Also cleans
    up the leftovers of killed runs (:func:`recover_stale`). Raises :class:`Monst3rInputError` (one line)."""
    folder = Path(folder)
    if folder.name in ("", ".", "..") or os.path.normpath(str(folder)) in (".", "..", "/"):
        raise Monst3rInputError(f"{str(folder)!r} is not a result folder name (it names the current folder, a "
                                f"parent or the root): give a new or earlier result folder, e.g. {flag} myrun")
    parent = folder.parent if str(folder.parent) else Path(".")
    what = f"the result folder {folder}"
    if folder.is_symlink():
        raise Monst3rInputError(f"{what} is a symbolic link; results are never written through links: remove "
                                f"the link or choose another {flag}")
    if os.path.lexists(folder) and not folder.is_dir():
        raise Monst3rInputError(f"{what} exists and is not a folder: move that file away or choose another {flag}")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = _sibling(folder, "tmp")
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise Monst3rInputError(f"cannot write to {parent}: {exc.strerror or exc}; choose another output folder "
                                "(a writable folder)") from None
    try:
        recover_stale(folder, legacy)
    except OSError as exc:
        raise Monst3rInputError(f"cannot clean up an interrupted earlier run next to {folder}: "
                                f"{exc.strerror or exc} ({exc.filename})") from None
    if folder.is_dir():
        try:
            fd, probe_file = tempfile.mkstemp(prefix=".monst3r-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe_file)
        except OSError as exc:
            raise Monst3rInputError(f"cannot replace the previous result in {folder}: {exc.strerror or exc}; "
                                    f"make it writable or choose another {flag}") from None
        if not (folder / MANIFEST_FILE).is_file() and not legacy.is_result(folder):
            clash = sorted(e.name for e in os.scandir(folder) if legacy.matches(e.name))
            if clash:
                raise Monst3rInputError(f"{folder} exists, was not written by monst3r and holds {clash[0]}, a name "
                                        f"the result would use: choose another {flag} (nothing is overwritten)")
        stuck = [rel for rel in sum(_walk(folder), []) if _immutable(str(folder / rel))] + \
            ([folder.name] if _immutable(str(folder)) else [])
        if stuck:
            raise Monst3rInputError(f"cannot replace the previous result in {folder}: {', '.join(stuck[:3])} "
                                    f"immutable or append-only (chattr -i/-a) ; clear the flag or choose another {flag}")
    return folder


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import errno
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _commit(tmp: Path, folder: Path, legacy: LegacyLayout, writer: str) -> None:
    _test_pause("built")
    files, dirs = _walk(tmp)
    entries = sorted(f for f in files if f != _TMP_MARKER) + sorted(d + "/" for d in dirs)
    (tmp / MANIFEST_FILE).write_text(json.dumps({"writer": writer, "version": 1, "entries": entries}, indent=0))
    if not os.path.lexists(folder):
        os.unlink(tmp / _TMP_MARKER)
        os.rename(tmp, folder)
        return
    if folder.is_symlink() or not folder.is_dir():
        raise Monst3rInputError(f"the result folder {folder} was replaced by a file or a link during the run; "
                                "nothing was written")
    owned = _owned(folder, legacy)
    users = _user_paths(folder, owned)
    clash = [u for u in users if os.path.lexists(tmp / u)]
    if clash:
        raise Monst3rInputError(f"{folder / clash[0]} was not written by monst3r but the new result has a file of "
                                "that name: move it away (nothing was changed)")
    for rel in users:  # the user's entries move (never copied) into the new folder
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / rel, tmp / rel)
    _test_pause("moved")
    os.unlink(tmp / _TMP_MARKER)
    if _exchange(tmp, folder):
        _test_pause("swapped")
        retired = tmp  # now holds the previous run's files only
    else:
        retired = _sibling(folder, "old")
        os.rename(folder, retired)
        try:
            os.rename(tmp, folder)
        except BaseException:
            os.rename(retired, folder)
            raise
    try:  # the new result is in place: failing to empty the retired copy is a warning (the next run retries)
        _retire(retired, folder, legacy)
    except OSError as exc:
        log.warning("the new result is in %s, but the previous one's copy %s could not be removed: %s", folder,
                    retired, exc)


@contextlib.contextmanager
def result_folder(folder, *, legacy: LegacyLayout = RESULT_LEGACY, writer: str = "monst3r", flag: str = "--seq_name"):
    """THE way to write a result folder (every writer uses it): yields an empty temporary sibling to fill; when
    the block succeeds it replaces ``folder`` (policy in the comment above): the previous run's files are
    replaced, every other entry of ``folder`` is kept (moved, never copied), links are never followed. On any
    error or interrupt ``folder`` is left exactly as it was and the temporary is removed. OS errors become
    one-line :class:`Monst3rInputError`."""
    folder = Path(folder)
    check_result_target(folder, legacy, flag)
    tmp = _sibling(folder, "tmp")
    try:
        tmp.mkdir()
        (tmp / _TMP_MARKER).write_text(str(os.getpid()))
    except OSError as exc:
        raise Monst3rInputError(f"cannot write next to {folder}: {exc.strerror or exc}") from None
    try:
        _test_pause("build")
        yield tmp
        _commit(tmp, folder, legacy, writer)
    except BaseException as exc:
        try:
            _retire(tmp, folder, legacy)
        except OSError as cleanup_exc:
            log.warning("could not remove the temporary folder %s: %s", tmp, cleanup_exc)
        if isinstance(exc, OSError) and not isinstance(exc, Monst3rInputError):
            where = f" ({exc.filename})" if exc.filename else ""
            raise Monst3rInputError(f"cannot write the result {folder}: {exc.strerror or exc}{where}; nothing was "
                                    "changed (free space / permissions, or choose another output folder)") from exc
        raise


atomic_folder = result_folder  # the name used before the policy existed


def discard_result(folder, legacy: LegacyLayout = RESULT_LEGACY) -> None:
    """Remove the files a previous run wrote into ``folder`` (nothing else; the folder too when it ends empty).
    Links are never followed."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return
    owned = _owned(folder, legacy)
    files, dirs = _walk(folder)
    for rel in files:
        if rel in owned:
            os.unlink(folder / rel)
    for rel in sorted(dirs, key=lambda d: -d.count("/")):
        if rel + "/" in owned:
            with contextlib.suppress(OSError):
                (folder / rel).rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


@contextlib.contextmanager
def atomic_file(path):
    """One file replaced atomically: yields a temporary path next to ``path`` (same suffix) to write; on success it
    is renamed over ``path`` (a symbolic link at ``path`` is replaced, never written through), on error removed.
    For writers that add files one at a time to a folder shared with other processes (the depth evaluation:
    its images are split across ranks, so no single process can swap the folder) and single metric files."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise Monst3rInputError(f"{path} is a folder; cannot write a file there (move it away)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.monst3r-part-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

