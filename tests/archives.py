"""Tampering with backup archives, as a forger would: shared by the unit and integration tests of backups."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Callable, Union

from airflow_resource.backup.archive import MANIFEST

Change = Union[bytes, Callable[[bytes], bytes]]


def rebuild(src: Path, dst: Path, manifest_edit: Callable[[dict], object] | None = None,
            members: dict[str, Change] | None = None, header_sizes: dict[str, int] | None = None) -> Path:
    """A copy of src with members' bytes replaced (new bytes, or a function of the old), the manifest edited
    (json, its checksums kept unless the edit changes them), and tar headers claiming other sizes;
    everything else byte for byte."""
    members, header_sizes = members or {}, header_sizes or {}
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read()
            if info.name == MANIFEST and manifest_edit:
                m = json.loads(data)
                manifest_edit(m)
                data = json.dumps(m, indent=2).encode()
            change = members.get(info.name)
            if change is not None:
                data = change(data) if callable(change) else change
            info.size = header_sizes.get(info.name, len(data))
            tout.addfile(info, io.BytesIO(data))
    return dst
