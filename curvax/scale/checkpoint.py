"""Safe checkpoints: NPZ arrays + JSON metadata, written atomically, verified on load.

Format (one ``.npz`` file, read with ``allow_pickle=False`` — nothing in it can run
code):

* ``__meta__`` — UTF-8 JSON as a uint8 array: ``format`` (``"curvax-checkpoint"``),
  ``version``, ``kind`` (``'exact'`` or ``'online'``), ``model_fingerprint``,
  ``source_fingerprint``, ``config`` (the :class:`~curvax.config.StreamingConfig` as
  a dict), the position in the stream (``n_passes`` or ``epoch``/``batch``), scalars
  such as ``cost``, and ``sha256``: the digest of every array below (name, dtype,
  shape, bytes), so any corruption of the payload is detected;
* the arrays: ``params`` and, in online mode, the optimizer state (``m``, ``v``, …).

Writing goes to a temporary file in the same directory, which is flushed and
``fsync``-ed and then renamed over the target (``os.replace`` is atomic), and the
directory is synced: a crash leaves either the previous checkpoint or the new one,
never a torn file.  Loading checks the zip structure, the JSON, the format tag and
the digest, and raises :class:`CheckpointError` naming what is wrong.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

FORMAT = "curvax-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted, or belongs to another fit."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def model_fingerprint(model: Any, n_params: int, loss: Any, extra: Any = None) -> str:
    """Hash of the model's identity (qualified name and source code when available),
    the number of parameters, the loss and ``extra``."""
    try:
        code = inspect.getsource(model)
    except (OSError, TypeError):
        code = ""
    name = (
        getattr(model, "__module__", "")
        + "."
        + getattr(model, "__qualname__", type(model).__name__)
    )
    loss_id = loss if isinstance(loss, str) else getattr(loss, "__qualname__", "custom")
    h = hashlib.sha256(repr((name, code, int(n_params), loss_id, extra)).encode())
    return h.hexdigest()[:32]


def save_checkpoint(path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a checkpoint atomically (see module docstring)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"checkpoint: array {k!r} has dtype object (not allowed)")
    meta = dict(meta, format=FORMAT, version=VERSION, sha256=_digest(arrays))
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __meta__=blob, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


def load_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a checkpoint; returns ``(meta, arrays)``.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupted file, or not a curvax checkpoint.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint: file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if "__meta__" not in names:
                raise CheckpointError(f"checkpoint: {path!r} is not a curvax checkpoint")
            meta = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: np.array(z[k]) for k in names if k != "__meta__"}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint: {path!r} is truncated or corrupted ({type(err).__name__}: {err})"
        ) from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: {path!r} is not a curvax checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint: {path!r} has format version {meta.get('version')}, expected {VERSION}"
        )
    if _digest(arrays) != meta.get("sha256"):
        raise CheckpointError(f"checkpoint: {path!r} is corrupted (checksum mismatch)")
    return meta, arrays
