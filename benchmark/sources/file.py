"""File weights: a local ``.safetensors`` or ``.pth``/``.pt`` state dict, identified by its content (sha256)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark import identity
from benchmark.sources.weights import SourceWeights


class FileWeights(SourceWeights):
    """A user's checkpoint. A replaced file is a new run (new sha256), a moved one is not."""

    kind = "file"

    def __init__(self, path: str | Path, **kw: Any):
        super().__init__(**kw)
        self.path = Path(str(path)).expanduser()

    @classmethod
    def key_identity(cls, raw: dict[str, Any], digest: bool = True) -> dict[str, Any]:
        rest = {k: v for k, v in raw.items() if k != "path"}
        if not digest:
            return {"kind": cls.kind, **raw}
        return {"kind": cls.kind, **rest, "sha256": identity.file_digest(Path(str(raw["path"])).expanduser())}

    @classmethod
    def variant_name(cls, raw: dict[str, Any]) -> str:
        return Path(str(raw.get("path", "file"))).name

    @classmethod
    def model_tag(cls, raw: dict[str, Any], arch: str | None) -> str | None:
        return arch  # the architecture's default pretrained config: the best guess of what the file expects

    def problems(self, uses_weights: bool) -> list[str]:
        if self.path.is_file():
            return []
        return [f"source {self.source_id!r}: weights file {str(self.path.resolve())!r} does not exist"]

    def local_file(self, source: Any, ctx: Any, trainer: Any) -> Path:
        return self.path

    def origin(self, file: Path | None) -> str:
        return f"file {str(self.path)!r}"
