"""The city's own model folders (`[decoders] paths`): loaded, checked, and reloaded when a file changes.

Every `*.toml` in a folder is a definition (`decoders.definition`); a `.js` beside it is its
codec. A file with mistakes is refused with every `file: key: reason`, and the other files
load; a file that breaks after it once loaded keeps its last good version in use, so the
devices of that model go on decoding while someone fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from decoders.definition import DefinitionError, load_definition
from decoders.model_info import ModelInfo
from decoders.registry import packaged_ids, set_external_models

_WATCHED = (".toml", ".js")


def load_folders(paths: Iterable[Path], previous: dict[Path, ModelInfo] | None = None
                 ) -> tuple[dict[str, ModelInfo], dict[Path, ModelInfo], list[str]]:
    """(models by id, good model by file, problems) for the folders; nothing is installed.

    `previous` (file → model that loaded before) keeps a broken file's last good version.
    """
    previous = previous or {}
    models: dict[str, ModelInfo] = {}
    good: dict[Path, ModelInfo] = {}
    problems: list[str] = []
    packaged = packaged_ids()
    for folder in paths:
        if not folder.is_dir():
            problems.append(f"{folder}: not a folder (decoders.paths)")
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                info = load_definition(path)
            except DefinitionError as exc:
                problems += [f"{path}: {p}" for p in exc.problems]
                info = previous.get(path)
                if info is None:
                    continue
                problems.append(f"{path}: refused; the previous version of {info.model} stays in use")
            if info.model in packaged:
                problems.append(f"{path}: model: {info.model!r} is a packaged model; choose another id")
            elif info.model in models:
                problems.append(f"{path}: model: {info.model!r} is already defined by {models[info.model].origin}")
            else:
                models[info.model] = info
                good[path] = info
    return models, good, problems


class ModelFolders:
    """Watches the folders; `refresh()` reloads them when a watched file changed and installs the models."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = tuple(paths)
        self.problems: list[str] = []
        self._good: dict[Path, ModelInfo] = {}
        self._stamp: tuple | None = None

    def _stamp_now(self) -> tuple:
        entries: list[tuple[str, int, int]] = []
        for folder in self.paths:
            try:
                listing = list(folder.iterdir())
            except OSError:
                entries.append((str(folder), -1, -1))
                continue
            for p in listing:
                if p.suffix in _WATCHED:
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    entries.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(sorted(entries))

    def refresh(self) -> bool:
        """Reload if anything changed since the last call (the first call always loads); True when it did."""
        stamp = self._stamp_now()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        models, self._good, self.problems = load_folders(self.paths, self._good)
        set_external_models(models)
        return True

    def close(self) -> None:
        """Uninstall the folders' models (the process goes back to the packaged ones)."""
        set_external_models({})
        self._good, self._stamp = {}, None

    @property
    def models(self) -> list[ModelInfo]:
        """The models the folders gave at the last refresh (a broken file's last good version included)."""
        return list(self._good.values())
