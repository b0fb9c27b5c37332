"""Local files: written to this host's disk, or served from it, while serving requests."""

from __future__ import annotations

import ast
import re

from migrate.scan.model import Rule
from migrate.scan.rules.base import FuncFrame, WalkerBase
from migrate.scan.rules.syntax import names_in, parts_of, short

SHARED_FILES = "keep files in object storage (S3: boto3 upload_fileobj, multipart uploads " \
    "for chunks); move existing ones with `migrate export-files`"

RULES = (
    Rule("local-file-write", "error", "File written to this host's disk while serving requests",
         "a file saved on one instance is missing on the others and gone with its host",
         SHARED_FILES),
    Rule("local-file-serve", "error", "Uploaded files served from a local folder",
         "only the instance that stored a file can send it: the others answer 404",
         "stream from object storage (get_object, or a presigned URL); move existing files "
         "with `migrate export-files`"),
)

FS_WRITE_CALLS = {
    # qualified name -> index of the destination argument
    "os.makedirs": 0, "os.mkdir": 0, "os.rename": 1, "os.replace": 1, "os.renames": 1,
    "os.link": 1, "os.symlink": 1, "shutil.copy": 1, "shutil.copy2": 1,
    "shutil.copyfile": 1, "shutil.copytree": 1, "shutil.move": 1,
}
FS_REMOVE_CALLS = frozenset({"os.remove", "os.unlink", "os.rmdir", "os.removedirs",
                             "shutil.rmtree"})
PATH_WRITE_METHODS = frozenset({"write_text", "write_bytes", "touch"})
OPEN_CALLS = frozenset({"open", "io.open", "builtins.open", "codecs.open"})
SERVE_CALLS = ("send_from_directory", "send_file")
"""Names a serving call ends with (``flask.send_file``, ``send_from_directory``)."""
PATH_CALLS = frozenset({"os.path.join", "posixpath.join", "os.path.abspath", "os.path.realpath",
                        "os.path.normpath", "os.path.expanduser", "os.fspath", "pathlib.Path",
                        "pathlib.PurePath", "pathlib.PosixPath", "str"})
PATH_METHODS = frozenset({"safe_join", "joinpath", "with_name", "with_suffix", "with_stem"})
"""Calls that build a file system path (a method or function ending with these names too)."""
FILE_MODE = re.compile(r"[rwxabt+]{1,4}")
UPLOAD_SET_MODULES = ("flask_uploads.", "flask_reuploaded.")


def open_writes(node: ast.Call) -> bool:
    """True when an ``open()`` call's mode writes, appends or creates."""
    mode: ast.AST | None = node.args[1] if len(node.args) > 1 else None
    for kw in node.keywords:
        if kw.arg == "mode":
            mode = kw.value
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return any(c in mode.value for c in "wax+")
    return False


def mentions_files(node: ast.AST) -> bool:
    """True when ``node`` reads ``request.files`` (an upload)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "files" \
                and isinstance(sub.value, ast.Name) and sub.value.id == "request":
            return True
    return False


def is_upload_set(qual: str) -> bool:
    """True for Flask-Uploads' (or Flask-Reuploaded's) ``UploadSet``: its ``save`` writes the
    upload into a folder on this host."""
    return qual.endswith(".UploadSet") and qual.startswith(UPLOAD_SET_MODULES)


def is_file_storage(annotation: ast.AST) -> bool:
    """True for an argument annotated as an upload (``FileStorage``)."""
    return ((parts_of(annotation) or [""])[-1] == "FileStorage"
            or isinstance(annotation, ast.Constant) and "FileStorage" in str(annotation.value))


class FileRules(WalkerBase):
    """Notes writes, removals and temporary files; a write to a removed or temporary path
    is not a trap."""

    def _write(self, node: ast.Call, what: str, dest: ast.AST | None) -> None:
        func = self.func
        if func is None:
            return
        names = names_in(dest)
        where = f" `{short(dest, 50)}`" if dest is not None else ""
        cand = self.candidate("local-file-write", node, f"{what} writes{where} to this "
                              "host's disk", reach="reach")
        func.writes.append((cand, names))

    def _open(self, node: ast.Call) -> None:
        if node.args and open_writes(node):
            self._write(node, "open() for writing", node.args[0])

    def _fs_write(self, node: ast.Call, qual: str) -> None:
        index = FS_WRITE_CALLS[qual]
        dest = node.args[index] if len(node.args) > index else None
        self._write(node, f"{qual}()", dest)

    def _fs_remove(self, node: ast.Call) -> None:
        if self.func is not None and node.args:
            self.func.removed |= names_in(node.args[0])

    def _note_temps(self, targets: list[ast.AST], qual: str) -> None:
        """``x = tempfile.mkdtemp()`` / ``with tempfile...() as x``: x is not a trap."""
        if self.func is not None and qual.startswith("tempfile."):
            for target in targets:
                self.func.temps |= names_in(target)

    def _serve(self, node: ast.Call, qual: str) -> None:
        if not node.args:
            return
        text = short(node.args[0], 200)
        low = text.lower()
        if "static" in low and "upload" not in low:
            return
        if qual.endswith("send_file") and not any(w in low for w in ("upload", "media")):
            return
        if qual.endswith("send_from_directory") or any(w in low for w in ("upload", "media")):
            if self.func is None:
                return
            cand = self.candidate("local-file-serve", node,
                                  f"{qual.rpartition('.')[2]}() sends files from "
                                  f"`{short(node.args[0], 50)}` on this host's disk",
                                  reach="reach")
            self.func.writes.append((cand, set()))

    # methods called on a path or an upload (see ``walker.ModuleWalker._method_call``)

    def _save(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """``upload.save(dest)`` (an upload: from request.files, a form, annotated
        FileStorage, or whose ``.filename`` the function reads), ``x.save(path)`` with a file
        system path (an image, a workbook, an unannotated upload), ``UploadSet.save()``."""
        func = self.func
        if func is None:
            return
        dest = node.args[0] if node.args else None
        for kw in node.keywords:
            if kw.arg == "dst":
                dest = kw.value
        name = recv.id if isinstance(recv, ast.Name) else None
        if name is not None and (name in func.files or (name, "filename") in func.info.attrs) \
                or (isinstance(recv, ast.Attribute) and recv.attr == "data"
                    and "form" in short(recv, 200)) or mentions_files(recv):
            self._write(node, "FileStorage.save()", dest)
        elif dest is not None and self._path_like(dest, 0) \
                and all(isinstance(a, ast.Constant) for a in node.args[1:]):
            self._write(node, f"`{short(recv, 30)}.save()`", dest)
        elif name is not None and name not in func.locals:
            imported = self.s.imports.get(name)
            target = ("", name) if imported is None else imported
            if target[1] is not None:
                cand = self.candidate("local-file-write", node, "UploadSet.save() writes the "
                                      "upload to this host's disk", "reach",
                                      (target[0], target[1]))
                cand.target_kind = "upload_sets"
                func.writes.append((cand, set()))

    def _path_like(self, node: ast.AST, depth: int) -> bool:
        """True when ``node`` builds a file system path (``os.path.join``, ``Path() / x``,
        ``"a/b"``, an f-string with a folder or an extension, a name bound to one)."""
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and any(c in node.value for c in "/.")
        if isinstance(node, ast.JoinedStr):
            return any(self._path_like(v, depth) for v in node.values
                       if isinstance(v, ast.Constant))
        if isinstance(node, ast.Call):
            qual = self.qual(node.func) or ""
            return qual in PATH_CALLS and (qual != "str" or any(
                self._path_like(a, depth) for a in node.args)) \
                or qual.rpartition(".")[2] in PATH_METHODS
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div | ast.Add):
            return self._path_like(node.left, depth) or self._path_like(node.right, depth)
        if isinstance(node, ast.Name) and depth < 3:
            return any(self._path_like(v, depth + 1) for v in self._bound_values(node.id) or ())
        return False

    def _path_open(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """``path.open("wb")`` (pathlib): the mode comes first."""
        mode: ast.AST | None = node.args[0] if node.args else None
        for kw in node.keywords:
            if kw.arg == "mode":
                mode = kw.value
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) \
                and FILE_MODE.fullmatch(mode.value) and any(c in mode.value for c in "wax+"):
            self._write(node, "Path.open() for writing", recv)

    def _path_write(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        self._write(node, f"Path.{meth}()", recv)

    def _path_mkdir(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        if not node.args:
            self._write(node, "Path.mkdir()", recv)

    def _path_remove(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        if self.func is not None:
            self.func.removed |= names_in(recv)

    def _finish_files(self, frame: FuncFrame) -> None:
        """Keep the writes whose destination the function neither removes nor made temporary."""
        gone = frame.removed | frame.temps
        for cand, names in frame.writes:
            if not names & gone:
                self.add(cand)
