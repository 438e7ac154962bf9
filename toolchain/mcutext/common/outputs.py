"""What a command may write where, and how an output is published.

The --out rule: an output path may hold nothing, an empty folder, or an earlier output of
the same kind (a bundle, recognised by its manifest; a firmware folder by its build report;
...). Those are replaced; anything else (a folder of the user's, a file where a folder goes)
is refused with one error line unless the user says `--force`.

Publishing is atomic: a folder is written in a staging folder beside the target, its files
and the folder are fsync'ed, and it is swapped into place with one rename (Linux:
renameat2 RENAME_EXCHANGE, so the target always names a whole bundle); the previous output
is removed only after the new one is in place. A staging folder is named
`.<name>.mcutext-staging-<pid>-<random>`: `load_bundle` refuses such a name, and the next
publish beside it removes the ones whose process is gone (left by a kill or a power cut).
Ctrl-C and SIGTERM are held back during the renames (`signals_held`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import McutextError

STAGING_TAG = ".mcutext-staging-"
_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.mcutext-staging-(?P<pid>\d+)-[A-Za-z0-9_-]+$")
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FORCE_HELP = ("Replace what is at the output path even if mcutext did not write it (a "
              "non-empty folder, a file).")


def is_staging(path: str | Path) -> bool:
    """A folder being written (or left by an interrupted run): never an output."""
    return _STAGING_NAME.match(Path(path).name) is not None


def _read_json(p: Path) -> dict | None:
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def is_bundle(p: Path) -> bool:
    m = _read_json(p / "manifest.json")
    return m is not None and "format" in m and "labels" in m


def _is_teacher(p: Path) -> bool:
    m = _read_json(p / "teacher.json")
    return m is not None and "format" in m and "encoder" in m


def _is_firmware(p: Path) -> bool:
    m = _read_json(p / "firmware.json")
    return m is not None and "board" in m and "elf" in m


# the files `mcutext attack --out` writes (attack.run_attack, cli_attack.default_journal; the
# robustness bench's comparisons beside them)
_ATTACK_FILE = re.compile(r"^[a-z0-9_]+-(keras|litert|tflm|device)(\.jsonl|\.json|\.journal\.jsonl"
                          r"|-serial\.log|-vs-(keras|litert|tflm)\.json)$")


def _is_attack_folder(p: Path) -> bool:
    return all(is_staging(e) or (_ATTACK_FILE.match(e.name) and e.is_file())
               for e in p.iterdir())


def _is_fuzz_folder(p: Path) -> bool:
    """An earlier `python -m mcutext.reliability.fuzz --out` (its corpus is reused; other tools may keep
    their own files beside it)."""
    return (p / "seeds").is_dir() or (p / "corpus").is_dir() or (p / "report.json").is_file()


def _is_library(p: Path) -> bool:
    m = _read_json(p / "mcutext-export.json")    # export.EXPORT_FILE
    return m is not None and "format" in m and "sources" in m


# the first bytes of a page `mcutext report` wrote (mcutext.studies.report_html)
REPORT_MARK = b'<meta name="generator" content="mcutext report'


def _is_report(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return REPORT_MARK in f.read(2048)
    except OSError:
        return False


# kind -> (is it a folder, what it is called, is this path an earlier output of the kind);
# "ablation" and "head" are added by their owners (register_kind)
KINDS: dict[str, tuple[bool, str, Callable[[Path], bool]]] = {
    "bundle": (True, "a bundle", is_bundle),
    "teacher": (True, "a teacher folder", _is_teacher),
    "firmware": (True, "a firmware folder", _is_firmware),
    "attack": (True, "a folder of attack results", _is_attack_folder),
    "fuzz": (True, "a fuzzing folder", _is_fuzz_folder),
    "report": (False, "a report page", _is_report),
    "library": (True, "an exported library", _is_library),
}


def register_kind(kind: str, is_folder: bool, what: str,
                  recognise: Callable[[Path], bool]) -> None:
    """A kind whose earlier outputs only a module of a higher layer can recognise (the
    ablation's arms, the head blob's magic) is declared by that module when it is imported."""
    KINDS[kind] = (is_folder, what, recognise)


def check_out(out: str | Path, kind: str, force: bool = False) -> None:
    """Refuses (McutextError) an output path that holds something mcutext may not replace:
    see the module's docstring. Call it before any work is written."""
    out = Path(out)
    if kind not in KINDS:   # a kind is declared by the module that owns it, on import
        raise McutextError(f"internal error: the output kind {kind!r} is not declared (import "
                           "the module that writes it first)")
    is_folder, what, recognise = KINDS[kind]
    if force or not os.path.lexists(out):
        if force and not is_folder and out.is_dir() and not out.is_symlink():
            raise McutextError(f"{out}: is a folder; {what} is a file",
                               hint="give a file name")
        return
    hint = "choose another output path, or pass --force to replace it"
    if out.is_dir() and not out.is_symlink():
        if not is_folder:
            raise McutextError(f"{out}: is a folder; {what} is a file",
                               hint="give a file name")
        entries = sorted(e.name for e in out.iterdir() if not is_staging(e))
        if not entries or recognise(out):
            return
        raise McutextError(f"{out}: the folder is not empty and is not {what} mcutext wrote "
                           f"({len(entries)} entries, e.g. {entries[0]!r}); nothing was "
                           "changed", hint=hint + " (and everything in it)")
    if is_folder:
        raise McutextError(f"{out}: a file is in the way ({what} is a folder); nothing was "
                           "changed", hint=hint)
    if not recognise(out):
        raise McutextError(f"{out}: the file exists and is not {what} mcutext wrote; "
                           "nothing was changed", hint=hint)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> None:
    """Removes the staging folders beside `out` (for `out`) whose process is gone."""
    if not out.parent.is_dir():
        return
    for e in out.parent.iterdir():
        m = _STAGING_NAME.match(e.name)
        if m and m["name"] == out.name and not _pid_alive(int(m["pid"])):
            _remove(e)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _umask() -> int:
    """The process's umask, read without setting it where Linux says it (setting it for a
    moment would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_staging(out: Path) -> Path:
    """A fresh staging folder beside `out` (stale ones of `out` are removed first), with the
    permissions of a folder made by mkdir (mkdtemp's are private)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    d = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGING_TAG}{os.getpid()}-",
                              dir=out.parent))
    os.chmod(d, 0o777 & ~_umask())
    return d


@contextlib.contextmanager
def staging(out: str | Path, kind: str, force: bool = False) -> Iterator[Path]:
    """`with staging(out, kind) as d:` write the output into d; it is published at `out`
    when the block ends normally and removed when it does not (an error, Ctrl-C, SIGTERM)."""
    out = Path(out)
    check_out(out, kind, force)
    d = new_staging(out)
    try:
        yield d
        check_out(out, kind, force)   # again: the target may have changed meanwhile
        publish(d, out)
    finally:
        _remove(d)   # the staging folder, or after the swap the previous output


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block ends (then act as usual)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def fsync_tree(root: Path) -> None:
    """Every file and folder under root (root included) on disk."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two paths in one step (Linux renameat2); False where that is not supported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(staging_dir: Path, out: Path) -> None:
    """Puts the fully written `staging_dir` at `out`. Whatever was at `out` ends up at
    `staging_dir` (the caller removes it): the old output is never gone before the new one
    is in place. Call `check_out` first."""
    fsync_tree(staging_dir)
    with signals_held():
        if not os.path.lexists(out):
            os.rename(staging_dir, out)
        elif not (out.is_dir() and not out.is_symlink() and _exchange(staging_dir, out)):
            # no atomic swap here (or a file in the way, replaced with --force): move the
            # old one aside under the staging name, then the new one in
            aside = staging_dir.with_name(staging_dir.name + "-old")
            os.rename(out, aside)
            os.rename(staging_dir, out)
            os.rename(aside, staging_dir)
        fsync_dir(out.parent)


def write_file(path: str | Path, data: bytes | str, kind: str | None = None,
               force: bool = False) -> None:
    """Writes a whole file or none: a temp file beside it, fsync, rename. With `kind`, the
    --out rule is checked first."""
    path = Path(path)
    if kind is not None:
        check_out(path, kind, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{STAGING_TAG}{os.getpid()}-",
                               dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # as open() would make it (mkstemp's is private)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        with signals_held():
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def replace_between_markers(doc: Path, start: str, end: str, text: str) -> bool:
    """Rewrites what lies between the `start` and `end` marker lines of a document (a bench's
    results table in docs/), atomically; False when the document or its markers are missing."""
    doc = Path(doc)
    if not doc.is_file():
        return False
    old = doc.read_text()
    a, b = old.find(start), old.find(end)
    if a < 0 or b < a:
        return False
    write_file(doc, old[:a + len(start)] + "\n\n" + text + "\n" + old[b:])
    return True
